"""Streaming throughput: gateway_client vs the official openai SDK on the same 2,000-chunk answer.

    python bench/gateway_stream.py [--reps 5] [--chunks 2000]

The openai-profile emulator runs in a child process (this file with ``--serve``: the emulator with
``stream_chunk_count`` set and keep-alive comments off), so ``time.process_time()`` around each
client measures the client's CPU only. Prints chunks/s for each client, client CPU µs per chunk,
the ratio, and whether both received identical text. Targets: ours ≥ 5× the SDK's chunks/s and
≤ 30 µs CPU per chunk. Figures only — nothing here is a test.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MODEL = "openai/gpt-4o-mini"
PIECE = 4  # characters per streamed chunk


async def _serve(chunks: int, api_key: str) -> None:
    from sandbox.gateways import GatewayEmulator

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with GatewayEmulator("openai", api_key=api_key) as emu:
        emu.stream_chunk_count = chunks
        emu.keepalive_comments = False
        print(f"READY {emu.root_url}", flush=True)
        await stop.wait()


def _user_text(chunks: int) -> str:
    """A prompt whose deterministic answer is exactly ``chunks * PIECE`` characters long."""
    from sandbox.gateways import expected_reply

    overhead = len(expected_reply(""))
    target = chunks * PIECE
    base = "benchmark streaming throughput "
    text = (base * (target // len(base) + 1))[: target - overhead]
    assert len(expected_reply(text)) == target
    return text


async def _ours(root_url: str, key: str, user: str) -> tuple[str, int, float, float]:
    from gateway_client import ChatMessage, ChatRequest, GatewayClient, GatewayConfig

    async with GatewayClient(GatewayConfig("openai", root_url, key, chat_model=MODEL)) as client:
        req = ChatRequest([ChatMessage.user(user)])
        await client.chat(ChatRequest([ChatMessage.user("warm up")]))  # open the pooled connection
        cpu0, t0 = time.process_time(), time.perf_counter()
        parts: list[str] = []
        add = parts.append
        async with client.stream_chat(req) as stream:
            async for delta in stream:
                add(delta)
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    return "".join(parts), len(parts), wall, cpu


async def _sdk(root_url: str, key: str, user: str) -> tuple[str, int, float, float]:
    from openai import AsyncOpenAI

    sdk = AsyncOpenAI(base_url=root_url + "/v1", api_key=key, max_retries=0)
    try:
        await sdk.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "warm up"}])
        cpu0, t0 = time.process_time(), time.perf_counter()
        parts: list[str] = []
        stream = await sdk.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": user}],
                                                   stream=True, stream_options={"include_usage": True})
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                parts.append(chunk.choices[0].delta.content)
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    finally:
        await sdk.close()
    return "".join(parts), len(parts), wall, cpu


def _start_server(chunks: int, key: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--serve", "--chunks", str(chunks)],
        stdout=subprocess.PIPE, text=True, cwd=ROOT, env={**os.environ, "BENCH_GATEWAY_KEY": key},
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if not line.startswith("READY "):
        proc.kill()
        raise SystemExit(f"emulator did not start: {line!r}")
    return proc, line.split()[1]


async def _bench(reps: int, chunks: int) -> int:
    key = "bench-" + secrets.token_hex(16)
    proc, root = _start_server(chunks, key)
    try:
        user = _user_text(chunks)
        rows: dict[str, list[tuple[int, float, float]]] = {"gateway_client": [], "openai SDK": []}
        texts: dict[str, str] = {}
        for _ in range(reps):  # interleave so both see the same machine state
            for name, run in (("gateway_client", _ours), ("openai SDK", _sdk)):
                text, n, wall, cpu = await run(root, key, user)
                texts.setdefault(name, text)
                if texts[name] != text:
                    texts[name] = "<differs between repetitions>"
                rows[name].append((n, wall, cpu))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)

    print(f"gateway stream benchmark: profile openai, {chunks} chunks x {PIECE} chars, {reps} repetitions, "
          f"emulator in a separate process (pid {proc.pid})")
    rates: dict[str, float] = {}
    for name, samples in rows.items():
        per_s = [n / wall for n, wall, _ in samples]
        cpu_us = [cpu / n * 1e6 for n, _, cpu in samples]
        rates[name] = statistics.median(per_s)
        print(f"  {name:15s} chunks/s median {statistics.median(per_s):10,.0f}  best {max(per_s):10,.0f}   "
              f"client CPU µs/chunk median {statistics.median(cpu_us):6.1f}  best {min(cpu_us):6.1f}   "
              f"chunks {samples[0][0]}")
    ratio = rates["gateway_client"] / rates["openai SDK"]
    identical = texts["gateway_client"] == texts["openai SDK"] and len(texts["gateway_client"]) == chunks * PIECE
    ours_cpu = statistics.median(cpu / n * 1e6 for n, _, cpu in rows["gateway_client"])
    print(f"  ratio gateway_client / SDK (median chunks/s): {ratio:.1f}x   (target >= 5x)")
    print(f"  gateway_client CPU per chunk: {ours_cpu:.1f} µs   (target <= 30 µs)")
    print(f"  texts identical: {identical}")
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--chunks", type=int, default=2000)
    p.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve:
        asyncio.run(_serve(args.chunks, os.environ["BENCH_GATEWAY_KEY"]))
        return 0
    return asyncio.run(_bench(args.reps, args.chunks))


if __name__ == "__main__":
    sys.exit(main())
