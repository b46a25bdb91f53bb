"""``[discord] shard_count`` / ``shard_ids``: what is accepted, the one line `gatecord check` prints for
what is not (exit code 2, as every configuration error), and how /ready words a process's shards."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bot.app.settings import load_settings
from bot.app.sharding import describe_shards, held_shards


def check(tmp_path: Path, env: dict[str, str], toml: str = "") -> subprocess.CompletedProcess[str]:
    cfg = tmp_path / "cfg.toml"
    cfg.write_text(toml)
    base = {k: v for k, v in os.environ.items() if not k.startswith("GATECORD_")}
    return subprocess.run([sys.executable, "-m", "bot", "check", "--config", str(cfg)], cwd=tmp_path,
                          env=base | env, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(
    ("env", "line"),
    [
        ({"GATECORD_DISCORD__SHARD_IDS": "0,1"},
         "environment variable GATECORD_DISCORD__SHARD_IDS: discord.shard_ids needs discord.shard_count too: "
         "set it to the number of shards across all processes (GATECORD_DISCORD__SHARD_COUNT) (got '0,1')"),
        ({"GATECORD_DISCORD__SHARD_COUNT": "2", "GATECORD_DISCORD__SHARD_IDS": "0,2"},
         "environment variable GATECORD_DISCORD__SHARD_IDS: discord.shard_ids must each be from 0 to 1 "
         "(shard_count is 2): 2 is not (got '0,2')"),
        ({"GATECORD_DISCORD__SHARD_COUNT": "2", "GATECORD_DISCORD__SHARD_IDS": "[-1]"},
         "environment variable GATECORD_DISCORD__SHARD_IDS: discord.shard_ids must each be from 0 to 1 "
         "(shard_count is 2): -1 is not (got '[-1]')"),
        ({"GATECORD_DISCORD__SHARD_COUNT": "4", "GATECORD_DISCORD__SHARD_IDS": "1,3,1"},
         "environment variable GATECORD_DISCORD__SHARD_IDS: discord.shard_ids names shard 1 more than once "
         "(got '1,3,1')"),
        ({"GATECORD_DISCORD__SHARD_COUNT": "0", "GATECORD_DISCORD__SHARD_IDS": "0"},
         "environment variable GATECORD_DISCORD__SHARD_COUNT: discord.shard_count input should be greater than "
         "or equal to 1 (got '0')"),
        ({"GATECORD_DISCORD__SHARD_COUNT": "2", "GATECORD_DISCORD__SHARD_IDS": "one"},
         "environment variable GATECORD_DISCORD__SHARD_IDS: discord.shard_ids[0] input should be a valid integer, "
         "unable to parse string as an integer (got 'one')"),
    ],
)
def test_bad_shard_settings_are_one_line_from_check_with_exit_code_2(
    tmp_path: Path, env: dict[str, str], line: str
) -> None:
    proc = check(tmp_path, env)
    assert proc.returncode == 2
    assert proc.stderr == f"gatecord: {line}\n"
    assert proc.stdout == ""


def test_shard_ids_beyond_the_count_in_the_file_name_the_file(tmp_path: Path) -> None:
    proc = check(tmp_path, {"GATECORD_DISCORD__SHARD_COUNT": "2"}, "[discord]\nshard_ids = [0, 2]\n")
    assert proc.returncode == 2
    assert proc.stderr == (
        f"gatecord: {tmp_path / 'cfg.toml'}: discord.shard_ids must each be from 0 to 1 (shard_count is 2): "
        "2 is not (got [0, 2]) [env GATECORD_DISCORD__SHARD_IDS]\n"
    )


@pytest.mark.parametrize(
    ("env", "count", "ids"),
    [
        ({}, None, None),
        ({"GATECORD_DISCORD__SHARD_COUNT": "2"}, 2, None),
        ({"GATECORD_DISCORD__SHARD_COUNT": "2", "GATECORD_DISCORD__SHARD_IDS": "0,1"}, 2, [0, 1]),
        ({"GATECORD_DISCORD__SHARD_COUNT": "3", "GATECORD_DISCORD__SHARD_IDS": "2"}, 3, [2]),
        ({"GATECORD_DISCORD__SHARD_COUNT": "3", "GATECORD_DISCORD__SHARD_IDS": "[2, 0]"}, 3, [2, 0]),
        ({"GATECORD_DISCORD__SHARD_COUNT": "3", "GATECORD_DISCORD__SHARD_IDS": ""}, 3, None),  # empty: every shard
    ],
)
def test_shard_settings_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, env: dict[str, str], count: int | None, ids: list[int] | None
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    discord = load_settings(tmp_path / "absent.toml").discord
    assert (discord.shard_count, discord.shard_ids) == (count, ids)


def test_held_shards() -> None:
    assert held_shards(None, None) is None  # not known until Discord recommends a count
    assert held_shards(None, 3) == [0, 1, 2]
    assert held_shards([2, 0], 3) == [0, 2]


@pytest.mark.parametrize(
    ("held", "connected", "limited", "latency", "expected"),
    [
        ([0, 1], {0, 1}, set(), 0.042, (True, "shards 0,1 of 2 connected, latency 42 ms")),
        ([1], {1}, set(), float("inf"), (True, "shard 1 of 2 connected")),
        ([1], set(), set(), None, (False, "shard 1 of 2 not connected")),
        ([0, 1], {0}, set(), None, (False, "shard 0 of 2 connected; shard 1 of 2 not connected")),
        ([0, 1], set(), set(), float("nan"), (False, "shards 0,1 of 2 not connected")),
        ([0, 1], {0, 1}, {1}, None,
         (True, "shards 0,1 of 2 connected; shard 1 at the gateway's send rate limit")),
    ],
)
def test_describe_shards(
    held: list[int], connected: set[int], limited: set[int], latency: float | None, expected: tuple[bool, str]
) -> None:
    assert describe_shards(held, 2, connected, rate_limited=limited, latency=latency) == expected
