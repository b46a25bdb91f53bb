"""The page's "Gateways" panel: the second gateway emulator a person can give their server with
``/gateway set`` (its profile, base URL and API key, to type into the modal), and the requests each
emulated gateway received, so one sees which gateway answered a /chat.

The operator's key is never shown (with the real gateway, nothing of it but its profile); the server's
own emulator's key is shown: typing it into the modal is the point.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from aiohttp import web

from sandbox.gateways import GatewayEmulator

LOG_SIZE = 15  # the newest requests shown per gateway


@dataclass
class GatewayPanel:
    own: GatewayEmulator  # "your server's own gateway"
    operator: Optional[GatewayEmulator]  # the bot's emulated gateway; None: the operator's real one
    operator_profile: str

    def own_view(self) -> dict[str, Any]:
        """What to type into /gateway set's modal."""
        own = self.own
        return {"profile": own.profile, "base_url": own.root_url, "api_key": own.api_key,
                "chat_model": own.default_chat_model}

    def view(self) -> dict[str, Any]:
        operator: dict[str, Any] = {"profile": self.operator_profile, "emulated": self.operator is not None,
                                    "requests": None}
        if self.operator is not None:
            operator.update(base_url=self.operator.root_url, **_log(self.operator))
        return {"own": {**self.own_view(), **_log(self.own)}, "operator": operator}

    async def serve(self, request: web.Request) -> web.Response:
        return web.json_response(self.view())


def _log(emu: GatewayEmulator) -> dict[str, Any]:
    recent = emu.requests[-LOG_SIZE:]
    return {"requests": len(emu.requests), "recent": [_request_view(r) for r in reversed(recent)]}


def _request_view(rec: Any) -> dict[str, Any]:
    """Method, path, status and the model asked for: never headers (the key) nor the prompt."""
    body = rec.json if isinstance(rec.json, dict) else {}
    model = body.get("model") if isinstance(body.get("model"), str) else None
    if model is None and rec.form:
        raw = rec.form.get("model")
        model = raw if isinstance(raw, str) else None
    return {"method": rec.method, "path": rec.path, "status": rec.status, "model": model, "time": rec.time}

