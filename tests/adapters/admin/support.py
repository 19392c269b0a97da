"""An in-process gateway for admin tests: SQLite on a temp file, two sim models, a hand clock."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette

from core.app import build_app
from core.config import Config

ROOT = "agw_root-secret-for-tests"
CLIENT = "127.0.0.1"


class Clock:
    """A wall clock the test moves by hand, starting at the real time."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def config(db: Path, **changes: Any) -> Config:
    data: dict[str, Any] = {
        "store": f"sqlite:///{db}",
        "admin_key": ROOT,
        "providers": [{"name": "sim", "type": "sim"}],
        "models": [
            {"name": "sim", "targets": [{"provider": "sim", "model": "sim-1"}]},
            {"name": "sim-b", "targets": [{"provider": "sim", "model": "sim-2"}]},
        ],
    }
    data.update(changes)
    return Config.model_validate(data)


@dataclass
class Gateway:
    """The running app, a client per source address, and the hand clock."""

    app: Starlette
    clock: Clock
    db: Path
    clients: dict[str, httpx.AsyncClient] = field(default_factory=dict)

    def client(self, address: str = CLIENT) -> httpx.AsyncClient:
        if address not in self.clients:
            transport = httpx.ASGITransport(app=self.app, client=(address, 40000))
            self.clients[address] = httpx.AsyncClient(transport=transport, base_url="http://gw")
        return self.clients[address]

    async def admin(
        self,
        method: str,
        path: str,
        *,
        key: str = ROOT,
        json: Any = None,
        content: bytes | None = None,
        params: dict[str, str] | None = None,
        address: str = CLIENT,
    ) -> httpx.Response:
        headers = {"authorization": f"Bearer {key}"}
        if content is not None:
            headers["content-type"] = "application/json"
        return await self.client(address).request(
            method, path, headers=headers, json=json, content=content, params=params
        )

    async def create_key(self, *, key: str = ROOT, **fields: Any) -> dict[str, Any]:
        body = {"org_path": "research/agents/demo", **fields}
        resp = await self.admin("POST", "/admin/keys", key=key, json=body)
        assert resp.status_code == 201, resp.text
        created: dict[str, Any] = resp.json()
        return created

    async def chat(
        self, secret: str, model: str = "sim", *, address: str = CLIENT, **headers: str
    ) -> httpx.Response:
        return await self.client(address).post(
            "/v1/chat/completions",
            headers={"authorization": f"Bearer {secret}", **headers},
            json={"model": model, "messages": [{"role": "user", "content": "hi"}]},
        )

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        """Read the database file directly, as an operator (or an attacker) would."""
        with sqlite3.connect(self.db) as raw:
            return list(raw.execute(sql).fetchall())

    def state(self) -> tuple[list[tuple[Any, ...]], ...]:
        """Every governed table, to show that a refused request changed nothing."""
        return tuple(
            self.rows(f"SELECT * FROM {table} ORDER BY 1")
            for table in (
                "keys",
                "org_units",
                "customers",
                "apps",
                "agents",
                "settings",
                "audit_events",
                "audit_head",
            )
        )


@asynccontextmanager
async def running(db: Path, **changes: Any) -> AsyncIterator[Gateway]:
    clock = Clock()
    app = build_app(config(db, **changes), clock=clock)
    gw = Gateway(app, clock, db)
    async with app.router.lifespan_context(app):
        try:
            yield gw
        finally:
            for client in gw.clients.values():
                await client.aclose()
