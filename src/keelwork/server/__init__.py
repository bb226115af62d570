"""The HTTP face of keelwork: an app factory over one or more services."""

from keelwork.server.app import create_app

__all__ = ["create_app"]
