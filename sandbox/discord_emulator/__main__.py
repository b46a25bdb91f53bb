"""``python -m sandbox.discord_emulator --host 127.0.0.1 --port 0 --token T``

Prints ``READY <api_base_url> <gateway_url>`` once serving, then runs until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from typing import Optional

from .server import DiscordEmulator


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m sandbox.discord_emulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--token", default=os.environ.get("GATECORD_DISCORD__TOKEN", "emulator-token"),
                        help="bot token the emulator accepts (default: $GATECORD_DISCORD__TOKEN or emulator-token)")
    parser.add_argument("--schemas", default=None, help="path to discord-schemas.json")
    parser.add_argument("--shards", type=int, default=1, help="shard count GET /gateway/bot recommends")
    parser.add_argument("--max-concurrency", type=int, default=1, help="IDENTIFY buckets GET /gateway/bot announces")
    return parser.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with DiscordEmulator(host=args.host, port=args.port, token=args.token, schemas_path=args.schemas,
                               shards=args.shards, max_concurrency=args.max_concurrency) as emu:
        print(f"READY {emu.api_base_url} {emu.gateway_url}", flush=True)
        await stop.wait()


def main(argv: Optional[list[str]] = None) -> int:
    asyncio.run(serve(parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
