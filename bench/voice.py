"""Voice codec: transcode + waveform time and peak memory for 10 s and 60 s of speech-like audio.

For each size and input format (mp3, wav: what the gateways return most), a fresh child process reads
the file and runs ``bot.voice.codec.encode_voice`` on it (decode, resample to 48 kHz mono, libopus into
Ogg, duration and waveform) several times, after one warm-up run that loads FFmpeg's libraries. It reports
the median wall and CPU time of a run, and the peak RSS (VmHWM, reset after the warm-up through
/proc/self/clear_refs, so FFmpeg's C allocations count and the warm-up's do not) above the RSS before the
runs. The input files are made in the parent (tests/voice_audio.py), so making them costs the child nothing.
Target: under 0.5 s for 60 s of speech. The machine may be shared: the CPU time is the steadier figure.

    python bench/voice.py [--sizes 10 60] [--formats mp3 wav] [--runs 7]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _status_kb(field: str) -> int:
    match = re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.MULTILINE)
    assert match, field
    return int(match.group(1))


def _child(path: str, fmt: str, runs: int) -> dict[str, float]:
    from bot.voice.codec import encode_voice, ogg_duration, probe_audio

    data = Path(path).read_bytes()
    hint = "pcm" if fmt == "pcm" else None
    encode_voice([data], hint)  # warm-up: FFmpeg's libraries, libopus's tables, numpy
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS from here on
    before_kb = _status_kb("VmRSS")
    walls, cpus, probes = [], [], []
    for _ in range(runs):
        wall, cpu = time.perf_counter(), time.process_time()
        clip = encode_voice([data], hint)
        cpus.append(time.process_time() - cpu)
        walls.append(time.perf_counter() - wall)
        wall = time.perf_counter()
        probe_audio(data, hint)
        probes.append(time.perf_counter() - wall)
    peak_kb = _status_kb("VmHWM")
    return {
        "wall_s": statistics.median(walls), "cpu_s": statistics.median(cpus), "probe_s": statistics.median(probes),
        "before_mb": before_kb / 1024, "peak_mb": peak_kb / 1024, "delta_mb": (peak_kb - before_kb) / 1024,
        "duration_s": clip.duration_secs, "ogg_duration_s": ogg_duration(clip.data),
        "ogg_kb": len(clip.data) / 1024, "bars": len(clip.waveform),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=float, nargs="+", default=[10.0, 60.0], help="seconds of speech")
    parser.add_argument("--formats", nargs="+", default=["mp3", "wav"], help="input formats (tests/voice_audio.py)")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--fmt", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    if args.child:
        print(json.dumps(_child(args.child, args.fmt, args.runs)))
        return
    from tests.voice_audio import make_audio

    print(f"voice codec: encode_voice (decode, 48 kHz mono, libopus into Ogg, duration, waveform); median of"
          f" {args.runs} runs, one fresh process per row; load average {os.getloadavg()[0]:.1f} on"
          f" {os.cpu_count()} cores")
    print(f"  {'input':<14} {'size':>8} {'wall':>8} {'cpu':>8} {'probe':>8} {'RSS before':>11} {'peak':>8}"
          f" {'+peak':>7} {'ogg':>8} {'duration / real':>17}")
    with tempfile.TemporaryDirectory() as tmp:
        for secs in args.sizes:
            for fmt in args.formats:
                path = Path(tmp) / f"speech-{secs:g}s.{fmt}"
                path.write_bytes(make_audio(fmt, secs))
                out = subprocess.run([sys.executable, __file__, "--child", str(path), "--fmt", fmt,
                                      "--runs", str(args.runs)], capture_output=True, text=True, check=True)
                f = json.loads(out.stdout.strip().splitlines()[-1])
                label = f"{secs:g} s {fmt}"
                print(f"  {label:<14} {path.stat().st_size / 1024:>6.0f} KB {f['wall_s']:>6.3f} s {f['cpu_s']:>6.3f} s"
                      f" {f['probe_s'] * 1000:>5.1f} ms {f['before_mb']:>8.0f} MB {f['peak_mb']:>5.0f} MB"
                      f" {f['delta_mb']:>+4.1f} MB {f['ogg_kb']:>5.0f} KB"
                      f" {f['duration_s']:>7.3f} / {f['ogg_duration_s']:.3f} s")


if __name__ == "__main__":
    main()
