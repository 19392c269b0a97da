"""Findings keep their scope in the redaction log, and the log filters by it.

Real parts: the pipeline with the real PII filter (pattern mode), a SQLite store on a temp file
and the sim provider. An MCP tool call runs through `Pipeline.call_tool` (arguments: scope
`tool_input`, result: `tool_output`); a voice turn's transcript is an AudioPart's transcript, as
the realtime ingress passes a caller's finished turn (`transcript`); a media finding is what the
media filter leaves for an OCR box (`media`; its own OCR path is tested end to end in
tests/e2e/test_media.py). The log is then read the three ways a security team reads it: the
store, `GET /admin/redactions?scope=…` and `agentgw redactions list --scope …`.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import anyio
import pytest

from adapters.egress.sim import SimProvider
from adapters.egress.sim_options import SimOptions
from core.access import Authenticator, KeyRecord, hash_secret
from core.cli import main
from core.config import PiiFilter, VirtualModel
from core.envelope import AudioPart, Envelope, Finding, Message, Modality, Scope, Usage
from core.mcp import ToolOutput
from core.metering import PriceCatalog
from core.metrics import Metrics
from core.pipeline import CallInfo, Pipeline
from core.quota import Unlimited
from core.redaction import RedactionQuery
from core.routing import Router
from core.tracing import SpanWriter
from filters.pii import build_pii_filter
from store import SQLiteStore
from tests.adapters.admin.support import running
from tests.filters.pii_support import SECRET

KEY = "agw_redaction-scopes-secret"
EMAIL = "jane.roe@example.com"
PHONE = "+1 212 555 0147"

pytestmark = pytest.mark.anyio


async def _record_calls(db: Path) -> None:
    store = SQLiteStore(str(db))
    await store.open()
    record = KeyRecord(
        id="k1", name="k", key_hash=hash_secret(KEY), prefix="agw_", org_path="sec/team/a"
    )
    await store.create_key(record)
    spans = SpanWriter(store)
    chat = VirtualModel.model_validate(
        {"name": "chat", "targets": [{"provider": "sim", "model": "sim-1"}]}
    )
    pii = build_pii_filter(PiiFilter(action="redact"), secret=SECRET)
    pipeline = Pipeline(
        authenticator=Authenticator(store),
        router=Router([chat], {"sim": SimProvider("sim", SimOptions())}, {"sim": "public"}),
        quota=Unlimited(),
        filters=[pii],
        prices=PriceCatalog([]),
        spans=spans,
        metrics=Metrics(),
    )
    headers = {"authorization": f"Bearer {KEY}"}
    seen: list[dict[str, Any]] = []

    async def lookup(arguments: dict[str, Any]) -> ToolOutput:
        seen.append(arguments)
        return ToolOutput([f"Found: call {PHONE}."])

    async with anyio.create_task_group() as tg:
        spans.start(tg)
        # An MCP tool call: the email in its arguments, a phone number in its result.
        tool_call = await pipeline.begin(CallInfo("req_tool", "/mcp", headers))
        output = await pipeline.call_tool(
            tool_call, "crm__lookup", {"who": EMAIL}, lookup, server="crm", price_usd=0.0
        )
        assert seen == [{"who": "<EMAIL_ADDRESS>"}] and PHONE not in output.texts[0]
        # A caller's finished voice turn, checked as the realtime ingress checks it.
        voice = await pipeline.begin(CallInfo("req_voice", "/v1/realtime", headers))
        spoken = AudioPart(data="", format="pcm16", transcript=f"Mail me at {EMAIL}.")
        turn = Envelope("req_voice", Modality.VOICE, "chat", [Message("user", [spoken])])
        checked = await pipeline.filter_request(voice, turn)
        heard = checked.messages[0].parts[0]
        assert isinstance(heard, AudioPart) and heard.transcript is not None
        assert EMAIL not in heard.transcript and "<EMAIL_ADDRESS>" in heard.transcript
        # An OCR box the media filter redacted (no value: only the kind and where).
        voice.state["media.findings"] = [
            Finding("media", "PHONE_NUMBER", Scope.MEDIA, "redact", 0.9, 10, 24)
        ]
        await pipeline.record(voice, Usage())
        await spans.aclose()
    await store.aclose()


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("redaction-scopes") / "gw.db"
    anyio.run(_record_calls, path)
    return path


async def test_each_finding_is_logged_with_its_scope_and_the_store_filters_by_it(
    db: Path,
) -> None:
    store = SQLiteStore(str(db))
    await store.open()
    try:
        every = await store.redaction_events(RedactionQuery())
        by_scope = {(e.scope, e.entity_type, e.request_id) for e in every}
        assert by_scope >= {
            ("tool_input", "EMAIL_ADDRESS", "req_tool"),
            ("tool_output", "PHONE_NUMBER", "req_tool"),
            ("transcript", "EMAIL_ADDRESS", "req_voice"),
            ("media", "PHONE_NUMBER", "req_voice"),
        }
        for scope in ("tool_input", "tool_output", "transcript", "media"):
            picked = await store.redaction_events(RedactionQuery(scope=scope))
            assert picked and {e.scope for e in picked} == {scope}
        assert await store.redaction_events(RedactionQuery(scope="system")) == []
        raw = json.dumps([dataclasses.asdict(e) for e in every])
        assert EMAIL not in raw and PHONE not in raw
    finally:
        await store.aclose()


async def test_the_admin_api_filters_by_scope(db: Path) -> None:
    async with running(db) as gw:
        for scope, entity in (("tool_input", "EMAIL_ADDRESS"), ("media", "PHONE_NUMBER")):
            resp = await gw.admin("GET", "/admin/redactions", params={"scope": scope})
            assert resp.status_code == 200, resp.text
            rows = resp.json()["data"]
            assert rows and {r["scope"] for r in rows} == {scope}
            assert entity in {r["entity_type"] for r in rows}
        both = await gw.admin(
            "GET", "/admin/redactions", params={"scope": "transcript", "key_id": "k1"}
        )
        assert [r["request_id"] for r in both.json()["data"]] == ["req_voice"]
        csv = await gw.admin(
            "GET", "/admin/redactions", params={"scope": "tool_output", "format": "csv"}
        )
        lines = csv.text.strip().splitlines()
        assert len(lines) == 2 and "tool_output" in lines[1]


def test_the_cli_filters_by_scope(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = db.parent / "agentgw.yaml"
    config.write_text(f"store: sqlite:///{db}\n")
    args = ["redactions", "list", "--config", str(config), "--json"]
    assert main([*args, "--scope", "tool_output"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["scope"], r["entity_type"]) for r in rows] == [("tool_output", "PHONE_NUMBER")]
    with pytest.raises(SystemExit) as refused:
        main([*args, "--scope", "elsewhere"])
    assert refused.value.code == 2 and "--scope" in capsys.readouterr().err
