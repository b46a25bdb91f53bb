"""``python -m sandbox.gateways --profile digicord --port 0`` — serve one emulator until SIGTERM.

Prints one line ``READY <root_url> <masked api key>`` once listening.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from .app import GatewayEmulator
from .profiles import PROFILES, mask_key


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m sandbox.gateways", description=__doc__)
    p.add_argument("--profile", choices=PROFILES, required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--api-key", default=None, help="key to accept (default: the profile's test key)")
    return p.parse_args(argv)


async def _serve(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with GatewayEmulator(args.profile, host=args.host, port=args.port, api_key=args.api_key) as emu:
        print(f"READY {emu.root_url} {mask_key(emu.api_key)}", flush=True)
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    asyncio.run(_serve(_parse(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
