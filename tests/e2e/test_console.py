"""The console in a real browser: headless Chromium (Debian's, driven by Playwright) signs in as
finance and as security against a real gateway, renders the spend chart and the redaction log,
and a security key cannot open finance pages. A screenshot of each page is saved under
`tests/artifacts/console/`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from playwright.sync_api import BrowserContext, Page, Playwright, sync_playwright

from tests.e2e.ops_support import OpsDeployment, ops_deployment

pytestmark = pytest.mark.e2e
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "console"
EMAIL = "jane.doe@example.com"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def ops(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpsDeployment]:
    with ops_deployment(tmp_path_factory.mktemp("console")) as d:
        calls = 0
        for name in ("alpha", "beta", "gamma"):
            client = openai.OpenAI(
                base_url=d.gateway.url + "/v1",
                api_key=d.keys[name]["key"],
                default_headers={"x-agent-id": f"agent-{name}", "x-session-id": "console-demo"},
                max_retries=0,
            )
            for text in (f"please mail {EMAIL}", "summarize the ledger", "one more"):
                client.chat.completions.create(
                    model="chat", messages=[{"role": "user", "content": text}]
                )
                calls += 1
        d.receiver.wait_for(calls)  # exported after being stored
        yield d


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: .ci/run installs Debian's chromium")
    with sync_playwright() as p:
        yield p


def browser(p: Playwright, profile: Path) -> BrowserContext:
    return p.chromium.launch_persistent_context(
        user_data_dir=str(profile),
        executable_path=CHROMIUM,
        headless=True,
        args=ARGS,
    )


def sign_in(page: Page, ops: OpsDeployment, who: str) -> None:
    page.goto(ops.gateway.url + "/console/login")
    page.fill("input[name=key]", ops.keys[who]["key"])
    with page.expect_navigation():
        page.click("button")


def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_finance_signs_in_and_sees_the_spend_chart(
    ops: OpsDeployment, playwright: Playwright, tmp_path: Path
) -> None:
    context = browser(playwright, tmp_path / "finance-profile")
    try:
        page = context.new_page()
        sign_in(page, ops, "finance")
        assert page.url.endswith("/console/spend"), page.content()[-600:]
        assert page.locator("svg.chart rect").count() >= 1
        assert "Top keys" in page.content() and ops.keys["alpha"]["id"] in page.content()
        shot(page, "finance-spend")
        cookie = next(c for c in context.cookies() if c["name"] == "agw_console")
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        for path, name, text in (
            ("/console/explorer?group1=team&group2=model", "finance-explorer", "research/nlp"),
            ("/console/budgets", "finance-budgets", "Alerts"),
            ("/console/sessions?session=console-demo", "finance-sessions", "Per agent"),
        ):
            reply = page.goto(ops.gateway.url + path)
            assert reply is not None and reply.status == 200, path
            assert text in page.content(), path
            shot(page, name)
        reconcile_with_a_planted_gap(page, ops)
        nav = page.locator("header a").all_inner_texts()
        assert "Redaction log" not in nav
        refused = page.goto(ops.gateway.url + "/console/redactions")
        assert refused is not None and refused.status == 403
    finally:
        context.close()


def test_security_reviews_redactions_and_cannot_open_finance_pages(
    ops: OpsDeployment, playwright: Playwright, tmp_path: Path
) -> None:
    context = browser(playwright, tmp_path / "security-profile")
    try:
        page = context.new_page()
        sign_in(page, ops, "security")
        assert "/console/login" not in page.url
        reply = page.goto(ops.gateway.url + "/console/redactions?entity_type=EMAIL_ADDRESS")
        assert reply is not None and reply.status == 200
        html = page.content()
        assert page.locator("mark", has_text="[EMAIL_ADDRESS]").count() == 3
        assert EMAIL not in html
        shot(page, "security-redactions")
        page.goto(ops.gateway.url + "/console/audit")
        assert "Audit chain intact" in page.content()
        shot(page, "security-audit")
        for path in ("/console/spend", "/console/explorer", "/console/explorer.csv"):
            refused = page.goto(ops.gateway.url + path)
            assert refused is not None and refused.status == 403, path
        shot(page, "security-refused")
        page.goto(ops.gateway.url + "/console/audit")
        with page.expect_navigation():
            page.click("header form button")  # sign out
        again = page.goto(ops.gateway.url + "/console/redactions")
        assert again is not None and again.url.endswith("/console/login")
    finally:
        context.close()


def reconcile_with_a_planted_gap(page: Page, ops: OpsDeployment) -> None:
    """Finance pastes a provider export 7 % above the metered cost: one gap, shown as such."""
    reply = httpx.get(
        ops.gateway.url + "/admin/reports/spend",
        params={"group_by": "upstream_model", "bucket": "day", "provider": "good"},
        headers={"authorization": f"Bearer {ops.keys['finance']['key']}"},
    )
    [row] = reply.json()["data"]
    export = f"date,model,cost\n{row['bucket'][:10]},sim-large,{row['cost_usd'] * 1.07:.9f}\n"
    page.goto(ops.gateway.url + "/console/reconcile")
    page.fill("input[name=provider]", "good")
    page.fill("textarea[name=csv]", export)
    with page.expect_navigation():
        page.click("form.card button")
    html = page.content()
    assert "1 difference(s)" in html, html[-1500:]
    cells = page.locator("tr", has_text="sim-large").first.inner_text().split("\t")
    assert cells[-1] == "gap" and float(cells[-2]) == pytest.approx(7.0, abs=0.01)
    shot(page, "finance-reconcile")
