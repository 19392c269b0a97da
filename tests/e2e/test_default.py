"""`agentgw serve` with no config: SQLite in ./agentgw.db and the simulated model `sim`."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from openai import OpenAI

from tests.e2e.procs import agentgw, free_port, start


def test_a_newcomer_gets_an_answer_from_the_embedded_default(tmp_path: Path) -> None:
    created = subprocess.run(
        agentgw("keys", "create", "--name", "first", "--org-path", "eng/platform", "--json"),
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
    )
    key = json.loads(created.stdout)
    assert key["key"].startswith("agw_")
    port = free_port()
    gateway = start(agentgw("serve", "--port", str(port)), port, cwd=tmp_path)
    try:
        client = OpenAI(base_url=gateway.url + "/v1", api_key=key["key"], max_retries=0)
        assert [m.id for m in client.models.list()] == ["sim"]
        reply = client.chat.completions.create(
            model="sim", messages=[{"role": "user", "content": "hello"}]
        )
        assert reply.choices[0].message.content == "sim: hello"
        assert reply.usage is not None
        assert reply.usage.total_tokens > 0
    finally:
        gateway.stop()
    assert gateway.stopped_cleanly(), gateway.log()
    assert (tmp_path / "agentgw.db").exists()
    listed = subprocess.run(
        agentgw("keys", "list", "--json"),
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
    )
    rows = json.loads(listed.stdout)
    assert [(r["id"], r["status"]) for r in rows] == [(key["id"], "active")]
    assert key["key"] not in listed.stdout  # the secret is shown only once
