"""SIGTERM drains, as the operator sees it: ``gatecord run`` as its own process on the emulators.

A /chat is streaming slowly when the process gets SIGTERM. The member's answer is finished (final
edit, no "still writing"); a /chat, a mention and a relay post that arrive during the drain are
refused with "restarting" (ephemeral for the command, a reply for the mention, 503 + Retry-After
for the post); the process exits 0 with one line saying what was drained; the budget hold is
settled. An answer still streaming when the drain time runs out keeps what was shown, marked
incomplete, and its hold is released. After the process is gone, Discord itself shows "The application did not respond" for
any new command (not something the bot can answer). Nothing here sleeps to synchronise: the tests
wait on the emulators' change signals, on the bot's log lines (read as they are written) and on
the process's exit.
"""

from __future__ import annotations

import asyncio
import io
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from PIL import Image

from bench._relay_process import BotProcess, make_key
from bot.app.draining import RESTARTING_MESSAGE, Drained, drain_tasks
from bot.chat.admission import Admission, Busy
from bot.rendering.stream import WRITING_MARKER
from bot.storage.store import Store
from tests.e2e import wait_reply
from tests.waiting import Changes

ANSWER = " ".join(f"word{i:02d}" for i in range(60))  # 60 chunks of one word each
EXIT_TIMEOUT = 60.0


class _Lines(list[str]):
    """The bot's stderr lines; each new one pokes ``changes`` (so a test can wait for a line)."""

    def __init__(self, changes: Changes) -> None:
        super().__init__()
        self.changes = changes

    def append(self, line: str) -> None:
        super().append(line)
        self.changes.changed()


class Gatecord(BotProcess):
    """``gatecord run`` as a subprocess whose log lines can be waited for."""

    def __init__(self, config: Path) -> None:
        super().__init__(config)
        self.lines = Changes()
        self.log = _Lines(self.lines)

    async def wait_line(self, text: str, timeout: float = 30.0) -> str:
        def found() -> str | None:
            return next((line for line in self.log if text in line), None)

        line = await self.lines.wait_until(found, timeout, what=f"a log line with {text!r}")
        assert line is not None
        return line

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    async def exit_code(self) -> int:
        assert self.proc is not None
        code = await asyncio.wait_for(self.proc.wait(), EXIT_TIMEOUT)
        if self._reader is not None:
            await self._reader
        return code


def write_config(path: Path, discord: Any, gateway: Any, db_path: Path, *, drain_seconds: float) -> Path:
    path.write_text(
        "[discord]\n"
        f'token = "{discord.token}"\napi_base_url = "{discord.api_base_url}"\n'
        f'gateway_url = "{discord.gateway_url}"\ncdn_base_url = "{discord.cdn_base_url}"\n'
        'cdn_hosts = ["127.0.0.1"]\nguild_ready_timeout = 0.2\n\n'
        f'[gateway]\nprofile = "{gateway.profile}"\nbase_url = "{gateway.root_url}"\n'
        f'api_key = "{gateway.api_key}"\nchat_model = "{gateway.default_chat_model}"\nmax_retries = 0\n\n'
        f'[storage]\npath = "{db_path}"\n\n'
        '[http]\nhost = "127.0.0.1"\nport = 0\n\n'
        f"[shutdown]\ndrain_seconds = {drain_seconds}\n\n"
        '[logging]\nlevel = "INFO"\n',
        encoding="utf-8",
    )
    return path


@pytest.fixture
async def started(discord_emu: Any, gateway_emu: Any, tmp_path: Path, request: pytest.FixtureRequest,
                  ) -> AsyncIterator[tuple[Gatecord, Path]]:
    """The bot process (drain time from the test's parameter), ready and connected."""
    db_path = tmp_path / "gatecord.db"
    config = write_config(tmp_path / "config.toml", discord_emu, gateway_emu, db_path,
                          drain_seconds=getattr(request, "param", 60.0))
    bot = Gatecord(config)
    await bot.start()
    try:
        await bot.wait_ready()
        yield bot, db_path
    finally:
        gateway_emu.chunk_delay = 0.0  # an emulated stream left hanging ends at once
        await bot.terminate()


async def streaming(discord_emu: Any, gateway_emu: Any, chunk_delay: float) -> Any:
    """A /chat whose answer has begun to show (with "still writing") and is streaming slowly."""
    gateway_emu.chunk_delay = chunk_delay
    gateway_emu.queue_reply(ANSWER, chunk_size=7)
    rec = await discord_emu.inject_slash_command("chat", {"prompt": "tell me a long story"})
    await rec.wait_final(lambda r: WRITING_MARKER in r.content, timeout=20)
    return rec


async def reservations(db_path: Path) -> list[str]:
    store = Store(db_path)
    await store.open()
    try:
        return [r["state"] for r in await store.fetchall("SELECT state FROM quota_reservations")]
    finally:
        await store.close()


@pytest.mark.timeout(120)
async def test_sigterm_finishes_the_answer_in_progress_refuses_new_work_and_exits_0(
    discord_emu: Any, gateway_emu: Any, tmp_path: Path,
) -> None:
    db_path = tmp_path / "gatecord.db"
    key = await make_key(db_path, discord_emu.guild_id)
    config = write_config(tmp_path / "config.toml", discord_emu, gateway_emu, db_path, drain_seconds=60)
    bot = Gatecord(config)
    url = await bot.start()
    try:
        await bot.wait_ready()
        # 0.5 s between chunks: about 30 s of answer, far more than the test needs to act mid-stream
        rec = await streaming(discord_emu, gateway_emu, chunk_delay=0.5)
        async with aiohttp.ClientSession() as http:  # relay posts accepted before the signal
            for i in range(5):
                body = {"channelId": str(discord_emu.channel_id), "content": f"accepted before #{i}"}
                async with http.post(f"{url}/send-data", json=body,
                                     headers={"Authorization": f"Bearer {key}"}) as resp:
                    assert resp.status == 202, await resp.text()

        bot.signal(signal.SIGTERM)
        await bot.wait_line("draining: new turns")

        # during the drain: a new /chat, a mention and a relay post are refused, at once and politely
        late = await discord_emu.inject_slash_command("chat", {"prompt": "are you there?"}, user="bob")
        await late.wait_final(lambda r: RESTARTING_MESSAGE in r.content, timeout=10)
        assert late.ephemeral and late.response_type == 4  # answered, not deferred: no answer will follow
        mention = await discord_emu.send_user_message("hello?", user="bob", mention_bot=True)
        assert RESTARTING_MESSAGE in (await wait_reply(discord_emu, mention)).content
        async with aiohttp.ClientSession() as http:
            body = {"channelId": str(discord_emu.channel_id), "content": "posted during the drain"}
            async with http.post(f"{url}/send-data", json=body, headers={"Authorization": f"Bearer {key}"}) as resp:
                assert resp.status == 503, await resp.text()
                assert (await resp.json())["error"] == "restarting"
                assert int(resp.headers["Retry-After"]) > 0
            async with http.get(f"{url}/ready") as resp:
                assert resp.status != 200  # a load balancer stops sending work here
        assert WRITING_MARKER in rec.content, "the answer was still streaming while new work was refused"

        gateway_emu.chunk_delay = 0.0  # let the rest of the answer come
        assert await bot.exit_code() == 0
    finally:
        gateway_emu.chunk_delay = 0.0
        await bot.terminate()

    # the member's answer is complete: the final edit, with the whole text and no "still writing"
    assert rec.original is not None and ANSWER in rec.original.content
    assert WRITING_MARKER not in rec.original.content
    drained = await bot.wait_line("drained in")
    assert "answers 1 finished, 0 cut off" in drained
    assert not any("Traceback" in line for line in bot.log), "\n".join(bot.log)
    assert await reservations(db_path) == ["settled"]  # the answer was charged, nothing held
    posted = [m.content for m in discord_emu.channel_messages(discord_emu.channel_id)]
    assert "posted during the drain" not in posted
    # accepted posts: delivered once, or kept queued for the next start; none cut off mid-send
    store = Store(db_path)
    await store.open()
    try:
        states = {r["status"] for r in await store.fetchall("SELECT status FROM relay_outbox")}
    finally:
        await store.close()
    assert states <= {"delivered", "queued"}, states
    assert all(posted.count(f"accepted before #{i}") <= 1 for i in range(5))
    assert "0 interrupted" in drained


@pytest.mark.timeout(120)
@pytest.mark.parametrize("started", [0.0], indirect=True)
async def test_an_answer_past_the_drain_time_is_cut_off_and_its_budget_released(
    started: tuple[Gatecord, Path], discord_emu: Any, gateway_emu: Any,
) -> None:
    bot, db_path = started
    rec = await streaming(discord_emu, gateway_emu, chunk_delay=30.0)  # would take half an hour
    assert await reservations(db_path) == ["open"]

    bot.signal(signal.SIGTERM)
    assert await bot.exit_code() == 0
    # the member keeps what was shown, marked incomplete (not left "still writing")
    assert rec.original is not None and ANSWER.split()[0] in rec.original.content
    assert WRITING_MARKER not in rec.original.content
    assert "Incomplete answer" in rec.original.content and "restarting" in rec.original.content
    drained = await bot.wait_line("drained in")
    assert "answers 0 finished, 1 cut off" in drained
    assert not any("Traceback" in line for line in bot.log), "\n".join(bot.log)
    assert await reservations(db_path) == ["released"]


@pytest.mark.timeout(120)
async def test_a_second_signal_during_the_drain_stops_at_once_without_a_traceback(
    started: tuple[Gatecord, Path], discord_emu: Any, gateway_emu: Any,
) -> None:
    bot, _ = started
    await streaming(discord_emu, gateway_emu, chunk_delay=30.0)  # the drain (60 s) would wait for it

    bot.signal(signal.SIGTERM)
    await bot.wait_line("draining: new turns")
    bot.signal(signal.SIGINT)
    assert await bot.exit_code() == 128 + signal.SIGINT
    assert any("SIGINT again during the drain: stopping at once" in line for line in bot.log)
    assert not any("Traceback" in line for line in bot.log), "\n".join(bot.log)
    assert not any("drained in" in line for line in bot.log)


# -- in process: /imagine and /vision during a drain ------------------------------------------------

def _png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 48), (255, 0, 0)).save(out, format="PNG")
    return out.getvalue()


@pytest.mark.gateway_profile("digicord")
async def test_an_image_job_in_progress_is_delivered_while_new_imagine_and_vision_are_refused(bot_env: Any) -> None:
    env, emu = bot_env, bot_env.discord
    env.gateway.faults.slow_next(delay=3, path="images/flux/generations")
    rec = await emu.inject_slash_command("imagine create", {"prompt": "a red fox", "count": 1})
    calls = lambda: [r for r in env.gateway.requests if "images" in r.path and r.method == "POST"]  # noqa: E731
    await env.gateway.wait_for(lambda: calls() or None, timeout=10)  # the paid call is on its way

    drain = asyncio.create_task(env.bot.drain())
    late = await emu.inject_slash_command("imagine create", {"prompt": "a blue whale", "count": 1}, user="bob")
    await late.wait_final(lambda r: RESTARTING_MESSAGE in r.content, timeout=10)
    assert late.ephemeral
    look = await emu.inject_slash_command("vision", {}, attachments={"image": ("red.png", _png(), "image/png")},
                                          user="bob")
    await look.wait_final(lambda r: RESTARTING_MESSAGE in r.content, timeout=10)
    assert look.ephemeral

    summary = await drain
    assert "media jobs 1 finished, 0 cut off" in summary
    assert rec.original is not None and rec.original.attachments and rec.original.components  # the grid
    assert len(calls()) == 1  # the refused ones never reached the gateway
    assert await env.bot.store.fetchval("SELECT COUNT(*) FROM quota_reservations WHERE state = 'open'") == 0


# -- units: the admission gate and the drain helper ------------------------------------------------

async def test_a_closed_admission_refuses_new_tickets_and_lets_earlier_ones_run() -> None:
    gate = Admission(max_concurrency=1, max_queue=4)
    earlier = gate.admit("a")
    assert gate.holders() == {asyncio.current_task()}  # the drain waits for a turn not yet started
    gate.close()
    with pytest.raises(Busy) as refused:  # a Busy: every caller already tells the member
        gate.admit("b")
    assert refused.value.user_message() == RESTARTING_MESSAGE and refused.value.code == "restarting"
    async with earlier:
        assert earlier.running
    assert gate.holders() == set() and gate.waiting == gate.running == 0


async def test_drain_tasks_waits_for_work_started_during_the_drain() -> None:
    first_done, second_done = asyncio.Event(), asyncio.Event()
    tasks: list[asyncio.Task[Any]] = []

    async def first() -> None:
        await first_done.wait()
        tasks.append(asyncio.create_task(second_done.wait()))  # a turn that reached its answer during the drain

    def in_progress() -> list[asyncio.Task[Any]]:
        # each task is let go once the drain has seen it in progress
        asyncio.get_running_loop().call_soon((first_done if len(tasks) == 1 else second_done).set)
        return tasks

    tasks.append(asyncio.create_task(first()))
    assert await drain_tasks(in_progress, timeout=3600) == Drained(finished=2, cancelled=0)
    assert all(t.done() and not t.cancelled() for t in tasks)


async def test_drain_tasks_cuts_off_what_is_left_when_the_time_is_up() -> None:
    forever = asyncio.create_task(asyncio.Event().wait())
    assert await drain_tasks(lambda: {forever}, timeout=0) == Drained(finished=0, cancelled=1)
    assert forever.cancelled()
