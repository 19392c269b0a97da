"""The admin REST API (`/admin/…`) over `core.keyring`, `core.directory` and `core.audit`."""

from adapters.admin.api import AdminAPI

__all__ = ["AdminAPI"]
