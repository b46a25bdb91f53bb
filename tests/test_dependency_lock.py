"""`make run` and `make test` install hash-checked, locked dependencies that satisfy pyproject.toml,
and the version floors keep out the releases with known advisories."""

from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
PIN = re.compile(r"^([A-Za-z0-9._-]+)==([^\s\\]+)")

#: the last release of each with a published advisory (the floor must exclude it)
LAST_VULNERABLE = {"aiohttp": "3.14.3", "pillow": "12.3.0", "orjson": "3.11.5"}


def locked(name: str) -> dict[str, Version]:
    """Pinned versions of a lock file; every pin carries at least one sha256 hash."""
    text = (REPO / name).read_text()
    pins: dict[str, Version] = {}
    for block in re.split(r"\n(?=\S)", text):
        match = PIN.match(block)
        if match:
            assert "--hash=sha256:" in block, f"{name}: {match.group(1)} has no hash"
            pins[canonicalize_name(match.group(1))] = Version(match.group(2))
    return pins


@pytest.mark.parametrize(
    ("lock", "requirements"),
    [
        ("requirements.lock", PROJECT["dependencies"]),
        ("requirements-test.lock", PROJECT["dependencies"] + PROJECT["optional-dependencies"]["test"]),
    ],
)
def test_each_lock_pins_every_requirement_within_its_range(lock: str, requirements: list[str]) -> None:
    pins = locked(lock)
    for line in requirements:
        req = Requirement(line)
        name = canonicalize_name(req.name)
        assert name in pins, f"{lock} lacks {req.name}: run `make lock`"
        assert req.specifier.contains(pins[name], prereleases=True), f"{lock}: {name}=={pins[name]} not in {req}"


def test_the_runtime_lock_agrees_with_the_test_lock() -> None:
    runtime, test = locked("requirements.lock"), locked("requirements-test.lock")
    assert {name: test.get(name) for name in runtime} == runtime


@pytest.mark.parametrize("name", sorted(LAST_VULNERABLE))
def test_version_floors_exclude_releases_with_known_advisories(name: str) -> None:
    req = next(Requirement(r) for r in PROJECT["dependencies"] if canonicalize_name(Requirement(r).name) == name)
    assert not req.specifier.contains(LAST_VULNERABLE[name]), f"{req} still allows {LAST_VULNERABLE[name]}"
    assert locked("requirements.lock")[name] > Version(LAST_VULNERABLE[name])


@pytest.mark.parametrize(
    ("stamp", "lock"), [(".venv/.installed", "requirements.lock"), (".venv/.installed-test", "requirements-test.lock")]
)
def test_make_installs_from_the_lock_with_hashes(stamp: str, lock: str) -> None:
    """A dry run of the install step `make run` / `make test` depend on."""
    proc = subprocess.run(
        ["make", "--no-print-directory", "-n", "-B", "-o", ".venv/bin/python", stamp],
        cwd=REPO, capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stderr
    installs = [line for line in proc.stdout.splitlines() if "pip install" in line]
    assert installs == [
        f".venv/bin/python -m pip install --quiet --require-hashes -r {lock}",
        ".venv/bin/python -m pip install --quiet --no-deps -e .",
    ]
