"""Chat under load: N concurrent /chat interactions, the real bot against the Discord and gateway emulators.

    python bench/chat_load.py [--n 200] [--chunks 20] [--chunk-delay 0.1] [--profile openai] [--in-process] [--no-pin]

The bot runs as its own process (``python -m bot run``, as in production); both emulators run in
this process and share its monotonic clock. The Discord emulator records when each interaction was
acknowledged and when every message create/edit arrived; the gateway emulator's stream writer is
wrapped to note when each answer's first text chunk and its last event (``[DONE]``) were written.
Every interaction streams a deterministic answer of ``--chunks`` text chunks ``--chunk-delay``
seconds apart (the emulator also paces the finish, usage and ``[DONE]`` events that way). Prints
p50/p99 of:

* acknowledgement (interaction created → its callback reaches Discord),  target p99 < 250 ms and
  every one under Discord's 3 s; with the CPU time the bot and the emulators used until the last
  acknowledgement and until every answer was final (Linux: every thread of each process, e.g.
  aiosqlite's worker and the resolver's threads, not only the main thread)
* first gateway chunk → first visible text in Discord,                   target p50 < 50 ms
* last gateway chunk ([DONE]) → final edit in Discord,                   target p50 < 150 ms
  (also shown from the last *text* chunk, which the emulator sends 3 × chunk-delay before [DONE])
* edits per message, the shortest gap between two intermediate edits of one message (≥ 1 s),
  and how many 429s the Discord emulator answered.

Only Discord-visible effects and the emulators' own timestamps are read, never the bot's
internals, so the figures mean the same whatever the bot does inside.

With two or more CPUs the bot process is pinned to its own CPU(s) and the emulators to CPU 0, as in
production, where Discord and the gateway don't run on the bot's machine (``--no-pin`` leaves the
scheduler free; on a 2-core box the two busy processes then sometimes share one core and the
figures swing by ±50 %).

``--in-process`` runs the bot in this process too (one event loop for everything; slower figures,
handy under a profiler). Figures only — nothing here is a test.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.rendering.stream import WRITING_MARKER  # noqa: E402

PROMPT = "load test question {i}"
ACK_P99_TARGET = 0.25
ACK_MAX = 3.0  # Discord's limit for the first response to an interaction
FIRST_VISIBLE_P50_TARGET = 0.05
FINAL_P50_TARGET = 0.15


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, max(0, round(q / 100 * (len(values) - 1))))]


def ms(v: float) -> str:
    return f"{v * 1000:8.1f} ms"


def instrument_gateway(marks: dict[str, dict[str, float]]) -> None:
    """Note, per prompt, when the emulator wrote the first text chunk and the last event of a stream."""
    from sandbox.gateways import chat as chat_mod

    original = chat_mod._write_events

    async def timed(emu: Any, request: Any, resp: Any, events: Any, cut: Any, err: Any) -> None:
        body = emu.ctx(request).record.json or {}
        last = (body.get("messages") or [{}])[-1].get("content")
        mark = marks.setdefault(str(last), {})
        write = resp.write

        async def recording_write(data: bytes) -> None:
            await write(data)
            now = time.monotonic()
            if data.startswith(b"data: "):
                if b'"content"' in data:
                    mark.setdefault("first_chunk", now)
                    mark["last_text_chunk"] = now
                mark["last_event"] = now

        resp.write = recording_write
        await original(emu, request, resp, events, cut, err)

    chat_mod._write_events = timed


def write_config(path: Path, discord_emu: Any, gateway_emu: Any, db: Path, n: int) -> None:
    path.write_text(
        f"""
[discord]
api_base_url = "{discord_emu.api_base_url}"
gateway_url = "{discord_emu.gateway_url}"
cdn_base_url = "{discord_emu.cdn_base_url}"
cdn_hosts = ["127.0.0.1"]
[gateway]
profile = "{gateway_emu.profile}"
base_url = "{gateway_emu.root_url}"
chat_model = "{gateway_emu.default_chat_model}"
max_retries = 0
[storage]
path = "{db}"
[http]
port = 0
[chat]
max_concurrency = {n}
max_queue = {n}
[logging]
level = "WARNING"
"""
    )


async def stop_bot_process(proc: asyncio.subprocess.Process | None) -> None:
    """SIGTERM the bot process (it drains), SIGKILL it if it has not exited after 30 s."""
    if proc is not None and proc.returncode is None:
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 30)
        except TimeoutError:
            proc.kill()


async def start_bot_process(discord_emu: Any, gateway_emu: Any, workdir: Path, n: int) -> asyncio.subprocess.Process:
    cfg = workdir / "bench.toml"
    write_config(cfg, discord_emu, gateway_emu, workdir / "bench.db", n)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATECORD_")}
    env["GATECORD_DISCORD__TOKEN"] = discord_emu.token
    env["GATECORD_GATEWAY__API_KEY"] = gateway_emu.api_key
    env["PYTHONPATH"] = str(ROOT)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "run", "--config", str(cfg), cwd=workdir, env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )
    await discord_emu.wait_for(lambda: any(c["name"] == "chat" for c in discord_emu.global_commands()), timeout=60)
    return proc


CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True)
class CpuSample:
    """CPU a process has used so far, on Linux: per live thread, and for the whole process."""

    threads: dict[int, float]  # thread id → seconds (``/proc/<pid>/task/<tid>/schedstat``, ns precision)
    process: float  # seconds, every thread ever, ended ones too (``/proc/<pid>/stat`` utime+stime, in ticks)


def cpu_sample(pid: int) -> CpuSample | None:
    """What ``pid`` has used so far; None where ``/proc`` is not available."""
    threads: dict[int, float] = {}
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                threads[int(tid)] = int(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()[0]) / 1e9
            except (FileNotFoundError, ProcessLookupError):
                pass  # the thread ended while we were listing
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        process = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime (fields 14, 15)
    except (OSError, ValueError, IndexError):
        return None
    return CpuSample(threads, process)


def main_thread_cpu(pid: int, before: CpuSample | None, after: CpuSample | None) -> float:
    """The part of it the main thread (the event loop) used: the thread whose id is the pid."""
    if before is None or after is None:
        return float("nan")
    return after.threads.get(pid, 0.0) - before.threads.get(pid, 0.0)


def cpu_used(before: CpuSample | None, after: CpuSample | None) -> float | None:
    """CPU seconds used between two samples, by every thread of the process.

    The per-thread sum is precise but misses a thread that ended in between; the whole-process
    figure includes it but counts in clock ticks (10 ms). The precise one is used unless the
    whole-process one shows more than a tick's rounding beyond it.
    """
    if before is None or after is None:
        return None
    threads = sum(after.threads.values()) - sum(t for tid, t in before.threads.items() if tid in after.threads)
    ended = set(before.threads) - set(after.threads)
    process = after.process - before.process
    if ended or process > threads + 2 / CLOCK_TICKS:
        return max(threads, process)
    return threads


async def wait_all_acknowledged(recs: list[Any], timeout: float, interval: float = 0.001) -> None:
    """Until every interaction has its first response (cheap: one attribute per pending record)."""
    deadline = time.monotonic() + timeout
    pending = recs
    while pending and time.monotonic() < deadline:
        await asyncio.sleep(interval)
        pending = [r for r in pending if r.first_response_at is None]


def pin_processes(bot_pid: int) -> str:
    """Emulators (this process) on CPU 0, the bot on the other CPUs; every existing thread of each."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return "not pinned (one CPU)"
    mine, theirs = {cpus[0]}, set(cpus[1:])
    for pid, cpu_set in ((os.getpid(), mine), (bot_pid, theirs)):
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                os.sched_setaffinity(int(tid), cpu_set)
            except (ProcessLookupError, PermissionError):
                pass
    return f"emulators on CPU {cpus[0]}, bot on CPU {','.join(map(str, sorted(theirs)))}"


async def wait_all_finished(recs: list[Any], finished: Any, timeout: float, interval: float = 0.05) -> None:
    """Poll the records every ``interval`` s, re-checking only the unfinished ones.

    Every figure comes from timestamps the emulators record, so the wait itself only has to end;
    a predicate over all records on every emulator change would cost O(n) per request (O(n²) per
    burst) in the emulators' process and so slow down the very requests being measured.
    """
    deadline = time.monotonic() + timeout
    pending = list(recs)
    while pending:
        pending = [r for r in pending if not finished(r)]
        if not pending:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(pending)} of {len(recs)} answers not final within {timeout:.0f} s")
        await asyncio.sleep(interval)


async def run(n: int, chunks: int, chunk_delay: float, profile: str, in_process: bool, pin: bool = True) -> int:
    from sandbox.discord_emulator import DiscordEmulator
    from sandbox.gateways import GatewayEmulator

    marks: dict[str, dict[str, float]] = {}
    instrument_gateway(marks)
    discord_emu = DiscordEmulator()
    await discord_emu.start()
    gateway_emu = GatewayEmulator(profile)
    await gateway_emu.start()
    gateway_emu.stream_chunk_count = chunks
    gateway_emu.chunk_delay = chunk_delay
    tmp = tempfile.TemporaryDirectory(prefix="gatecord-bench-")
    workdir = Path(tmp.name)
    proc = None
    running = None
    pinning = "not pinned"
    try:
        if in_process:
            from tests.e2e import settings_for, start_bot

            settings = settings_for(discord_emu, gateway_emu, workdir / "bench.db",
                                    chat={"max_concurrency": n, "max_queue": n})
            running = await start_bot(settings, timeout=60)
        else:
            proc = await start_bot_process(discord_emu, gateway_emu, workdir, n)
            if pin:
                pinning = pin_processes(proc.pid)

        def finished(rec: Any) -> bool:
            msgs = rec.messages
            return bool(msgs) and all(m.content and WRITING_MARKER not in m.content for m in msgs) \
                and " tokens" in msgs[-1].content

        warm = await discord_emu.inject_slash_command("chat", {"prompt": "warm-up"}, user="alice")
        await discord_emu.wait_for(lambda: finished(warm), timeout=60)

        # The emulators' long-lived state (compiled schemas, the gateway emulator, module objects) is
        # moved out of the collector's reach: otherwise one full collection (≈30 ms on a 2-core box)
        # tends to land in the burst and stalls the emulators, not the bot being measured.
        gc.collect()
        gc.freeze()
        users = ["alice", "bob", "admin"]
        bot_pid = proc.pid if proc is not None else os.getpid()
        cpu_before = (cpu_sample(bot_pid), cpu_sample(os.getpid()))
        started = time.monotonic()
        recs = await asyncio.gather(*[
            discord_emu.inject_slash_command("chat", {"prompt": PROMPT.format(i=i)}, user=users[i % 3])
            for i in range(n)
        ])
        await wait_all_acknowledged(recs, timeout=10)
        burst = time.monotonic() - started
        cpu_acked = (cpu_sample(bot_pid), cpu_sample(os.getpid()))
        await wait_all_finished(recs, finished, timeout=120 + n * chunk_delay)
        wall = time.monotonic() - started
        cpu_final = (cpu_sample(bot_pid), cpu_sample(os.getpid()))
    finally:
        if running is not None:
            await running.stop()
        await stop_bot_process(proc)
        await gateway_emu.close()
        await discord_emu.close()
        tmp.cleanup()

    acks: list[float] = []
    unacknowledged = 0
    first_visible: list[float] = []
    from_last_event: list[float] = []
    from_last_text: list[float] = []
    edits_per_message: list[int] = []
    min_gap = float("inf")
    for i, rec in enumerate(recs):
        if rec.ack_latency is None:
            unacknowledged += 1
        else:
            acks.append(rec.ack_latency)
        mark = marks.get(PROMPT.format(i=i), {})
        shown = [e.at for e in rec.original.edits if e.content] if rec.original is not None else []
        if "first_chunk" in mark and shown:
            first_visible.append(shown[0] - mark["first_chunk"])
        final_at = max(m.edits[-1].at for m in rec.messages)
        if "last_event" in mark:
            from_last_event.append(final_at - mark["last_event"])
        if "last_text_chunk" in mark:
            from_last_text.append(final_at - mark["last_text_chunk"])
        for m in rec.messages:
            edits_per_message.append(m.edit_count)
            inter = [e.at for e in m.edits if WRITING_MARKER in e.content]
            min_gap = min([min_gap, *(b - a for a, b in zip(inter, inter[1:]))])

    where = "in this process" if in_process else "as its own process"
    print(f"chat load: {n} concurrent /chat, {chunks} chunks × {chunk_delay * 1000:.0f} ms, profile {profile}, "
          f"bot {where} ({pinning}); all answers final after {wall:.2f} s")
    ack_max = max(acks, default=float("nan"))
    print(f"  acknowledgement             p50 {ms(pct(acks, 50))}   p99 {ms(pct(acks, 99))}   max {ms(ack_max)}"
          f"   (target p99 < {ACK_P99_TARGET * 1000:.0f} ms, all < {ACK_MAX:.0f} s)")
    if unacknowledged:
        print(f"  NOT ACKNOWLEDGED: {unacknowledged} of {n}")
    if not in_process:  # one process for everything: the bot's and the emulators' CPU can't be told apart
        for label, span, after in (("the last acknowledgement", burst, cpu_acked),
                                   ("every answer was final", wall, cpu_final)):
            bot_cpu, emu_cpu = cpu_used(cpu_before[0], after[0]), cpu_used(cpu_before[1], after[1])
            if bot_cpu is not None and emu_cpu is not None:
                main = main_thread_cpu(bot_pid, cpu_before[0], after[0])
                print(f"  CPU until {label} ({span * 1000:.0f} ms), all threads: bot {bot_cpu * 1000:.0f} ms "
                      f"(main thread {main * 1000:.0f}), emulators {emu_cpu * 1000:.0f} ms "
                      f"({bot_cpu / n * 1e6:.0f} / {emu_cpu / n * 1e6:.0f} µs per interaction)")
    print(f"  first chunk → visible text  p50 {ms(pct(first_visible, 50))}   p99 {ms(pct(first_visible, 99))}"
          f"   (target p50 < {FIRST_VISIBLE_P50_TARGET * 1000:.0f} ms)")
    print(f"  last chunk → final edit     p50 {ms(pct(from_last_event, 50))}   p99 {ms(pct(from_last_event, 99))}"
          f"   (target p50 < {FINAL_P50_TARGET * 1000:.0f} ms)")
    print(f"  last text chunk → final     p50 {ms(pct(from_last_text, 50))}   p99 {ms(pct(from_last_text, 99))}"
          f"   (includes the emulator's {3 * chunk_delay * 1000:.0f} ms of finish/usage/[DONE] pacing)")
    print(f"  edits per message           mean {statistics.mean(edits_per_message):.2f}   "
          f"max {max(edits_per_message)}   ({len(edits_per_message)} messages)")
    gap = "n/a" if min_gap == float("inf") else f"{min_gap:.3f} s"
    print(f"  shortest gap between two intermediate edits of one message: {gap} (must be ≥ 1 s)")
    print(f"  429 answers from the Discord emulator: {len(discord_emu.rate_limited)}")
    ok = (not unacknowledged and pct(acks, 99) < ACK_P99_TARGET and ack_max < ACK_MAX
          and pct(first_visible, 50) < FIRST_VISIBLE_P50_TARGET and pct(from_last_event, 50) < FINAL_P50_TARGET
          and min_gap >= 1.0 and not discord_emu.rate_limited)
    print("  all targets met" if ok else "  TARGETS MISSED")
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=200, help="concurrent /chat interactions")
    parser.add_argument("--chunks", type=int, default=20, help="text chunks per streamed answer")
    parser.add_argument("--chunk-delay", type=float, default=0.1, help="seconds between chunks")
    parser.add_argument("--profile", default="openai", help="gateway emulator profile")
    parser.add_argument("--in-process", action="store_true", help="run the bot in this process too")
    parser.add_argument("--no-pin", action="store_true", help="don't pin the bot and the emulators to separate CPUs")
    args = parser.parse_args()
    sys.exit(asyncio.run(run(args.n, args.chunks, args.chunk_delay, args.profile, args.in_process, pin=not args.no_pin)))


if __name__ == "__main__":
    main()
