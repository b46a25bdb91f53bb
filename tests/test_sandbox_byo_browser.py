"""/gateway set in the sandbox page, in a real browser against the real bot: the Gateways panel offers a
second emulated gateway, the admin types its details into the modal, and the server's /chat is then
answered there, as the panel's request log shows."""

from __future__ import annotations

from typing import Any

from sandbox.launcher import Sandbox
from tests.test_sandbox_browser import field_enter, page, run_command, sandbox  # noqa: F401  (the fixtures)
from tests.test_sandbox_byo import chat_calls


async def test_the_gateways_panel_offers_a_gateway_that_gateway_set_then_uses(sandbox: Sandbox, page: Any) -> None:  # noqa: F811
    own, operator = sandbox.own_gateway, sandbox.gateway
    assert own is not None and operator is not None
    await page.select_option("#user-switch", "admin")
    await page.locator("#gateways-toggle").click()
    offer = await page.locator("#own-gateway").inner_text()
    assert own.profile in offer and own.root_url in offer and own.api_key in offer

    await page.locator("#gateways-prepare").click()
    await field_enter(page)
    modal = page.locator("#modal[open]")
    await modal.wait_for()
    field = lambda text: modal.locator("label.field", has_text=text)  # noqa: E731
    await field("Profile").locator("select").select_option(own.profile)
    await field("Base URL").locator("input").fill(own.root_url)
    await field("API key").locator("input").fill(own.api_key)
    await page.locator("#modal-submit").click()
    report = page.locator("#messages .message[data-author='Gatecord']", has_text="now uses its own AI gateway")
    await report.wait_for()
    assert own.api_key not in await report.inner_text()

    await run_command(page, "chat", prompt="hello from the browser")
    await page.locator("#own-gateway-log li", has_text="chat/completions").first.wait_for()
    assert chat_calls(own.requests, "hello from the browser")
    assert not chat_calls(operator.requests, "hello from the browser")
    assert await page.locator("#operator-gateway-log li", has_text="chat/completions").count() == 0
