"""The server-rendered web console at `/console` (finance, security and admin pages)."""

from adapters.admin.console.site import Console

__all__ = ["Console"]
