"""Shared counters behind one interface: in-process now; SQL and Redis backings fill the same
protocol so limits hold across replicas."""

from keelwork.state.buckets import LocalTokenBuckets, TokenBuckets

__all__ = ["LocalTokenBuckets", "TokenBuckets"]
