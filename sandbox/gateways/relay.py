"""DigiCord ``POST /api/v1/send-data``: a rich message for a Discord channel.

The document shows the request only. The emulator validates the basics (``channelId`` a
snowflake string; ``content`` ≤ 2000 chars; ≤ 10 ``embeds``; something to send), keeps each
accepted body in ``emu.sent_data`` and answers ``{"success": true, "channelId", "messageId"}``
(a chosen shape).
"""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING

from aiohttp import web

from .errors import GatewayError
from .profiles import Profile

if TYPE_CHECKING:
    from .app import GatewayEmulator, Handler

_SNOWFLAKE = re.compile(r"^\d{17,20}$")


async def send_data(emu: "GatewayEmulator", request: web.Request) -> web.Response:
    body = emu.json_body(request)
    channel = body.get("channelId")
    if not isinstance(channel, str) or not _SNOWFLAKE.match(channel):
        raise GatewayError("invalid_request", "'channelId' must be a Discord channel id (a string of digits).",
                           param="channelId")
    content = body.get("content")
    if content is not None and (not isinstance(content, str) or len(content) > 2000):
        raise GatewayError("invalid_request", "'content' must be a string of at most 2000 characters.",
                           param="content")
    embeds = body.get("embeds")
    if embeds is not None and (not isinstance(embeds, list) or len(embeds) > 10):
        raise GatewayError("invalid_request", "'embeds' must be an array of at most 10 embeds.", param="embeds")
    if not content and not embeds and not body.get("components"):
        raise GatewayError("invalid_request", "Nothing to send: give 'content', 'embeds' or 'components'.",
                           param="content")
    emu.sent_data.append(body)
    message_id = str(((int(time.time() * 1000) - 1420070400000) << 22) + len(emu.sent_data))
    return web.json_response({"success": True, "channelId": channel, "messageId": message_id})


def routes(profile: Profile) -> list[tuple[str, str, "Handler"]]:
    if profile.name == "digicord":
        return [("POST", f"{profile.base_path}/send-data", send_data)]
    return []
