"""Reliability policies: how hard to try one model, and where to go when it fails."""

from keelwork.reliability.chain import Answer, FallbackChain, Link
from keelwork.reliability.policy import CallPolicy, Retry, Timeout

__all__ = ["Answer", "CallPolicy", "FallbackChain", "Link", "Retry", "Timeout"]
