"""/imagine when the gateway made the image but its result URL could not be downloaded: the member is
told what failed (the download, from which host, the HTTP status), not that the gateway is down."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest

FAILED = "failed"


async def failed_job(env: Any) -> Any:
    rec = await env.discord.inject_slash_command("imagine create", {"prompt": "a red fox", "count": 1})
    msg = await rec.wait_final(lambda r: r.original is not None and FAILED in r.original.content, timeout=20)
    assert msg is not None
    return msg


@pytest.mark.parametrize("status", [403, 404])
@pytest.mark.gateway_profile("digicord")
async def test_flux_result_url_refused(bot_env: Any, status: int) -> None:
    gw = bot_env.gateway
    gw.image_urls_only = True
    gw.faults.fail_next(status=status, retry_after=None, path="/_files/")
    msg = await failed_job(bot_env)
    host = urlsplit(gw.root_url).netloc
    assert (f"The AI gateway made the image, but downloading it from {host} failed (HTTP {status})."
            in msg.content), msg.content
    assert "unavailable" not in msg.content
    downloads = [r for r in gw.requests if r.path.startswith("/_files/")]
    assert [r.status for r in downloads] == [status]


async def test_openai_result_url_refused(bot_env: Any) -> None:
    gw = bot_env.gateway
    gw.image_urls_only = True
    gw.faults.fail_next(status=403, retry_after=None, path="/_files/")
    msg = await failed_job(bot_env)
    assert f"downloading it from {urlsplit(gw.root_url).netloc} failed (HTTP 403)." in msg.content, msg.content
    rows = await bot_env.bot.store.fetchall("SELECT outcome, error_code FROM usage_ledger")
    assert [tuple(r) for r in rows] == [("error", "result_download")]
