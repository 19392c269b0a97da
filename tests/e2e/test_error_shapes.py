"""Every served endpoint refuses bad input in its own protocol's shape, and writes nothing.

One `agentgw serve` (small `listen.max_body_bytes`) in front of one `agentgw sim`; plain httpx
requests from a table of (endpoint, bad input, expected status). Each reply is checked for its
status, its error body's shape (OpenAI, Anthropic, admin API, MCP), `x-request-id`, `Retry-After`
on 429, and the absence of Python exception text; the gateway's stderr must hold no traceback, and
the store must hold no span of an unauthenticated call and no half-created object.

Unknown keys count towards the brute-force lockout of their source address, so each wrong-key case
connects from its own loopback address (127.0.0.0/8 all reach the gateway on 127.0.0.1).
"""

from __future__ import annotations

import io
import itertools
import json
import sqlite3
import struct
import subprocess
import sys
import wave
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets.sync.client as ws_client
from websockets.exceptions import InvalidStatus

from tests.e2e.procs import Proc, agentgw, create_key, start_gateway, start_sim

pytestmark = [pytest.mark.e2e]

ADMIN = "agw_e2e-error-shapes-admin"
MAX_BODY = 4096
CONFIG = """\
listen: {{host: 127.0.0.1, max_body_bytes: {max_body}}}
store: sqlite:///gw.db
providers: [{{name: up, type: openai, base_url: "{sim}/v1"}}]
models:
  - {{name: chat, targets: [{{provider: up, model: sim-large}}]}}
  - {{name: embed, targets: [{{provider: up, model: sim-embed}}]}}
  - {{name: painter, targets: [{{provider: up, model: sim-image-1}}]}}
  - {{name: director, targets: [{{provider: up, model: sim-video-1}}]}}
  - {{name: voice, targets: [{{provider: up, model: gpt-realtime}}]}}
  - {{name: tts, targets: [{{provider: up, model: sim-tts}}]}}
  - {{name: scribe, targets: [{{provider: up, model: sim-transcribe}}]}}
  - {{name: mod, targets: [{{provider: up, model: sim-score}}]}}
mcp_servers:
  - {{name: calc, transport: stdio, command: "{python}", args: ["{calc}"]}}
limits:
  - {{level: key, target: "{quota_id}", kind: requests, amount: 1, window: day}}
"""
ROOT = Path(__file__).parents[2]
CALC = ROOT / "fixtures/mcp/calc_server.py"
ANTHROPIC_TYPES = {
    "invalid_request_error",
    "authentication_error",
    "permission_error",
    "not_found_error",
    "request_too_large",
    "rate_limit_error",
    "api_error",
    "overloaded_error",
}
PY_LEAKS = ("Traceback", 'File "', "Exception", "pydantic", "starlette", "errors.pydantic.dev")


def _wav() -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(struct.pack("<80h", *([0] * 80)))
    return out.getvalue()


PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
)


@dataclass
class Env:
    gateway: Proc
    sim: Proc
    workdir: Path
    keys: dict[str, str]
    addresses: Iterator[int] = field(default_factory=lambda: itertools.count(2))
    # Request ids of refused unauthenticated calls: none may leave a span.
    unauthenticated: list[str] = field(default_factory=list)
    shared: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        transport = httpx.HTTPTransport(verify=False)
        self.shared = httpx.Client(base_url=self.gateway.url, timeout=15, transport=transport)

    @property
    def db(self) -> Path:
        return self.workdir / "gw.db"

    @contextmanager
    def client(self, *, fresh_address: bool = False) -> Iterator[httpx.Client]:
        """The module's client; with `fresh_address`, a new one from a loopback address no other
        case used. Plain HTTP: no TLS context is built (it costs more than the request)."""
        if not fresh_address:
            yield self.shared
            return
        address = f"127.0.{next(self.addresses)}.1"
        transport = httpx.HTTPTransport(local_address=address, verify=False)
        with httpx.Client(base_url=self.gateway.url, timeout=15, transport=transport) as c:
            yield c

    def count(self, sql: str, *args: object) -> int:
        with closing(sqlite3.connect(self.db)) as db:
            row = db.execute(sql, args).fetchone()
        return int(row[0])


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    workdir = tmp_path_factory.mktemp("errors")
    procs: list[Proc] = []
    clients: list[httpx.Client] = []
    try:
        sim = start_sim()
        procs.append(sim)
        config = workdir / "agentgw.yaml"
        fmt = dict(max_body=MAX_BODY, sim=sim.url, python=sys.executable, calc=CALC)
        config.write_text(CONFIG.format(**fmt, quota_id="none"))
        keys: dict[str, str] = {}
        keys["user"] = create_key(config, "user", "qa/errors/p")["key"]
        keys["narrow"] = create_key(config, "narrow", "qa/errors/p", "--models", "chat")["key"]
        keys["finance"] = create_key(config, "fin", "qa/errors/p", "--role", "finance")["key"]
        quota = create_key(config, "quota", "qa/errors/q")
        keys["quota"] = quota["key"]
        revoked = create_key(config, "gone", "qa/errors/p")
        keys["revoked"] = revoked["key"]
        subprocess.run(
            agentgw("keys", "revoke", "--config", str(config), revoked["id"]),
            check=True,
            capture_output=True,
            cwd=workdir,
        )
        config.write_text(CONFIG.format(**fmt, quota_id=quota["id"]))
        gateway = start_gateway(config, env={"AGENTGW_ADMIN_KEY": ADMIN})
        procs.append(gateway)
        keys["admin"] = ADMIN
        e = Env(gateway, sim, workdir, keys)
        clients.append(e.shared)
        # The quota key spends its one request here: every case below is over its quota.
        with e.client() as c:
            first = c.post("/v1/chat/completions", headers=_auth(keys["quota"]), json=CHAT)
            assert first.status_code == 200, first.text
        yield e
    finally:
        for client in clients:
            client.close()
        for proc in reversed(procs):
            proc.stop()


def _auth(secret: str) -> dict[str, str]:
    return {"authorization": f"Bearer {secret}"}


# --- the table -------------------------------------------------------------------------------

CHAT = {"model": "chat", "messages": [{"role": "user", "content": "hi"}]}
MESSAGES = {"model": "chat", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}
# (path, a valid body for the `user` key, a body with a string for an int, one missing a field,
#  a valid body naming an unknown model, a valid body the `narrow` key (chat only) may not send)
JSON_ENDPOINTS: dict[str, dict[str, Any]] = {
    "/v1/chat/completions": {
        "proto": "openai",
        "wrong_type": {**CHAT, "max_tokens": "many"},
        "missing": {"model": "chat"},
        "unknown_model": {**CHAT, "model": "no-such-model"},
        "out_of_scope": {**CHAT, "model": "embed"},
    },
    "/v1/embeddings": {
        "proto": "openai",
        "wrong_type": {"model": "embed", "input": "hi", "dimensions": "many"},
        "missing": {"model": "embed"},
        "unknown_model": {"model": "no-such-model", "input": "hi"},
        "out_of_scope": {"model": "embed", "input": "hi"},
    },
    "/v1/moderations": {
        "proto": "openai",
        "wrong_type": {"model": "mod", "input": 5},
        "missing": {"model": "mod"},
        "unknown_model": {"model": "no-such-model", "input": "hi"},
        "out_of_scope": {"model": "mod", "input": "hi"},
    },
    "/v1/messages": {
        "proto": "anthropic",
        "wrong_type": {**MESSAGES, "max_tokens": "many"},
        "missing": {"model": "chat", "max_tokens": 16},
        "unknown_model": {**MESSAGES, "model": "no-such-model"},
        "out_of_scope": {**MESSAGES, "model": "embed"},
    },
    "/v1/messages/count_tokens": {
        "proto": "anthropic",
        "wrong_type": {"model": "chat", "messages": "hi"},
        "missing": {"model": "chat"},
        "unknown_model": {"model": "no-such-model", "messages": MESSAGES["messages"]},
        "out_of_scope": {"model": "embed", "messages": MESSAGES["messages"]},
    },
    "/v1/images/generations": {
        "proto": "openai",
        "wrong_type": {"model": "painter", "prompt": "a cat", "n": "many"},
        "missing": {"model": "painter"},
        "unknown_model": {"model": "no-such-model", "prompt": "a cat"},
        "out_of_scope": {"model": "painter", "prompt": "a cat"},
    },
    "/v1/videos": {
        "proto": "openai",
        "wrong_type": {"model": "director", "prompt": "a cat", "seconds": ["4"]},
        "missing": {"model": "director"},
        "unknown_model": {"model": "no-such-model", "prompt": "a cat"},
        "out_of_scope": {"model": "director", "prompt": "a cat"},
    },
    "/v1/audio/speech": {
        "proto": "openai",
        "wrong_type": {"model": "tts", "input": "hi", "voice": "alloy", "speed": "fast"},
        "missing": {"model": "tts", "voice": "alloy"},
        "unknown_model": {"model": "no-such-model", "input": "hi", "voice": "alloy"},
        "out_of_scope": {"model": "tts", "input": "hi", "voice": "alloy"},
        # The refusal names the field (`param`).
        "wrong_param": "speed",
        "missing_param": "input",
    },
}
MULTIPART_ENDPOINTS: dict[str, dict[str, Any]] = {
    "/v1/images/edits": {
        "fields": {"model": "painter", "prompt": "a hat"},
        "files": {"image": ("a.png", PNG, "image/png")},
        "wrong_type": {"n": "many"},
        "missing": "prompt",
        "broken": 422,  # the lenient form parser reads no field: "model: Field required"
    },
    "/v1/audio/transcriptions": {
        "fields": {"model": "scribe"},
        "files": {"file": ("a.wav", _wav(), "audio/wav")},
        "wrong_type": {"temperature": "hot"},
        "missing": "file",
        "broken": 422,  # the same form reader as /v1/images/edits
    },
}
MULTIPART_TOO = ("/v1/videos",)  # JSON endpoints that take a multipart form as well
GET_ENDPOINTS = ("/v1/models", "/v1/models/chat", "/v1/videos/video_nope", "/v1/videos/v/content")

# Known defects in files other people are changing (case id -> reason): kept visible as
# strict xfails until fixed. None open.
XFAIL: dict[str, str] = {}
# Calls that spend nothing (no upstream, no span) are outside request limits by design.
UNMETERED = ("/v1/models", "/v1/models/chat", "/v1/messages/count_tokens")


@dataclass(frozen=True)
class Case:
    """One bad request and what must come back."""

    id: str
    method: str
    path: str
    status: int
    proto: str = "openai"
    key: str | None = "user"
    fresh_address: bool = False
    json: Any = None
    content: bytes | None = None
    content_type: str | None = None
    files: dict[str, Any] | None = None
    data: dict[str, str] | None = None
    # The field the refusal must name (`error.param`), where the case is about one field.
    names: str | None = None

    def param(self) -> Any:
        marks = []
        if self.id in XFAIL:
            marks.append(pytest.mark.xfail(strict=True, reason=XFAIL[self.id]))
        return pytest.param(self, id=self.id, marks=marks)


def _auth_cases(method: str, path: str, proto: str, body: Any, **kw: Any) -> list[Case]:
    cases = [
        Case(f"{path} no key", method, path, 401, proto, key=None, json=body, **kw),
        Case(
            f"{path} wrong key",
            method,
            path,
            401,
            proto,
            key="agw_wrong-secret-0000",
            fresh_address=True,
            json=body,
            **kw,
        ),
        Case(f"{path} revoked key", method, path, 401, proto, key="revoked", json=body, **kw),
    ]
    if path not in UNMETERED:
        cases.append(Case(f"{path} over quota", method, path, 429, proto, key="quota", json=body))
    return cases


def _json_cases() -> list[Case]:
    out: list[Case] = []
    for path, spec in JSON_ENDPOINTS.items():
        p = spec["proto"]
        valid = spec["out_of_scope"]
        out += _auth_cases("POST", path, p, valid)
        out += [
            Case(f"{path} admin key", "POST", path, 403, p, key="admin", json=valid),
            Case(f"{path} out of scope", "POST", path, 403, p, key="narrow", json=valid),
            Case(
                f"{path} malformed json",
                "POST",
                path,
                400,
                p,
                content=b'{"model": "chat",',
                content_type="application/json",
            ),
            Case(
                f"{path} empty body",
                "POST",
                path,
                400,
                p,
                content=b"",
                content_type="application/json",
            ),
            Case(f"{path} array body", "POST", path, 400, p, json=[valid]),
            Case(
                f"{path} wrong type",
                "POST",
                path,
                422,
                p,
                json=spec["wrong_type"],
                names=spec.get("wrong_param"),
            ),
            Case(
                f"{path} missing field",
                "POST",
                path,
                422,
                p,
                json=spec["missing"],
                names=spec.get("missing_param"),
            ),
            Case(f"{path} unknown model", "POST", path, 404, p, json=spec["unknown_model"]),
            # A streaming request refused before any byte is out: a JSON error, not SSE.
            Case(
                f"{path} unknown model, stream",
                "POST",
                path,
                404,
                p,
                json={**spec["unknown_model"], "stream": True},
            ),
            Case(
                f"{path} too large",
                "POST",
                path,
                413,
                p,
                json={**valid, "pad": "x" * (MAX_BODY + 1)},
            ),
            Case(f"{path} form", "POST", path, 415, p, files={"file": ("a", b"x", "a/b")})
            if path not in MULTIPART_TOO
            else Case(
                f"{path} plain text", "POST", path, 415, p, content=b"hi", content_type="text/plain"
            ),
            Case(f"{path} wrong method", "GET", path, 405, p),
        ]
    return out


def _multipart_cases() -> list[Case]:
    out: list[Case] = []
    for path, spec in MULTIPART_ENDPOINTS.items():
        fields, files = spec["fields"], spec["files"]
        valid: dict[str, Any] = {"data": fields, "files": files}
        out += [
            Case(f"{path} no key", "POST", path, 401, key=None, **valid),
            Case(
                f"{path} wrong key",
                "POST",
                path,
                401,
                key="agw_wrong-secret-0000",
                fresh_address=True,
                **valid,
            ),
            Case(f"{path} revoked key", "POST", path, 401, key="revoked", **valid),
            Case(f"{path} over quota", "POST", path, 429, key="quota", **valid),
            Case(f"{path} out of scope", "POST", path, 403, key="narrow", **valid),
            Case(
                f"{path} broken multipart",
                "POST",
                path,
                spec["broken"],
                content=b"--zz\r\nnope",
                content_type="multipart/form-data; boundary=zz",
            ),
            Case(
                f"{path} plain text", "POST", path, 415, content=b"hello", content_type="text/plain"
            ),
            Case(
                f"{path} wrong type",
                "POST",
                path,
                422,
                data={**fields, **spec["wrong_type"]},
                files=files,
                names=next(iter(spec["wrong_type"])),
            ),
            Case(
                f"{path} missing field",
                "POST",
                path,
                422,
                data={k: v for k, v in fields.items() if k != spec["missing"]},
                files={k: v for k, v in files.items() if k != spec["missing"]},
                names=spec["missing"],
            ),
            Case(
                f"{path} unknown model",
                "POST",
                path,
                404,
                data={**fields, "model": "no-such-model"},
                files=files,
            ),
            Case(
                f"{path} too large",
                "POST",
                path,
                413,
                data=fields,
                files={**files, "pad": ("p", b"x" * MAX_BODY, "a/b")},
            ),
            Case(f"{path} wrong method", "GET", path, 405),
        ]
    return out


def _get_cases() -> list[Case]:
    out: list[Case] = []
    for path in GET_ENDPOINTS:
        out += _auth_cases("GET", path, "openai", None)
        out.append(Case(f"{path} wrong method", "DELETE", path, 405))
    out += [
        Case("/v1/models/x unknown", "GET", "/v1/models/no-such-model", 404),
        Case("/v1/videos/x unknown", "GET", "/v1/videos/video_nope", 404),
        Case("/v1/videos/x/content unknown", "GET", "/v1/videos/video_nope/content", 404),
        Case("/v1/nothing", "POST", "/v1/nothing", 404, json={}),
    ]
    return out


CASES = [*_json_cases(), *_multipart_cases(), *_get_cases()]


def _send(env: Env, case: Case) -> httpx.Response:
    headers: dict[str, str] = {}
    if case.key is not None:
        headers.update(_auth(env.keys.get(case.key, case.key)))
    if case.content_type is not None:
        headers["content-type"] = case.content_type
    with env.client(fresh_address=case.fresh_address) as c:
        return c.request(
            case.method,
            case.path,
            headers=headers,
            json=case.json,
            content=case.content,
            data=case.data,
            files=case.files,
        )


def check_shape(r: httpx.Response, proto: str, status: int) -> dict[str, Any]:
    """The reply is a refusal with `status` in `proto`'s error shape; returns the error object."""
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers.get("x-request-id"), r.headers
    assert r.headers.get("content-type", "").startswith("application/json"), r.headers
    for leak in PY_LEAKS:
        assert leak not in r.text, r.text
    body = r.json()
    if proto == "anthropic":
        assert body["type"] == "error", body
        error = body["error"]
        assert set(error) >= {"type", "message"}, body
        assert error["type"] in ANTHROPIC_TYPES, body
    else:  # the OpenAI shape, which the admin API shares
        error = body["error"]
        assert set(error) >= {"message", "type", "param", "code"}, body
        assert isinstance(error["code"], str), body
    assert isinstance(error["message"], str) and error["message"], body
    assert isinstance(error["type"], str) and error["type"], body
    if status == 429:
        assert int(r.headers["retry-after"]) >= 1, r.headers
    return dict(error)


@pytest.mark.parametrize("case", [c.param() for c in CASES])
def test_data_plane_refusals(env: Env, case: Case) -> None:
    r = _send(env, case)
    error = check_shape(r, case.proto, case.status)
    if case.names is not None:
        assert error["param"] == case.names, error
    if case.status == 401:
        env.unauthenticated.append(r.headers["x-request-id"])


# --- the admin API -----------------------------------------------------------------------------

# (method, path with `nope` for each id, whether it reads a JSON body, whether `finance` may call)
ADMIN_ROUTES: tuple[tuple[str, str, bool, bool], ...] = (
    ("GET", "/admin/whoami", False, True),
    ("POST", "/admin/keys", True, False),
    ("GET", "/admin/keys", False, False),
    ("GET", "/admin/keys/nope", False, False),
    ("PATCH", "/admin/keys/nope", True, False),
    ("DELETE", "/admin/keys/nope", False, False),
    ("POST", "/admin/keys/nope/rotate", True, False),
    ("POST", "/admin/org-units", True, False),
    ("GET", "/admin/org-units", False, True),
    ("GET", "/admin/org-units/nope", False, True),
    ("PATCH", "/admin/org-units/nope", True, False),
    ("DELETE", "/admin/org-units/nope", False, False),
    *(
        row
        for kind in ("customers", "apps", "agents")
        for row in (
            ("POST", f"/admin/{kind}", True, False),
            ("GET", f"/admin/{kind}", False, True),
            ("GET", f"/admin/{kind}/nope", False, True),
            ("PATCH", f"/admin/{kind}/nope", True, False),
            ("DELETE", f"/admin/{kind}/nope", False, False),
        )
    ),
    ("GET", "/admin/audit", False, False),
    ("GET", "/admin/audit/verify", False, False),
    ("GET", "/admin/models/nope", False, True),
    ("PUT", "/admin/models/nope", True, False),
    ("GET", "/admin/models/nope/versions", False, True),
    ("POST", "/admin/models/nope/rollback", True, False),
    *(
        row
        for kind, finance in (("limits", True), ("budgets", True))
        for row in (
            ("POST", f"/admin/{kind}", True, False),
            ("GET", f"/admin/{kind}", False, finance),
            ("GET", f"/admin/{kind}/nope", False, finance),
            ("PATCH", f"/admin/{kind}/nope", True, False),
            ("DELETE", f"/admin/{kind}/nope", False, False),
            ("POST", f"/admin/{kind}/nope/reset", False, False),
        )
    ),
    ("GET", "/admin/alerts", False, True),
    ("POST", "/admin/alerts/nope/acknowledge", False, False),
    ("GET", "/admin/redactions", False, False),
    ("GET", "/admin/prices", False, True),
    ("GET", "/admin/reports/forecast", False, True),
    ("GET", "/admin/reports/spend", False, True),
    ("GET", "/admin/reports/top", False, True),
    ("GET", "/admin/reports/chargeback", False, True),
    ("GET", "/admin/reports/customers", False, True),
    ("GET", "/admin/sessions/nope", False, True),
    ("GET", "/admin/reconciliations", False, True),
    ("GET", "/admin/reconciliations/nope", False, True),
    ("GET", "/admin/mcp/servers", False, True),
    ("GET", "/admin/mcp/tools", False, True),
    ("POST", "/admin/mcp/tools/nope/approve", False, False),
    ("GET", "/admin/mcp/costs", False, True),
)


def _admin_refusals(env: Env, method: str, path: str, has_body: bool, finance: bool) -> None:
    """Every refusal of one admin route; each reply in the admin API's error shape."""
    body: dict[str, Any] | None = {} if has_body else None
    expected: list[tuple[str, int, dict[str, Any]]] = [
        ("no key", 401, {}),
        ("wrong key", 401, {"key": "agw_wrong-secret-0000", "fresh_address": True}),
        ("revoked key", 401, {"key": env.keys["revoked"]}),
        ("data-plane key", 403, {"key": env.keys["user"]}),
        ("unknown query parameter", 422, {"key": ADMIN, "query": {"bogus": "1"}}),
    ]
    # The role is checked before the body is read: an empty body from a role without the
    # permission is a 403, not a 422.
    if not finance:
        expected.append(("finance key", 403, {"key": env.keys["finance"]}))
    if has_body:
        expected += [
            ("malformed json", 400, {"key": ADMIN, "content": b'{"name": '}),
            ("array body", 400, {"key": ADMIN, "content": b"[{}]"}),
            ("wrong type", 422, {"key": ADMIN, "content": b'{"name": 5, "org_path": 5}'}),
            ("too large", 413, {"key": ADMIN, "content": b'{"x": "' + b"y" * MAX_BODY + b'"}'}),
        ]
    for label, status, how in expected:
        headers = _auth(how["key"]) if "key" in how else {}
        if "content" in how:
            headers["content-type"] = "application/json"
        with env.client(fresh_address=how.get("fresh_address", False)) as c:
            r = c.request(
                method,
                path,
                headers=headers,
                params=how.get("query"),
                content=how.get("content"),
                json=None if "content" in how else body,
            )
        try:
            check_shape(r, "admin", status)
        except AssertionError as exc:
            raise AssertionError(f"{method} {path} {label}: {exc}") from None
    with env.client() as c:
        r = c.request("TRACE", path, headers=_auth(ADMIN))  # a method no admin route serves
    check_shape(r, "admin", 405)


@pytest.mark.parametrize(("method", "path", "has_body", "finance"), ADMIN_ROUTES)
def test_admin_refusals(env: Env, method: str, path: str, has_body: bool, finance: bool) -> None:
    audit_before = env.count("SELECT COUNT(*) FROM audit_events")
    _admin_refusals(env, method, path, has_body, finance)
    # Refused changes leave no trace: no audit event, so nothing was changed.
    assert env.count("SELECT COUNT(*) FROM audit_events") == audit_before


# --- MCP, realtime and console sign-in: their HTTP-level refusals ------------------------------


@pytest.mark.parametrize(
    ("label", "key", "status"),
    [("no key", None, 401), ("revoked key", "revoked", 401), ("admin key", "admin", 403)],
)
def test_mcp_refusals(env: Env, label: str, key: str | None, status: int) -> None:
    headers = {"accept": "application/json, text/event-stream"}
    if key is not None:
        headers.update(_auth(env.keys[key]))
    ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    with env.client() as c:
        r = c.post("/mcp", headers=headers, json=ping)
    assert r.status_code == status, r.text
    assert r.headers.get("x-request-id")
    error = r.json()["error"]
    assert error["message"] and error["type"] and error["code"], error
    for leak in PY_LEAKS:
        assert leak not in r.text
    if status == 401:
        assert r.headers.get("www-authenticate") == "Bearer"
        env.unauthenticated.append(r.headers["x-request-id"])


RPC = b'{"jsonrpc": "2.0", "id": 1, "method": "ping"}'


@pytest.mark.parametrize(
    ("label", "content", "content_type", "status", "rpc_code"),
    [
        ("malformed json", b'{"jsonrpc": ', "application/json", 400, -32700),
        ("array body", b"[" + RPC + b"]", "application/json", 400, -32600),
        ("too large", RPC[:-1] + b', "pad": "' + b"x" * MAX_BODY + b'"}', "application/json", 413,
         -32600),
        ("plain text", RPC, "text/plain", 415, -32600),
    ],
)  # fmt: skip
def test_mcp_bad_messages(
    env: Env, label: str, content: bytes, content_type: str, status: int, rpc_code: int
) -> None:
    headers = {"accept": "application/json, text/event-stream", "content-type": content_type}
    with env.client() as c:
        r = c.post("/mcp", headers={**headers, **_auth(env.keys["user"])}, content=content)
    assert r.status_code == status, r.text
    assert r.headers.get("x-request-id")
    body = r.json()
    assert body["jsonrpc"] == "2.0" and body["id"] is None, body
    assert body["error"]["code"] == rpc_code and body["error"]["message"], body
    for leak in PY_LEAKS:
        assert leak not in r.text


def test_mcp_wrong_method(env: Env) -> None:
    with env.client() as c:
        r = c.put("/mcp", headers=_auth(env.keys["user"]), json={})
    check_shape(r, "openai", 405)


@pytest.mark.parametrize(
    ("label", "key", "model", "status"),
    [
        ("no key", None, "voice", 401),
        ("revoked key", "revoked", "voice", 401),
        ("out of scope", "narrow", "voice", 403),
        ("unknown model", "user", "no-such-model", 404),
        ("over quota", "quota", "voice", 429),
    ],
)
def test_realtime_handshake_refusals(
    env: Env, label: str, key: str | None, model: str, status: int
) -> None:
    url = env.gateway.url.replace("http://", "ws://") + f"/v1/realtime?model={model}"
    headers = _auth(env.keys[key]) if key is not None else {}
    with pytest.raises(InvalidStatus) as refused:
        ws_client.connect(url, additional_headers=headers, open_timeout=10).close()
    r = refused.value.response
    assert r.status_code == status, (r.status_code, r.body)
    assert r.headers.get("x-request-id")
    error = json.loads(r.body or b"{}")["error"]
    assert set(error) >= {"message", "type", "param", "code"} and error["message"], error
    if status == 429:
        assert int(r.headers["retry-after"]) >= 1


@pytest.mark.parametrize(
    ("label", "key", "status"),
    [("no key", None, 401), ("wrong key", "agw_wrong-secret-0000", 401),
     ("revoked key", "revoked", 401), ("data-plane key", "user", 403)],
)  # fmt: skip
def test_console_sign_in_refusals(env: Env, label: str, key: str | None, status: int) -> None:
    """The console is a browser form: refusals are its sign-in page again, with no session."""
    form = {} if key is None else {"key": env.keys.get(key, key)}
    with env.client(fresh_address=True) as c:
        r = c.post("/console/login", data=form)
    assert r.status_code == status, r.text
    assert r.headers.get("content-type", "").startswith("text/html")
    assert r.headers.get("x-request-id")
    assert "set-cookie" not in r.headers
    for leak in PY_LEAKS:
        assert leak not in r.text


def test_console_sign_in_json(env: Env) -> None:
    """A JSON body is not the sign-in form: 415 (as an HTML page), even with a valid key."""
    with env.client(fresh_address=True) as c:
        r = c.post("/console/login", json={"key": ADMIN})
    assert r.status_code == 415, r.text
    assert r.headers.get("content-type", "").startswith("text/html")
    assert "set-cookie" not in r.headers


def test_zz_nothing_recorded_for_refused_calls(env: Env) -> None:
    """Runs last: no span for any unauthenticated call, no traceback in the gateway's log."""
    with env.client() as c:
        refused = c.post("/v1/chat/completions", json=CHAT)
        assert refused.status_code == 401, refused.text
        env.unauthenticated.append(refused.headers["x-request-id"])
        r = c.post("/v1/chat/completions", headers=_auth(env.keys["user"]), json=CHAT)
    assert r.status_code == 200, r.text
    marker = r.headers["x-request-id"]
    # A clean stop flushes the span queue, and waiting for the gateway's last line means every
    # earlier log line has been read.
    env.gateway.stop()
    env.gateway.wait_for("Application shutdown complete", since=0)
    assert env.count("SELECT COUNT(*) FROM spans WHERE request_id = ?", marker) == 1
    marks = ",".join("?" * len(env.unauthenticated))
    sql = f"SELECT COUNT(*) FROM spans WHERE request_id IN ({marks})"
    assert env.count(sql, *env.unauthenticated) == 0
    assert env.count("SELECT COUNT(*) FROM video_jobs") == 0  # no refused video left a job
    log = env.gateway.log()
    assert "Traceback" not in log, log
    # Refused Realtime handshakes are finished handshakes: no uvicorn ERROR line.
    assert '"WebSocket /v1/realtime?model=voice" 401' in log, log  # the refusals were served
    assert "without completing handshake" not in log, log
    assert "ERROR" not in log, log
