"""Service metadata, health, model listings and credits.

Shapes chosen where documents are silent: aicordcloud ``GET /`` →
``{"name": "AiCordCloud API", "version": "1.0.0", "docs": ..., "endpoints": [...]}``;
aicredits ``GET /v1/credits`` → ``{"object": "credits", "balance": 1000.0, "currency": "INR"}``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from .models import list_models
from .profiles import Profile

if TYPE_CHECKING:
    from .app import GatewayEmulator, Handler


async def aicord_root(emu: "GatewayEmulator", request: web.Request) -> web.Response:
    return web.json_response({
        "name": "AiCordCloud API",
        "version": "1.0.0",
        "docs": "https://docs.aicord.cloud",
        "endpoints": ["GET /", "GET /health", "GET /v1/models", "POST /v1/chat/completions"],
    })


async def aicord_health(emu: "GatewayEmulator", request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


async def aicredits_health(emu: "GatewayEmulator", request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def aicredits_ready(emu: "GatewayEmulator", request: web.Request) -> web.Response:
    return web.json_response({"status": "ready", "db": "ok", "redis": "ok"})


async def models(emu: "GatewayEmulator", request: web.Request) -> web.Response:
    return web.json_response(list_models(emu.profile, query=dict(request.query)))


async def models_openai_shape(emu: "GatewayEmulator", request: web.Request) -> web.Response:
    return web.json_response(list_models(emu.profile, openai_shape=True))


async def vision_models(emu: "GatewayEmulator", request: web.Request) -> web.Response:
    return web.json_response(list_models(emu.profile, vision_only=True))


async def flux_models(emu: "GatewayEmulator", request: web.Request) -> web.Response:
    return web.json_response(list_models(emu.profile, flux=True))


async def credits(emu: "GatewayEmulator", request: web.Request) -> web.Response:
    balance = 0.0 if emu.faults.budget == 0 else round(emu.balance_inr, 2)
    body: dict[str, Any] = {"object": "credits", "balance": balance, "currency": "INR"}
    return web.json_response(body)


def routes(profile: Profile) -> list[tuple[str, str, "Handler"]]:
    b = profile.base_path
    if profile.name == "aicordcloud":
        return [("GET", "/", aicord_root), ("GET", "/health", aicord_health), ("GET", f"{b}/models", models)]
    if profile.name == "digicord":
        return [("GET", f"{b}/models", models), ("GET", f"{b}/vision-models", vision_models),
                ("GET", f"{b}/images/flux/models", flux_models)]
    if profile.name == "aicredits":
        return [("GET", "/api/models", models), ("GET", "/health", aicredits_health),
                ("GET", "/health/ready", aicredits_ready), ("GET", f"{b}/models", models_openai_shape),
                ("GET", f"{b}/credits", credits)]
    return [("GET", f"{b}/models", models)]
