"""/imagine end to end: the real bot against the Discord emulator and the DigiCord (FLUX) and
AICredits (OpenAI images) gateway emulators. Assertions are on what members see: messages, files,
buttons — and on what was charged (quota counters, ledger)."""

from __future__ import annotations

import io
from typing import Any

import pytest
from PIL import Image

from sandbox.gateways.images import colour_for
from tests.e2e import BotEnv, start_bot
from tests.waiting import store_writes

FLUX_FREE = "black-forest-labs/FLUX.1-schnell-Free"
NO_MENTIONS = {"parse": []}


# -- helpers ----------------------------------------------------------------------------------------

def decode(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img.convert("RGB")


def close_to(actual: tuple[int, ...], expected: tuple[int, ...], tolerance: int = 12) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(actual, expected, strict=True))


def buttons(message: Any) -> dict[str, str]:
    """label → custom_id of every button on a message."""
    return {c["label"]: c["custom_id"] for row in message.components for c in row["components"]}


def has_result(rec: Any) -> bool:
    msg = rec.original
    return msg is not None and bool(msg.attachments) and bool(msg.components)


def posted_file(rec: Any) -> Any:
    """The message a button press posted with a file (the deferred response or a followup)."""
    return next((m for m in reversed(rec.messages) if m.attachments and not m.loading), None)


def image_calls(gateway: Any) -> list[Any]:
    return [r for r in gateway.requests if "images" in r.path and r.method == "POST"]


async def images_used(bot: Any, guild_id: int, user_id: int) -> tuple[float, float]:
    return await bot.quotas.counter("member", guild_id, user_id, "images")


async def ledger_rows(bot: Any) -> list[Any]:
    return await bot.store.fetchall("SELECT * FROM usage_ledger ORDER BY ts")


async def imagine(env: Any, options: dict[str, Any], *, user: str = "alice", **kw: Any) -> Any:
    return await env.discord.inject_slash_command("imagine create", {"prompt": "a red fox", **options}, user=user, **kw)


# -- the full flow ----------------------------------------------------------------------------------

@pytest.mark.gateway_profile("digicord")
@pytest.mark.bot_settings(imagine={"progress_interval": 1.0})
async def test_flux_full_flow_progress_grid_and_buttons(bot_env: Any) -> None:
    env, emu = bot_env, bot_env.discord
    env.gateway.faults.slow_next(delay=2.6, path="images/flux/generations")
    rec = await imagine(env, {"count": 4, "seed": 42, "width": 512, "height": 512, "steps": 2})
    await rec.wait_acked()
    assert rec.response_type == 4 and rec.ack_latency is not None and rec.ack_latency < 3
    msg = await rec.wait_final(has_result, timeout=20)
    assert msg is not None

    # progress: shown at once, updated while generating, edits ≥ 1 s apart
    first = msg.edits[0]
    assert "a red fox" in first.content and "job #" in first.content and not first.attachment_ids
    progress = [e for e in msg.edits[1:] if "%" in e.content and "generating" in e.content]
    assert progress, [e.content for e in msg.edits]
    gaps = [b.at - a.at for a, b in zip(msg.edits, msg.edits[1:])]
    assert min(gaps) >= 0.95, gaps

    # the result: one grid, prompt, seeds and model; allowed_mentions none
    assert "a red fox" in msg.content and "seeds 42, 43, 44, 45" in msg.content and FLUX_FREE in msg.content
    assert msg.allowed_mentions == NO_MENTIONS
    assert len(msg.attachments) == 1
    grid = decode(msg.attachments[0].data)
    assert grid.size == (512 * 2 + 8, 512 * 2 + 8)
    for i, (x, y) in enumerate([(256, 256), (776, 256), (256, 776), (776, 776)]):
        assert close_to(grid.getpixel((x, y)), colour_for("a red fox", 42 + i)), i
    labels = buttons(msg)
    assert list(labels) == ["U1", "U2", "U3", "U4", "V1", "V2", "V3", "V4", "Re-roll", "Delete"]

    # the gateway got the validated FLUX request; the budget was charged per image
    (call,) = image_calls(env.gateway)
    assert call.json["n"] == 4 and call.json["steps"] == 2 and call.json["seed"] == 42
    assert (call.json["width"], call.json["height"]) == (512, 512)
    alice = emu.users["alice"].id
    assert await images_used(env.bot, emu.guild_id, alice) == (4, 0)
    rows = await ledger_rows(env.bot)
    assert [(r["feature"], r["images"], r["charged"], r["outcome"]) for r in rows] == [("image", 4, 1, "ok")]

    # U3: that image alone at full size (no second gateway call, nothing charged)
    u3 = await emu.press_button(msg.id, labels["U3"])
    await u3.wait_final(posted_file)
    single = posted_file(u3)
    img = decode(single.attachments[0].data)
    assert img.size == (512, 512)
    assert close_to(img.getpixel((256, 256)), colour_for("a red fox", 44))
    assert "Image 3 of 4" in single.content and "seed 44" in single.content
    assert single.allowed_mentions == NO_MENTIONS
    assert len(image_calls(env.gateway)) == 1

    # Re-roll pressed by bob: a new job, charged to bob, with a new seed
    rr = await emu.press_button(msg.id, labels["Re-roll"], user="bob")
    new = await rr.wait_final(has_result, timeout=20)
    assert new is not None and new.id != msg.id
    second = image_calls(env.gateway)[1]
    assert second.json["seed"] != 42 and second.json["n"] == 4 and second.json["prompt"] == "a red fox"
    assert await images_used(env.bot, emu.guild_id, emu.users["bob"].id) == (4, 0)

    # every message and edit the bot sent carried allowed_mentions none
    sent = [r for r in emu.requests if r.method in ("POST", "PATCH") and isinstance(r.json, dict)
            and ("content" in r.json or "data" in r.json)]
    assert sent
    for r in sent:
        body = r.json.get("data", r.json) if r.json.get("type") in (4, 5) else r.json
        if "content" in body:
            assert body.get("allowed_mentions") == NO_MENTIONS, (r.path, body)


@pytest.mark.gateway_profile("aicredits")
async def test_openai_images_through_the_same_command(bot_env: Any) -> None:
    env, emu = bot_env, bot_env.discord
    rec = await imagine(env, {"prompt": "a blue whale"})
    msg = await rec.wait_final(has_result, timeout=20)
    assert msg is not None
    (call,) = image_calls(env.gateway)
    assert call.path.endswith("/v1/images/generations")
    # DALL·E 3 draws one image per call: the default count (4) was lowered, no FLUX-only fields sent
    assert call.json["n"] == 1 and "steps" not in call.json and "seed" not in call.json
    assert list(buttons(msg)) == ["U1", "V1", "Re-roll", "Delete"]
    img = decode(msg.attachments[0].data)
    assert img.size == (1024, 1024)
    seed = call.json.get("seed")
    assert seed is None
    assert "a blue whale" in msg.content and "dall-e-3" in msg.content
    assert await images_used(env.bot, emu.guild_id, emu.users["alice"].id) == (1, 0)

    # a size the model does not offer is refused before anything is charged
    bad = await imagine(env, {"prompt": "x", "size": "640x480"})
    refusal = await bad.wait_final()
    assert refusal is not None and refusal.ephemeral
    assert "**size**" in refusal.content and "1024x1024, 1792x1024, 1024x1792" in refusal.content
    # DALL·E 3's documented count is 1; FLUX-only options are refused by name
    for options, expected in (({"count": 2}, ["**count**", "`2`", "Allowed: 1."]),
                              ({"steps": 2}, ["**steps**", "not supported"])):
        rec = await imagine(env, {"prompt": "x", **options})
        refusal = await rec.wait_final()
        assert refusal is not None and refusal.ephemeral
        for fragment in expected:
            assert fragment in refusal.content, refusal.content
    assert len(image_calls(env.gateway)) == 1
    assert await images_used(env.bot, emu.guild_id, emu.users["alice"].id) == (1, 0)


# -- validation -------------------------------------------------------------------------------------

INVALID = [
    ({"width": 1000}, ["**width**", "`1000`", "multiples of 16"]),
    ({"height": 1000}, ["**height**", "multiples of 32"]),
    ({"steps": 9}, ["**steps**", "`9`", "1, 2, 3, 4"]),
    ({"count": 5}, ["**count**", "`5`", "1, 2, 3, 4"]),
    ({"count": 0}, ["**count**", "1, 2, 3, 4"]),
    ({"size": "1024x1024", "width": 512}, ["**size**", "not both"]),
    ({"model": "black-forest-labs/FLUX.9"}, ["**model**", "`black-forest-labs/FLUX.9`", FLUX_FREE]),
]


@pytest.mark.gateway_profile("digicord")
async def test_invalid_options_are_refused_and_nothing_is_charged(bot_env: Any) -> None:
    env, emu = bot_env, bot_env.discord
    for options, expected in INVALID:
        rec = await imagine(env, options)
        msg = await rec.wait_final()
        assert msg is not None and msg.ephemeral, options
        for fragment in expected:
            assert fragment in msg.content, (options, msg.content)
    assert image_calls(env.gateway) == []
    assert await ledger_rows(env.bot) == []
    assert await images_used(env.bot, emu.guild_id, emu.users["alice"].id) == (0, 0)
    assert await env.bot.store.fetchval("SELECT COUNT(*) FROM media_jobs") == 0


# -- failures, budgets, limits ------------------------------------------------------------------------

@pytest.mark.gateway_profile("digicord")
async def test_gateway_failure_refunds_and_tells_the_user(bot_env: Any) -> None:
    env, emu = bot_env, bot_env.discord
    env.gateway.faults.fail_next(status=503, retry_after=None, path="images/flux/generations")
    rec = await imagine(env, {"count": 2})
    msg = await rec.wait_final(lambda r: r.original is not None and "failed" in r.original.content, timeout=20)
    assert msg is not None
    assert "unavailable" in msg.content and "Nothing was charged" in msg.content
    assert list(buttons(msg)) == ["Retry", "Delete"]
    assert await images_used(env.bot, emu.guild_id, emu.users["alice"].id) == (0, 0)
    rows = await ledger_rows(env.bot)
    assert [(r["charged"], r["images"], r["outcome"]) for r in rows] == [(0, 0, "error")]

    # Retry: the same job again, charged this time because it succeeds
    retry = await emu.press_button(msg.id, buttons(msg)["Retry"])
    again = await retry.wait_final(has_result, timeout=20)
    assert again is not None and len(image_calls(env.gateway)) == 2
    assert await images_used(env.bot, emu.guild_id, emu.users["alice"].id) == (2, 0)


@pytest.mark.gateway_profile("digicord")
@pytest.mark.bot_settings(quotas={"member_images": 3})
async def test_image_budget_refuses_before_the_paid_call(bot_env: Any) -> None:
    env = bot_env
    rec = await imagine(env, {"count": 4})
    msg = await rec.wait_final()
    assert msg is not None and msg.ephemeral
    assert "image" in msg.content.lower() and "3" in msg.content
    assert image_calls(env.gateway) == []
    ok = await imagine(env, {"count": 3})
    assert await ok.wait_final(has_result, timeout=20) is not None


@pytest.mark.gateway_profile("digicord")
@pytest.mark.bot_settings(imagine={"max_concurrent_per_user": 1, "max_concurrency": 1})
async def test_per_user_limit_and_queue_position(bot_env: Any) -> None:
    env = bot_env
    env.gateway.faults.slow_next(delay=1.5, path="images/flux/generations")
    first = await imagine(env, {"count": 1})
    await first.wait_acked()
    second = await imagine(env, {"count": 1})
    refusal = await second.wait_final()
    assert refusal is not None and refusal.ephemeral
    assert "limit is 1 at a time" in refusal.content
    # bob is not limited by alice's job, but waits for the only generation slot
    bobs = await imagine(env, {"count": 1}, user="bob")
    await bobs.wait_acked()
    assert bobs.original is not None
    assert "Waiting in the queue — position 1" in bobs.original.edits[0].content
    assert await first.wait_final(has_result, timeout=20) is not None
    assert await bobs.wait_final(has_result, timeout=20) is not None
    assert len(image_calls(env.gateway)) == 2


def replies_to(emu: Any, message_id: int) -> list[Any]:
    """The bot's channel messages replying to ``message_id`` (not deleted)."""
    return [m for m in emu.messages.values()
            if m.author_id == emu.bot_user_id and not m.deleted
            and str((m.message_reference or {}).get("message_id")) == str(message_id)]


@pytest.mark.gateway_profile("digicord")
async def test_result_arrives_after_the_interaction_token_expired(
    bot_env: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past the token's 15 minutes the job finishes in the channel: one reply to the command's message,
    pinging the requester only; the job's row (and so its buttons and recovery) follows it."""
    env, emu = bot_env, bot_env.discord
    writes = store_writes(monkeypatch)
    env.gateway.faults.slow_next(delay=2.5, path="images/flux/generations")
    rec = await imagine(env, {"count": 2, "seed": 5})
    await rec.wait_acked()
    emu.expire_interaction(rec)  # Discord now refuses the interaction's webhook (401 / 50027)
    command_message = rec.original
    assert command_message is not None

    result = await emu.wait_for(
        lambda: next((m for m in replies_to(emu, command_message.id) if m.attachments), None), timeout=20)
    assert result is not None and "seeds 5, 6" in result.content
    alice = emu.users["alice"].id
    assert result.mention_ids == [alice]
    assert result.allowed_mentions is not None and [int(u) for u in result.allowed_mentions.get("users", [])] == [alice]
    assert not result.allowed_mentions.get("parse") and not result.allowed_mentions.get("replied_user")
    labels = buttons(result)
    assert list(labels) == ["U1", "U2", "V1", "V2", "Re-roll", "Delete"]
    # one message carries on: the progress reply (if a tick made one) is removed once the result is up
    await emu.wait_for(lambda: len(replies_to(emu, command_message.id)) == 1 or None, timeout=10)
    await emu.wait_for(lambda: "Continued in a reply below" in command_message.content or None, timeout=10)
    assert not command_message.components

    async def row() -> Any:
        job = await env.bot.store.fetchone("SELECT message_id, status FROM media_jobs")
        return job if job["status"] == "done" else None

    job = await writes.wait_until(row, what="the job done")
    assert job["message_id"] == result.id

    # the buttons of the reply work as anywhere
    u2 = await emu.press_button(result.id, labels["U2"])
    await u2.wait_final(posted_file, timeout=20)
    img = decode(posted_file(u2).attachments[0].data)
    assert close_to(img.getpixel((img.width // 2, img.height // 2)), colour_for("a red fox", 6))


@pytest.mark.gateway_profile("aiproxy")
async def test_gateway_without_images_shows_no_imagine(bot_env: Any) -> None:
    """/imagine is a command only where a gateway draws (servers with their own gateway: test_guild_media)."""
    emu = bot_env.discord
    names = {c["name"] for c in emu.global_commands()}
    assert "chat" in names and "imagine" not in names and "Edit image" not in names
    assert not any(c["name"] == "imagine" for c in emu.guild_commands(emu.guild_id))


@pytest.mark.gateway_profile("digicord")
async def test_over_the_upload_limit_is_reencoded_or_downscaled(bot_env: Any) -> None:
    env, emu = bot_env, bot_env.discord
    limit = 5_000  # below one 1024×1024 PNG from the emulator (~5.3 kB) and far below the grid
    rec = await imagine(env, {"count": 4, "seed": 7}, attachment_size_limit=limit)
    msg = await rec.wait_final(has_result, timeout=20)
    assert msg is not None
    grid = msg.attachments[0]
    assert grid.size <= limit
    img = decode(grid.data)
    assert max(img.size) < 1024 * 2 and img.size[0] == img.size[1]
    assert close_to(img.getpixel((img.width // 4, img.height // 4)), colour_for("a red fox", 7), 20)
    assert close_to(img.getpixel((3 * img.width // 4, 3 * img.height // 4)), colour_for("a red fox", 10), 20)
    assert "downscaled" in msg.content

    emu.default_attachment_size_limit = limit  # what the next interaction reports
    u1 = await emu.press_button(msg.id, buttons(msg)["U1"])
    await u1.wait_final(posted_file, timeout=20)
    posted = posted_file(u1)
    single = posted.attachments[0]
    assert single.size <= limit
    one = decode(single.data)
    assert one.size == (1024, 1024)  # re-encoding was enough: full size kept
    assert close_to(one.getpixel((512, 512)), colour_for("a red fox", 7), 20)
    assert "re-encoded" in posted.content


# -- restart-proof buttons and crash recovery --------------------------------------------------------

@pytest.mark.gateway_profile("digicord")
async def test_buttons_work_after_a_restart(bot_env: Any) -> None:
    env, emu = bot_env, bot_env.discord
    rec = await imagine(env, {"count": 4, "seed": 1000, "width": 256, "height": 256})
    msg = await rec.wait_final(has_result, timeout=20)
    assert msg is not None
    labels = buttons(msg)
    edits_before = msg.edit_count
    # the job marks itself done just after that edit: let it finish first, then set the row back
    # as if the bot had stopped after storing the images but before posting them
    assert (await env.bot.media_jobs.drain(10)).cancelled == 0
    await env.bot.store.execute("UPDATE media_jobs SET status = 'generated'")

    await env.running.stop()
    env.running = await start_bot(env.settings)
    # the stored result is posted again (no new gateway call), then the old buttons are pressed
    await emu.wait_for(lambda: msg.edit_count > edits_before or None, timeout=10)
    assert len(image_calls(env.gateway)) == 1 and msg.attachments and buttons(msg) == labels

    u2 = await emu.press_button(msg.id, labels["U2"])
    await u2.wait_final(posted_file, timeout=20)
    img = decode(posted_file(u2).attachments[0].data)
    assert img.size == (256, 256)
    assert close_to(img.getpixel((128, 128)), colour_for("a red fox", 1001))

    v3 = await emu.press_button(msg.id, labels["V3"], user="bob")
    variation = await v3.wait_final(has_result, timeout=20)
    assert variation is not None
    calls = image_calls(env.gateway)
    assert len(calls) == 2
    assert calls[1].json["prompt"] == "a red fox" and calls[1].json["seed"] != 1000
    assert (calls[1].json["width"], calls[1].json["height"], calls[1].json["n"]) == (256, 256, 4)
    new_seed = calls[1].json["seed"]
    assert f"seeds {new_seed}, {new_seed + 1}" in variation.content
    assert await images_used(env.bot, emu.guild_id, emu.users["bob"].id) == (4, 0)
    job = await env.bot.store.fetchone("SELECT * FROM media_jobs ORDER BY id DESC LIMIT 1")
    assert (job["origin"], job["source_index"], job["user_id"]) == ("variation", 3, emu.users["bob"].id)


@pytest.mark.gateway_profile("digicord")
@pytest.mark.bot_settings(shutdown={"drain_seconds": 0})  # no drain: the stop cuts the job off
async def test_job_interrupted_mid_call_is_unknown_and_never_resubmitted(bot_env: Any) -> None:
    env, emu = bot_env, bot_env.discord
    env.gateway.faults.slow_next(delay=4, path="images/flux/generations")
    rec = await imagine(env, {"count": 1})
    await rec.wait_acked()
    await emu.wait_for(lambda: bool(image_calls(env.gateway)) or None, timeout=10)

    await env.running.stop()  # the paid call is cut off: the gateway may or may not have run it
    env.gateway.faults.reset()
    env.running = await start_bot(env.settings)

    msg = await rec.wait_final(lambda r: r.original is not None and "unknown" in r.original.content, timeout=20)
    assert msg is not None and "not resubmitted" in msg.content
    assert list(buttons(msg)) == ["Retry", "Delete"]
    assert len(image_calls(env.gateway)) == 1  # nothing was resubmitted on its own
    alice = emu.users["alice"].id
    assert await images_used(env.bot, emu.guild_id, alice) == (0, 0)

    retry = await emu.press_button(msg.id, buttons(msg)["Retry"])
    assert await retry.wait_final(has_result, timeout=20) is not None
    assert len(image_calls(env.gateway)) == 2
    assert await images_used(env.bot, emu.guild_id, alice) == (1, 0)


# -- delete and autocomplete ----------------------------------------------------------------------------

@pytest.mark.gateway_profile("digicord")
async def test_delete_is_for_the_requester_or_an_admin(bot_env: Any) -> None:
    env, emu = bot_env, bot_env.discord
    rec = await imagine(env, {"count": 1})
    msg = await rec.wait_final(has_result, timeout=20)
    assert msg is not None
    delete_id = buttons(msg)["Delete"]

    bob = await emu.press_button(msg.id, delete_id, user="bob")
    refusal = await bob.wait_final()
    assert refusal is not None and refusal.ephemeral and "Only the member who asked" in refusal.content
    assert not emu.messages[msg.id].deleted

    admin = await emu.press_button(msg.id, delete_id, user="admin")
    await emu.wait_for(lambda: emu.messages[msg.id].deleted or None, timeout=10)
    await admin.wait_acked()
    job = await env.bot.store.fetchone("SELECT status FROM media_jobs")
    assert job["status"] == "deleted"
    assert await env.bot.store.fetchval("SELECT COUNT(*) FROM media_files") == 0


@pytest.mark.gateway_profile("digicord")
async def test_model_autocomplete_lists_the_gateways_image_models(bot_env: Any) -> None:
    choices = await bot_env.discord.inject_autocomplete("imagine create", {"prompt": "x", "model": "pro"}, "model")
    values = [c["value"] for c in choices]
    assert values == ["black-forest-labs/FLUX.1-pro", "black-forest-labs/FLUX.1.1-pro"]


@pytest.mark.gateway_profile("digicord")
@pytest.mark.bot_settings(imagine={"max_concurrency": 1}, shutdown={"drain_seconds": 0})  # cut off, no drain
async def test_job_waiting_in_the_queue_at_a_restart_fails_cleanly_and_is_never_sent(bot_env: Any) -> None:
    env, emu = bot_env, bot_env.discord
    alice, bob = emu.users["alice"].id, emu.users["bob"].id
    env.gateway.faults.slow_next(delay=4, path="images/flux/generations")
    running = await imagine(env, {"count": 1})
    await running.wait_acked()
    await emu.wait_for(lambda: bool(image_calls(env.gateway)) or None, timeout=10)
    queued = await imagine(env, {"prompt": "a blue whale", "count": 2}, user="bob")
    await queued.wait_acked()
    assert queued.original is not None and "Waiting in the queue — position 1" in queued.original.content
    assert await images_used(env.bot, emu.guild_id, bob) == (0, 2)  # held while it waits

    await env.restart()  # the paid call of the first job is cut off; the second never got a slot

    msg = await queued.wait_final(lambda r: r.original is not None and "failed" in r.original.content, timeout=20)
    assert msg is not None and not msg.ephemeral
    assert "a blue whale" in msg.content and "restarted before it was sent" in msg.content
    assert "Nothing was charged" in msg.content and "Waiting in the queue" not in msg.content
    assert list(buttons(msg)) == ["Retry", "Delete"]
    # the running job is shown as unknown; neither is sent to the gateway on its own
    first = await running.wait_final(lambda r: r.original is not None and "unknown" in r.original.content,
                                     timeout=20)
    assert first is not None
    calls = image_calls(env.gateway)
    assert len(calls) == 1 and calls[0].json["prompt"] == "a red fox"
    # bob's hold was returned and nothing was charged for it
    assert await images_used(env.bot, emu.guild_id, bob) == (0, 0)
    assert await env.bot.store.fetchval(
        "SELECT COUNT(*) FROM quota_reservations WHERE state = 'open'") == 0
    bobs_rows = [r for r in await ledger_rows(env.bot) if r["user_id"] == bob]
    assert bobs_rows and all(r["charged"] == 0 and r["images"] == 0 for r in bobs_rows)
    job = await env.bot.store.fetchone("SELECT status FROM media_jobs WHERE user_id = ?", (bob,))
    assert job["status"] == "failed"

    # Retry runs it as a new, charged generation — only when bob asks
    retry = await emu.press_button(msg.id, buttons(msg)["Retry"], user="bob")
    assert await retry.wait_final(has_result, timeout=20) is not None
    calls = image_calls(env.gateway)
    assert len(calls) == 2 and calls[1].json["prompt"] == "a blue whale" and calls[1].json["n"] == 2
    assert await images_used(env.bot, emu.guild_id, bob) == (2, 0)
    assert await images_used(env.bot, emu.guild_id, alice) == (0, 0)


# -- on PostgreSQL ----------------------------------------------------------------------------------------


@pytest.mark.gateway_profile("digicord")
async def test_on_postgresql_buttons_are_served_by_the_next_process_from_the_database(pg_bot_env: BotEnv) -> None:
    env, emu = pg_bot_env, pg_bot_env.discord
    rec = await imagine(env, {"count": 4, "seed": 1000, "width": 256, "height": 256})
    msg = await rec.wait_final(has_result, timeout=20)
    assert msg is not None
    labels = buttons(msg)
    assert await env.bot.store.fetchval("SELECT COUNT(*) FROM media_files WHERE data IS NOT NULL") == 4
    edits_before = msg.edit_count
    # as if the process had stopped after storing the images but before posting them (once the job is done)
    assert (await env.bot.media_jobs.drain(10)).cancelled == 0
    await env.bot.store.execute("UPDATE media_jobs SET status = 'generated'")

    await env.restart()  # another process: it has none of the first one's files or memory
    await emu.wait_for(lambda: msg.edit_count > edits_before or None, timeout=10)
    assert len(image_calls(env.gateway)) == 1 and msg.attachments and buttons(msg) == labels

    u2 = await emu.press_button(msg.id, labels["U2"])
    await u2.wait_final(posted_file, timeout=20)
    img = decode(posted_file(u2).attachments[0].data)
    assert img.size == (256, 256)
    assert close_to(img.getpixel((128, 128)), colour_for("a red fox", 1001))

    v3 = await emu.press_button(msg.id, labels["V3"], user="bob")
    assert await v3.wait_final(has_result, timeout=20) is not None
    assert len(image_calls(env.gateway)) == 2
    assert await images_used(env.bot, emu.guild_id, emu.users["bob"].id) == (4, 0)
    assert not (env.db_path.parent / "images").exists()  # nothing kept on this machine's disk
