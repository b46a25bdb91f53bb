"""Video re-encode: time to fit a 10 s 1080p clip into Discord's upload limits (10 MiB and 8 MiB).

The clip is made with PyAV (tests/media_samples.py): 1920×1080 at 24 fps, a colour with moving noise (hard
to compress, as generated video is) and stereo sound, far over either limit. Each limit is fitted with
``bot.media.video_codec.fit_video_sync`` (probe, decode, scale if needed, libx264 + AAC into a +faststart MP4,
a second try if over) several times (after a warm-up on a small clip), and the median wall and CPU time (all threads:
x264 encodes on several) are printed with the result's size, picture and number of encodes. The machine may
be shared: the CPU time is the steadier figure.

    python bench/media_reencode.py [--seconds 10] [--limits-mib 10 8] [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--limits-mib", type=float, nargs="+", default=[10.0, 8.0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from bot.media import video_codec
    from tests.media_samples import make_mp4, media_info

    started = time.perf_counter()
    clip = make_mp4(1920, 1080, args.seconds)
    made = time.perf_counter() - started
    print(f"media re-encode: fit_video on a {args.seconds:g} s 1080p24 noisy clip with sound "
          f"({len(clip) / 2**20:.1f} MiB, made in {made:.1f} s); median of {args.runs} runs;"
          f" load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"  {'limit':>8} {'wall':>8} {'cpu':>8} {'encodes':>8} {'result':>10} {'picture':>10} {'duration':>9}")

    encodes = 0
    real_encode = video_codec._encode

    def counting(*a):  # type: ignore[no-untyped-def]
        nonlocal encodes
        encodes += 1
        return real_encode(*a)

    video_codec._encode = counting  # bench-only: count the tries (one, or two when the first was over)
    small = make_mp4(320, 240, 1.0)
    video_codec.fit_video_sync(small, len(small) // 4)  # warm-up: FFmpeg's libraries, x264's tables
    for mib in args.limits_mib:
        limit = int(mib * 2**20)
        walls, cpus = [], []
        for _ in range(args.runs):
            encodes = 0
            wall, cpu = time.perf_counter(), time.process_time()
            fitted = video_codec.fit_video_sync(clip, limit)
            cpus.append(time.process_time() - cpu)
            walls.append(time.perf_counter() - wall)
        info = media_info(fitted.data)
        print(f"  {mib:>4g} MiB {statistics.median(walls):>6.2f} s {statistics.median(cpus):>6.2f} s {encodes:>8}"
              f" {len(fitted.data) / 2**20:>6.2f} MiB {fitted.width:>4}×{fitted.height:<5}"
              f" {info['duration']:>7.2f} s")


if __name__ == "__main__":
    main()
