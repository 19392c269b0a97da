"""Where state lives: the backends behind `core.state.Store`.

`core/app.py` loads a backend by registry string (`"store.memory:MemoryStore"`,
`"store.sqlite:SQLiteStore"`), so importing this package stays light: `SQLiteStore` (and with it
aiosqlite) is imported on first use of the name.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from store.memory import MemoryStore
from store.migrations import MIGRATIONS, Migration, UnknownSchemaVersion

if TYPE_CHECKING:
    from store.postgres import PostgresStore
    from store.sqlite import SQLiteStore

__all__ = [
    "MIGRATIONS",
    "MemoryStore",
    "Migration",
    "PostgresStore",
    "SQLiteStore",
    "UnknownSchemaVersion",
]


def __getattr__(name: str) -> object:
    # PEP 562: the heavy backend is imported when its name is first asked for, not with the package.
    if name == "SQLiteStore":
        return importlib.import_module("store.sqlite").SQLiteStore
    if name == "PostgresStore":
        return importlib.import_module("store.postgres").PostgresStore
    raise AttributeError(f"module 'store' has no attribute {name!r}")
