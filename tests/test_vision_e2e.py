"""Vision end to end: /vision, "Describe image" and images in mentions, the real bot against the
Discord and gateway emulators (the gateway's vision models answer with the size and colour they see)."""

from __future__ import annotations

import asyncio
import base64
import io
import re
import zlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
import yarl
from aiohttp import web
from PIL import Image

from sandbox.gateways import MODEL_ROLES
from tests.e2e import final, serve_app, start_bot, wait_reply, wait_shown

EPHEMERAL = 64  # message flag: only the member who ran the command sees it

OPENAI_NON_VISION = MODEL_ROLES["openai"]["non_vision"]
DIGICORD_CHAT = MODEL_ROLES["digicord"]["chat"]


# --------------------------------------------------------------------------------------------------
# images and helpers
# --------------------------------------------------------------------------------------------------


def png(width: int, height: int, rgb: tuple[int, int, int] = (255, 0, 0)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), rgb).save(out, format="PNG")
    return out.getvalue()


def bomb_png(width: int = 8000, height: int = 8000) -> bytes:
    """A real 1-bit PNG of ``width``×``height`` zero pixels: a few KB that decode to 64 megapixels."""
    import struct

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    comp = zlib.compressobj(9)
    row = b"\x00" * (1 + (width + 7) // 8)
    idat = b"".join(comp.compress(row) for _ in range(height)) + comp.flush()
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
            + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def animated_gif() -> bytes:
    frames = [Image.new("RGB", (20, 20), c) for c in ((255, 0, 0), (0, 0, 255), (0, 255, 0))]
    out = io.BytesIO()
    frames[0].save(out, format="GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    return out.getvalue()


def footer(content: str) -> str:
    lines = content.strip().splitlines()
    return lines[-1] if lines and lines[-1].startswith("-# ") else ""


def chat_requests(gateway: Any) -> list[Any]:
    return [r for r in gateway.requests if r.path.endswith("/chat/completions")]


def image_refs(request: Any) -> list[str]:
    refs = []
    for m in request.json["messages"]:
        if isinstance(m["content"], list):
            for block in m["content"]:
                if block.get("type") == "image_url":
                    raw = block["image_url"]
                    refs.append(raw["url"] if isinstance(raw, dict) else raw)
    return refs


def data_url_image(ref: str) -> Image.Image:
    header, _, payload = ref.partition(",")
    assert header.startswith("data:image/") and header.endswith(";base64"), header
    return Image.open(io.BytesIO(base64.b64decode(payload)))


async def run_vision(env: Any, image: tuple[str, bytes, str], timeout: float = 10.0, **options: Any) -> Any:
    rec = await env.discord.inject_slash_command("vision", options, attachments={"image": image})
    return await wait_shown(rec, timeout=timeout)



RED = ("red.png", png(64, 48), "image/png")


# --------------------------------------------------------------------------------------------------
# answers: /vision, the context menu, mentions
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("gateway_emu", ["openai", "digicord", "aicredits"], indirect=True)
async def test_vision_command_describes_the_image(bot_env: Any) -> None:
    gw = bot_env.gateway
    msg = await run_vision(bot_env, RED, prompt="What is this?")
    assert "64x48" in msg.content and "red" in msg.content
    assert gw.default_vision_model.rsplit("/", 1)[-1] + "`" in footer(msg.content)  # the model that answered
    [req] = chat_requests(gw)
    assert req.json["model"] == gw.default_vision_model
    [ref] = image_refs(req)
    img = data_url_image(ref)
    assert img.size == (64, 48) and img.format == "PNG"
    assert img.convert("RGB").getpixel((10, 10)) == (255, 0, 0)
    texts = [b["text"] for m in req.json["messages"] if isinstance(m["content"], list)
             for b in m["content"] if b.get("type") == "text"]
    assert texts == ["What is this?"]


async def run_vision_env(emu: Any, prompt: str) -> Any:
    rec = await emu.inject_slash_command("vision", {"prompt": prompt}, attachments={"image": RED})
    return await rec.wait_final(final, timeout=10)


async def test_large_image_is_downscaled_before_sending(bot_env: Any) -> None:
    msg = await run_vision(bot_env, ("wide.jpg", _jpeg(2000, 1000, (0, 0, 255)), "image/jpeg"))
    assert "1024x512" in msg.content and "blue" in msg.content
    [req] = chat_requests(bot_env.gateway)
    img = data_url_image(image_refs(req)[0])
    assert img.size == (1024, 512) and img.format == "JPEG"


def _jpeg(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), rgb).save(out, format="JPEG", quality=95)
    return out.getvalue()


async def test_describe_image_context_menu(bot_env: Any) -> None:
    emu = bot_env.discord
    posted = await emu.send_user_message("look at my picture", user="bob",
                                         attachments=[("green.png", png(30, 20, (0, 128, 0)), "image/png")])
    rec = await emu.inject_context_menu("Describe image", posted.id, user="alice")
    msg = await rec.wait_final(final, timeout=10)
    assert "30x20" in msg.content and "green" in msg.content
    assert not msg.ephemeral
    [req] = chat_requests(bot_env.gateway)
    assert req.json["model"] == bot_env.gateway.default_vision_model


async def test_context_menu_on_message_without_image(bot_env: Any) -> None:
    posted = await bot_env.discord.send_user_message("just words")
    rec = await bot_env.discord.inject_context_menu("Describe image", posted.id)
    msg = await wait_shown(rec)
    assert "no image attached" in msg.content
    assert msg.flags & EPHEMERAL, "a refusal of a command is private to the member"
    assert chat_requests(bot_env.gateway) == []


async def test_mention_with_image_is_answered_by_vision(bot_env: Any) -> None:
    emu = bot_env.discord
    posted = await emu.send_user_message("what colour is this?", mention_bot=True, attachments=[RED])
    reply = await wait_reply(emu, posted)
    assert "64x48" in reply.content and "red" in reply.content
    [req] = chat_requests(bot_env.gateway)
    user = req.json["messages"][-1]
    assert user["role"] == "user" and user["content"][0] == {"type": "text", "text": "what colour is this?"}
    assert len(image_refs(req)) == 1


async def test_mention_with_only_an_image_gets_a_description(bot_env: Any) -> None:
    emu = bot_env.discord
    posted = await emu.send_user_message("", mention_bot=True, attachments=[RED])
    reply = await wait_reply(emu, posted)
    assert "64x48" in reply.content and "red" in reply.content


@pytest.mark.bot_settings(vision={"max_images": 2})
async def test_extra_images_are_a_warning_not_an_error(bot_env: Any) -> None:
    emu = bot_env.discord
    files = [("a.png", png(10, 10, (255, 0, 0)), "image/png"), ("b.png", png(20, 10, (0, 0, 255)), "image/png"),
             ("c.png", png(30, 10, (0, 128, 0)), "image/png")]
    posted = await emu.send_user_message("compare", mention_bot=True, attachments=files)
    reply = await wait_reply(emu, posted)
    assert "10x10" in reply.content and "20x10" in reply.content and "30x10" not in reply.content
    assert "only the first 2 of 3 images were read" in footer(reply.content)
    assert not reply.content.startswith("⚠️")
    assert len(image_refs(chat_requests(bot_env.gateway)[0])) == 2


# --------------------------------------------------------------------------------------------------
# model choice: switching, and no vision model at all
# --------------------------------------------------------------------------------------------------


@pytest.mark.bot_settings(gateway={"chat_model": OPENAI_NON_VISION})
async def test_non_vision_chat_model_switches_to_configured_vision_model(bot_env: Any) -> None:
    emu, gw = bot_env.discord, bot_env.gateway
    posted = await emu.send_user_message("what is it?", mention_bot=True, attachments=[RED])
    reply = await wait_reply(emu, posted)
    assert "64x48" in reply.content
    line = footer(reply.content)
    assert f"`{gw.default_vision_model}`" in line
    assert f"switched from `{OPENAI_NON_VISION}` (it can't see images)" in line
    assert [r.json["model"] for r in chat_requests(gw)] == [gw.default_vision_model]


@pytest.mark.gateway_profile("digicord")
@pytest.mark.bot_settings(gateway={"vision_model": ""})
async def test_digicord_switches_to_a_model_from_its_vision_list(bot_env: Any) -> None:
    emu, gw = bot_env.discord, bot_env.gateway
    assert bot_env.settings.gateway.chat_model == DIGICORD_CHAT
    posted = await emu.send_user_message("describe", mention_bot=True, attachments=[RED])
    reply = await wait_reply(emu, posted)
    assert "64x48" in reply.content and "red" in reply.content
    [req] = chat_requests(gw)
    assert req.json["model"] != DIGICORD_CHAT
    assert any(r.path.endswith("/vision-models") for r in gw.requests)
    assert f"switched from `{DIGICORD_CHAT}`" in footer(reply.content)
    assert f"`{req.json['model']}`" in footer(reply.content)


@pytest.mark.gateway_profile("digicord")
async def test_vision_model_option_that_cannot_see_switches(bot_env: Any) -> None:
    msg = await run_vision(bot_env, RED, model=DIGICORD_CHAT)
    assert "64x48" in msg.content
    assert f"switched from `{DIGICORD_CHAT}`" in footer(msg.content)
    assert chat_requests(bot_env.gateway)[0].json["model"] == bot_env.gateway.default_vision_model


@pytest.mark.bot_settings(gateway={"chat_model": OPENAI_NON_VISION, "vision_model": ""})
async def test_no_vision_model_anywhere_explains_how_to_enable_one(bot_env: Any) -> None:
    emu = bot_env.discord
    posted = await emu.send_user_message("what is it?", mention_bot=True, attachments=[RED])
    reply = await wait_reply(emu, posted)
    assert f"`{OPENAI_NON_VISION}` can't see images" in reply.content
    assert "/config model kind:vision" in reply.content and "gateway.vision_model" in reply.content
    rec = await emu.inject_slash_command("vision", {}, attachments={"image": RED})
    msg = await wait_shown(rec)
    assert "/config model kind:vision" in msg.content and msg.flags & EPHEMERAL
    assert chat_requests(bot_env.gateway) == []


# --------------------------------------------------------------------------------------------------
# refusals: each with its own message
# --------------------------------------------------------------------------------------------------


async def test_each_bad_file_is_refused_with_its_own_message(bot_env: Any) -> None:
    emu = bot_env.discord
    big = ("huge.png", b"\x89PNG" + b"\x00" * (30 * 1024 * 1024), "image/png")
    cases = {
        "bomb": (("bomb.png", bomb_png(), "image/png"), ["`bomb.png` is 8000×8000 pixels", "decompression bombs"]),
        "big": (big, ["`huge.png` is 30 MB", "largest image I download is 10 MB"]),
        "fake": (("notes.png", b"this is a text file, not a picture\n" * 20, "image/png"),
                 ["`notes.png` could not be decoded as an image"]),
        "animated": (("spin.gif", animated_gif(), "image/gif"), ["`spin.gif` is animated (3 frames)"]),
        "heic": (("photo.heic", b"\x00\x00\x00\x18ftypheic" + b"\x00" * 100, "image/heic"),
                 ["`photo.heic` is a HEIC image, a type I can't read"]),
        "pdf": (("doc.pdf", b"%PDF-1.4\n", "application/pdf"), ["`doc.pdf` is not an image (application/pdf)"]),
    }
    shown: dict[str, str] = {}
    for name, (image, phrases) in cases.items():
        msg = await run_vision(bot_env, image)
        assert msg.content.startswith("⚠️"), (name, msg.content)
        for phrase in phrases:
            assert phrase in msg.content, (name, msg.content)
        shown[name] = msg.content
    assert len(set(shown.values())) == len(shown)
    assert chat_requests(bot_env.gateway) == [], "nothing refused reached the gateway"
    downloaded = " ".join(emu.cdn.downloads)
    assert "huge.png" not in downloaded, "the 30 MB file was refused by its declared size, not downloaded"
    assert "photo.heic" not in downloaded and "doc.pdf" not in downloaded
    assert "bomb.png" in downloaded and "notes.png" in downloaded


async def test_refused_files_use_no_budget_and_answers_are_billed_as_vision(bot_env: Any) -> None:
    bot = bot_env.bot
    store = bot.store
    settled = asyncio.Event()
    real_settle = bot.quotas.settle

    async def settle(*args: Any, **kwargs: Any) -> Any:
        try:
            return await real_settle(*args, **kwargs)
        finally:
            settled.set()

    bot.quotas.settle = settle  # type: ignore[method-assign]
    await run_vision(bot_env, ("notes.png", b"plain text", "image/png"))
    # the budget is held before the download, so the refusal is logged as a released hold: nothing charged
    assert await store.fetchall("SELECT feature FROM usage_ledger WHERE charged = 1 OR tokens > 0") == []
    assert [tuple(r) for r in await store.fetchall("SELECT outcome, error_code, charged FROM usage_ledger")] == [
        ("refused", "images_refused", 0)]
    await run_vision(bot_env, RED)
    await asyncio.wait_for(settled.wait(), 10)
    rows = await store.fetchall("SELECT feature, outcome, user_id, model_used, tokens FROM usage_ledger"
                                " WHERE charged = 1")
    assert [(r[0], r[1], r[2]) for r in rows] == [("vision", "ok", bot_env.discord.users["alice"].id)]
    assert rows[0][4] > 0


async def test_one_bad_image_among_good_ones_is_a_footer_warning(bot_env: Any) -> None:
    emu = bot_env.discord
    files = [RED, ("spin.gif", animated_gif(), "image/gif")]
    posted = await emu.send_user_message("what are these", mention_bot=True, attachments=files)
    reply = await wait_reply(emu, posted)
    assert "64x48" in reply.content
    assert "skipped `spin.gif` (animated)" in footer(reply.content)


# --------------------------------------------------------------------------------------------------
# only Discord's CDN: an "outside" host is never requested
# --------------------------------------------------------------------------------------------------


@pytest.fixture
async def outside_host() -> AsyncIterator[dict[str, Any]]:
    """A second tiny server on 127.0.0.1 playing a host outside cdn_hosts; it records every hit."""
    hits: list[str] = []

    async def serve(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.Response(body=png(64, 48), content_type="image/png")

    app = web.Application()
    app.router.add_get("/{tail:.*}", serve)
    async with serve_app(app) as base_url:
        yield {"url": base_url, "hits": hits}


@pytest.fixture
async def cdn_only_env(discord_emu: Any, gateway_emu: Any, make_settings: Any) -> AsyncIterator[Any]:
    """The bot with cdn_hosts = the emulator's CDN host:port only (so other 127.0.0.1 ports are outside)."""
    cdn = yarl.URL(discord_emu.cdn_base_url)
    running = await start_bot(make_settings(discord={"cdn_hosts": [f"{cdn.host}:{cdn.port}"]}))
    try:
        yield running
    finally:
        await running.stop()


async def test_image_links_are_never_requested(cdn_only_env: Any, discord_emu: Any, gateway_emu: Any,
                                               outside_host: dict[str, Any]) -> None:
    emu = discord_emu
    link = f"{outside_host['url']}/cat.png"
    posted = await emu.send_user_message(f"what is in {link} ?", mention_bot=True)
    reply = await wait_reply(emu, posted)
    assert "I don't open links (127.0.0.1:" in reply.content and "attach it" in reply.content
    embedded = await emu.send_user_message("see", embeds=[{"type": "image", "url": link,
                                                             "thumbnail": {"url": link}}])
    rec = await emu.inject_context_menu("Describe image", embedded.id)
    msg = await wait_shown(rec)
    assert "I don't open links" in msg.content and msg.flags & EPHEMERAL
    # the emulator's own CDN is still allowed: the same bot reads an uploaded picture
    ok = await run_vision_env(emu, "and this?")
    assert "64x48" in ok.content
    assert outside_host["hits"] == []
    assert all(not ref.startswith(outside_host["url"]) for r in chat_requests(gateway_emu) for ref in image_refs(r))


async def test_attachment_url_outside_cdn_hosts_is_refused(cdn_only_env: Any, discord_emu: Any, gateway_emu: Any,
                                                          outside_host: dict[str, Any]) -> None:
    emu = discord_emu
    emu.store.attachment_url = lambda channel_id, att_id, filename: f"{outside_host['url']}/{att_id}/{filename}"
    rec = await emu.inject_slash_command("vision", {}, attachments={"image": RED})
    msg = await wait_shown(rec)
    assert "`red.png` is not stored on Discord's CDN (127.0.0.1:" in msg.content and msg.flags & EPHEMERAL
    assert "won't download it" in msg.content
    assert outside_host["hits"] == []
    assert chat_requests(gateway_emu) == []


# --------------------------------------------------------------------------------------------------
# budget, URL mode
# --------------------------------------------------------------------------------------------------


@pytest.mark.bot_settings(quotas={"member_vision_requests": 1})
async def test_vision_requests_count_against_the_vision_budget(bot_env: Any) -> None:
    first = await run_vision(bot_env, RED)
    assert "64x48" in first.content
    second = await run_vision(bot_env, RED)
    assert second.content.startswith("⚠️")
    assert "image question" in second.content
    assert len(chat_requests(bot_env.gateway)) == 1
    # chat is a separate budget: a text question still works
    rec = await bot_env.discord.inject_slash_command("chat", {"prompt": "hello"})
    chat = await rec.wait_final(final, timeout=10)
    assert not chat.content.startswith("⚠️")


@pytest.mark.bot_settings(quotas={"member_vision_requests": 0})
async def test_member_without_vision_budget_costs_no_download_and_no_decode(bot_env: Any) -> None:
    emu = bot_env.discord
    msg = await run_vision(bot_env, ("wide.png", png(300, 200), "image/png"))
    assert msg.content.startswith("⚠️") and "image question" in msg.content
    posted = await emu.send_user_message("and this?", mention_bot=True, attachments=[("tall.png", png(20, 30),
                                                                                        "image/png")])
    reply = await wait_reply(emu, posted)
    assert reply.content.startswith("⚠️") and "image question" in reply.content
    assert emu.cdn.downloads == [], "a member over budget made the bot download (and decode) the picture"
    assert chat_requests(bot_env.gateway) == []


@pytest.mark.bot_settings(quotas={"member_vision_requests": 1})
async def test_concurrent_questions_cannot_both_pass_for_the_last_unit(bot_env: Any) -> None:
    emu = bot_env.discord
    recs = [await emu.inject_slash_command("vision", {}, attachments={"image": (f"p{i}.png", png(64, 48), "image/png")})
            for i in range(2)]
    msgs = await asyncio.gather(*(wait_shown(rec, timeout=10) for rec in recs))
    answered = [m for m in msgs if "64x48" in m.content]
    refused = [m for m in msgs if m.content.startswith("⚠️")]
    assert len(answered) == 1 and len(refused) == 1 and "image question" in refused[0].content
    assert refused[0].ephemeral
    assert len(emu.cdn.downloads) == 1, emu.cdn.downloads  # the refused one downloaded nothing
    assert len(chat_requests(bot_env.gateway)) == 1


@pytest.mark.bot_settings(quotas={"guild_vision_requests": 1})
async def test_guild_vision_budget_is_shared_by_members(bot_env: Any) -> None:
    emu = bot_env.discord
    first = await emu.send_user_message("one", mention_bot=True, attachments=[RED], user="alice")
    assert "64x48" in (await wait_reply(emu, first)).content
    second = await emu.send_user_message("two", mention_bot=True, attachments=[RED], user="bob")
    reply = await wait_reply(emu, second)
    assert reply.content.startswith("⚠️") and "image question" in reply.content


@pytest.mark.gateway_profile("digicord")
@pytest.mark.bot_settings(vision={"send_as": "url"})
async def test_url_mode_sends_the_cdn_url(bot_env: Any) -> None:
    msg = await run_vision(bot_env, RED)
    assert "64x48" in msg.content and "red" in msg.content
    [ref] = image_refs(chat_requests(bot_env.gateway)[0])
    assert ref.startswith(bot_env.discord.cdn_base_url) and ref.endswith("/red.png")
    assert re.search(r"/attachments/\d+/\d+/red\.png$", ref)
