"""Keys end to end: real `agentgw serve` and sims, keys managed over the admin API over HTTP.

Rotation grace, revocation on the next request, model and egress scopes (a private-only key never
reaches a `network: public` provider, also not on failover), the IP allowlist, and the wall
between admin-API keys and the data plane, all seen through the real `openai` SDK.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai import OpenAI

from tests.e2e.procs import Proc, start_gateway, start_sim

ADMIN = "agw_e2e-admin-secret"
CONFIG = """\
store: sqlite:///gw.db
providers:
  - {{name: private-good, type: openai, base_url: "{good}/v1", network: private}}
  - {{name: private-bad, type: openai, base_url: "{bad}/v1", network: private}}
  - {{name: public, type: openai, base_url: "{public}/v1", network: public}}
models:
  - {{name: chat, targets: [{{provider: private-good, model: sim-large}}]}}
  - {{name: other, targets: [{{provider: private-good, model: sim-large}}]}}
  - name: mixed
    targets: [{{provider: private-bad, model: sim-large}}, {{provider: public, model: sim-large}}]
  - {{name: public-only, targets: [{{provider: public, model: sim-large}}]}}
"""
MESSAGES: Any = [{"role": "user", "content": "hello"}]


@dataclass
class Deployment:
    gateway: Proc
    public: Proc

    def admin(self, method: str, path: str, body: Any = None) -> httpx.Response:
        return httpx.request(
            method,
            self.gateway.url + path,
            json=body,
            headers={"authorization": f"Bearer {ADMIN}"},
        )

    def create_key(self, name: str, **fields: Any) -> dict[str, Any]:
        body = {"name": name, "org_path": "research/agents/demo", **fields}
        resp = self.admin("POST", "/admin/keys", body)
        assert resp.status_code == 201, resp.text
        created: dict[str, Any] = resp.json()
        return created

    def client(self, secret: str) -> OpenAI:
        return OpenAI(base_url=self.gateway.url + "/v1", api_key=secret, max_retries=0)

    def public_requests(self) -> int:
        return len(httpx.get(self.public.url + "/_sim/requests").json())


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    workdir: Path = tmp_path_factory.mktemp("keys")
    procs: list[Proc] = []
    try:
        good, bad, public = start_sim(), start_sim("--fail-rate", "1"), start_sim()
        procs += [good, bad, public]
        config = workdir / "agentgw.yaml"
        config.write_text(CONFIG.format(good=good.url, bad=bad.url, public=public.url))
        gateway = start_gateway(config, env={"AGENTGW_ADMIN_KEY": ADMIN})
        procs.append(gateway)
        yield Deployment(gateway, public)
    finally:
        for proc in reversed(procs):
            proc.stop()


def ask(client: OpenAI, model: str = "chat") -> str:
    reply = client.chat.completions.create(model=model, messages=MESSAGES)
    return reply.choices[0].message.content or ""


def test_during_the_grace_period_both_secrets_work_and_after_it_only_the_new_one(
    deployment: Deployment,
) -> None:
    created = deployment.create_key("rotating")
    first = created["key"]
    assert ask(deployment.client(first))
    rotate = f"/admin/keys/{created['id']}/rotate"
    second = deployment.admin("POST", rotate, {"grace_seconds": 3600}).json()["key"]
    assert ask(deployment.client(first))  # in its grace period
    assert ask(deployment.client(second))
    third = deployment.admin("POST", rotate, {"grace_seconds": 0}).json()["key"]
    for retired in (first, second):  # the grace is over (or was cut by the next rotation)
        with pytest.raises(openai.AuthenticationError):
            ask(deployment.client(retired))
    assert ask(deployment.client(third))


def test_revocation_takes_effect_on_the_very_next_request(deployment: Deployment) -> None:
    created = deployment.create_key("short-lived")
    client = deployment.client(created["key"])
    assert ask(client)  # the gateway has the key cached now
    assert deployment.admin("DELETE", f"/admin/keys/{created['id']}").status_code == 200
    with pytest.raises(openai.AuthenticationError, match="revoked"):
        ask(client)


def test_a_key_limited_to_one_model_sees_only_it_and_is_refused_another(
    deployment: Deployment,
) -> None:
    client = deployment.client(deployment.create_key("narrow", scopes={"models": ["chat"]})["key"])
    assert [m.id for m in client.models.list()] == ["chat"]
    assert ask(client, "chat")
    with pytest.raises(openai.PermissionDeniedError, match="scope 'models'"):
        ask(client, "other")


def test_a_private_only_key_never_reaches_a_public_provider_not_even_on_failover(
    deployment: Deployment,
) -> None:
    private = deployment.client(
        deployment.create_key("private", scopes={"egress": "private"})["key"]
    )
    public = deployment.client(deployment.create_key("public")["key"])
    httpx.delete(deployment.public.url + "/_sim/requests").raise_for_status()
    assert ask(private, "chat")
    with pytest.raises(openai.APIStatusError) as failed:  # the private target fails: no failover
        ask(private, "mixed")
    assert failed.value.status_code in (502, 503)
    with pytest.raises(openai.PermissionDeniedError, match="private"):
        ask(private, "public-only")
    assert deployment.public_requests() == 0
    assert ask(public, "mixed")  # the same failover does reach the public provider for others
    assert deployment.public_requests() == 1


def test_an_address_outside_the_allowlist_is_refused(deployment: Deployment) -> None:
    office = deployment.create_key("office", scopes={"ip_allowlist": ["10.0.0.0/8"]})
    with pytest.raises(openai.PermissionDeniedError, match="ip_allowlist"):
        ask(deployment.client(office["key"]))
    local = deployment.create_key("local", scopes={"ip_allowlist": ["127.0.0.1/32", "::1"]})
    assert ask(deployment.client(local["key"]))


def test_the_admin_key_cannot_call_models(deployment: Deployment) -> None:
    with pytest.raises(openai.PermissionDeniedError, match="cannot call models"):
        ask(deployment.client(ADMIN))
    messages = httpx.post(
        deployment.gateway.url + "/v1/messages",
        headers={"x-api-key": ADMIN, "anthropic-version": "2023-06-01"},
        json={"model": "chat", "max_tokens": 16, "messages": MESSAGES},
    )
    assert messages.status_code == 403


def test_a_data_plane_key_cannot_use_the_admin_api(deployment: Deployment) -> None:
    user = deployment.create_key("plain")["key"]
    resp = httpx.get(
        deployment.gateway.url + "/admin/keys", headers={"authorization": f"Bearer {user}"}
    )
    assert resp.status_code == 403
    assert "data-plane key" in resp.json()["error"]["message"]
