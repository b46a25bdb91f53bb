"""SIGKILL the bot (``gatecord run`` as a subprocess) while a /video job is processing at the gateway,
start it again, and prove the job was followed to its end without a second paid POST: polling resumed
from the recorded gateway job id, the MP4 was delivered once, and the video seconds charged once; on
SQLite and on PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench._relay_process import BotProcess, open_store, write_config

MEDIA = {"poll_interval_seconds": 0.2, "poll_max_interval_seconds": 0.4}


def video_posts(gateway: Any) -> list[Any]:
    return [r for r in gateway.requests if r.method == "POST" and r.path.endswith("videos/generations")]


def delivered_mp4s(emu: Any) -> list[int]:
    """Every MP4 attachment the bot ever put on a message (ids of every version of every message)."""
    found = []
    for m in emu.bot_messages():
        ids = {a.id for a in m.attachments if a.filename.endswith(".mp4")}
        found.extend(sorted(ids))
    return found


async def job_row(db: Path | str) -> Any:
    store = open_store(db)
    await store.open()
    try:
        return await store.fetchone("SELECT id, status, gateway_job_id FROM media_jobs WHERE kind = 'video'")
    finally:
        await store.close()


async def ledger(db: Path | str) -> list[Any]:
    store = open_store(db)
    await store.open()
    try:
        return await store.fetchall("SELECT video_seconds, outcome FROM usage_ledger WHERE feature = 'video'")
    finally:
        await store.close()


@pytest.mark.timeout(180)
@pytest.mark.gateway_profile("openai")
async def test_sigkill_while_processing_resumes_polling_without_a_second_post(
    discord_emu: Any, gateway_emu: Any, tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    emu, gateway = discord_emu, gateway_emu
    gateway.video_polls_to_complete = 10**9  # stays "processing" until released below
    db: Path | str = tmp_path / "gatecord.db" if backend == "sqlite" else request.getfixturevalue("pg_url")
    config = write_config(tmp_path / "cfg.toml", emu, db, gateway=gateway, sections={"media": MEDIA})

    bot = BotProcess(config)
    try:
        await bot.start()
        await bot.wait_ready()
        await emu.wait_for(lambda: emu.commands.find("video", 1, emu.guild_id), timeout=30)
        rec = await emu.inject_slash_command("video", {"prompt": "a fox in the snow", "duration": 4,
                                                       "size": "320x180"})
        msg = await rec.wait_final(lambda r: r.original is not None and "processing" in r.original.content,
                                   timeout=60)
        (state,) = gateway.video_jobs.values()
        await emu.wait_for(lambda: state.polls >= 3, timeout=30)
        await bot.kill()
    finally:
        await bot.terminate()

    row = await job_row(db)
    assert row["status"] == "submitted" and row["gateway_job_id"] in gateway.video_jobs
    assert delivered_mp4s(emu) == []
    polls_before = state.polls
    gateway.video_polls_to_complete = polls_before + 2  # the gateway finishes it a couple of polls later

    again = BotProcess(config)
    try:
        await again.start()
        await again.wait_ready()
        done = await emu.wait_for(
            lambda: emu.messages[msg.id] if any(a.filename.endswith(".mp4") for a in emu.messages[msg.id].attachments)
            else None, timeout=60)
    finally:
        await again.terminate()  # a clean stop lets the job finish: what is stored now is final
    row = await job_row(db)

    assert len(video_posts(gateway)) == 1 and state.posts == 1  # never submitted again
    assert state.polls > polls_before  # polling resumed after the restart
    assert len(delivered_mp4s(emu)) == 1  # the result delivered once, on the job's own message
    assert "a fox in the snow" in done.content and "Re-roll" in str(done.components)
    assert [(r["video_seconds"], r["outcome"]) for r in await ledger(db)] == [(4, "ok")]
    assert row["status"] == "done"

