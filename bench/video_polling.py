"""Video polling overhead: CPU seconds per video job per minute, with 100 jobs polling at once.

The OpenAI-surface gateway emulator runs in a child process (so its CPU is not counted), its video
jobs set to stay ``processing`` for longer than the measurement. This process runs what the bot
runs for each job: ``VideoRunner.produce`` (the POST, the job id recorded, then status polls with
backoff through the real ``GatewayClient``) and, on every poll, the progress report's text. The
report's Discord edit (at most one a second, paced by JobMessage) and the row update are left out:
they are the same for every kind of job. After a warm-up that lets the backoff reach its ceiling,
the process CPU time (``time.process_time``) over the window is divided by jobs and minutes.

    python bench/video_polling.py [--jobs 100] [--seconds 30] [--warmup 40] [--poll 2 --poll-max 15]
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bot.media.jobs import JobParams, MediaJob  # noqa: E402
from bot.media.kinds import JobRun, MediaRequest  # noqa: E402
from bot.media.video_kind import VideoPolling, VideoRunner  # noqa: E402
from gateway_client import GatewayClient, GatewayConfig, VideoJob, VideoRequest  # noqa: E402

#: the emulator, alone in a child process, its video jobs slower than the whole run
EMULATOR = """
import asyncio, sys
from sandbox.gateways import GatewayEmulator

async def main(seconds):
    async with GatewayEmulator("openai") as emu:
        emu.video_seconds_to_complete = seconds
        emu.video_polls_to_complete = 10**9
        print("READY", emu.root_url, emu.api_key, flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)

asyncio.run(main(float(sys.argv[1])))
"""


@dataclass
class Jobs:
    """The job store's part the runner uses (the row writes are not what is measured)."""

    submitted: int = 0

    async def set_result_url(self, job_id: int, url: str, expires_at: float | None) -> None:
        return None


def new_run(runner: VideoRunner, jobs: Jobs, i: int) -> JobRun:
    params = JobParams(prompt=f"bench clip {i}", duration=4, size="320x180")
    job = MediaJob(id=i + 1, params=params, user_id=1, guild_id=1, channel_id=1, profile="openai",
                   status="running", kind="video")
    req = VideoRequest(prompt=params.prompt, duration=4, size="320x180")
    started = time.monotonic()

    async def reporter(run: JobRun) -> None:  # what a report costs besides the paced edit and the row
        runner.progress_text(run, elapsed=time.monotonic() - started, position=0)

    async def submitter(run: JobRun, gateway_job_id: str) -> bool:
        jobs.submitted += 1
        run.job = replace(run.job, gateway_job_id=gateway_job_id, status="submitted")
        return True

    return JobRun(job=job, request=MediaRequest(kind="video", params=params, gateway_request=req), hold=None,
                  message=None, upload_limit=0, started=started, reporter=reporter,  # type: ignore[arg-type]
                  submitter=submitter)


class CountingClient(GatewayClient):
    polls = 0

    async def video_status(self, job_id: str) -> VideoJob:
        CountingClient.polls += 1
        return await super().video_status(job_id)


async def measure(url: str, key: str, args: argparse.Namespace) -> dict[str, Any]:
    polling = VideoPolling(interval=args.poll, max_interval=args.poll_max, timeout=3600)
    async with CountingClient(GatewayConfig(profile="openai", base_url=url, api_key=key)) as client:
        jobs = Jobs()
        runner = VideoRunner(SimpleNamespace(gateway=client, jobs=jobs), polling=polling)  # type: ignore[arg-type]
        tasks = [asyncio.create_task(runner.produce(new_run(runner, jobs, i))) for i in range(args.jobs)]
        await asyncio.sleep(args.warmup)
        failed = [t for t in tasks if t.done()]
        if failed:
            raise RuntimeError(f"{len(failed)} jobs ended during the warm-up: {failed[0].exception()!r}")
        polls0, cpu0, wall0 = CountingClient.polls, time.process_time(), time.monotonic()
        await asyncio.sleep(args.seconds)
        cpu, wall, polls = time.process_time() - cpu0, time.monotonic() - wall0, CountingClient.polls - polls0
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    minutes = wall / 60
    return {
        "jobs": args.jobs, "window_s": wall, "cpu_s": cpu, "polls": polls,
        "cpu_per_job_minute_ms": 1000 * cpu / args.jobs / minutes,
        "polls_per_job_minute": polls / args.jobs / minutes,
        "cpu_per_poll_ms": 1000 * cpu / polls if polls else float("nan"),
        "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=100)
    p.add_argument("--seconds", type=float, default=30.0, help="measurement window")
    p.add_argument("--warmup", type=float, default=40.0, help="lets the backoff reach its ceiling first")
    p.add_argument("--poll", type=float, default=2.0, help="[media] poll_interval_seconds")
    p.add_argument("--poll-max", type=float, default=15.0, help="[media] poll_max_interval_seconds")
    args = p.parse_args(argv)
    child = subprocess.Popen([sys.executable, "-c", EMULATOR, str(args.warmup + args.seconds + 600)], cwd=ROOT,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        line = child.stdout.readline().split()
        if not line or line[0] != "READY":
            raise RuntimeError("the gateway emulator did not start")
        result = asyncio.run(measure(line[1], line[2], args))
    finally:
        if child.stdin is not None:
            child.stdin.close()  # the emulator stops at the end of its input
        try:
            child.wait(10)
        except subprocess.TimeoutExpired:
            child.kill()
    print(f"video polling: {result['jobs']} jobs over {result['window_s']:.0f} s "
          f"(poll every {args.poll:g} s ×1.5 up to {args.poll_max:g} s)")
    print(f"  CPU per job per minute: {result['cpu_per_job_minute_ms']:.2f} ms "
          f"({result['polls_per_job_minute']:.1f} status polls per job per minute, "
          f"{result['cpu_per_poll_ms']:.2f} ms CPU per poll)")
    print(f"  process CPU {result['cpu_s']:.3f} s in the window; max RSS {result['max_rss_mb']:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
