"""The Dockerfile and deploy/compose.yaml, without a container engine (none runs on these machines).

The image's build is REPLAYED in a temporary folder: the build stage's COPY lines pick the sources and its
RUN line builds the wheel (offline, with the venv's build backend instead of an isolated one, as
tests/test_packaging.py does); the final stage's RUN lines run as written (deploy/install.sh: the locked
dependencies, hash-checked, then the wheel with --no-deps) with every container path mapped to a folder
here; its ENV and ENTRYPOINT start `gatecord migrate` on SQLite and on PostgreSQL.

The install runs offline (pip --no-index) from a wheelhouse of the locked files. That wheelhouse cannot
be made from the current venv: --require-hashes checks each file against the hashes of the files on
PyPI, and an installed package cannot be turned back into that file. So it is downloaded once with
`pip download --require-hashes -r requirements.lock` (PyPI, which CI reaches), plus the build
requirements of the one sdist in the lock (pyvips), which pip builds as it would in the image.

The useradd/chown steps need root and are not replayed; the tests read them instead (a non-root USER).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import tarfile
import tomllib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pytest
import yaml

from bot.app.settings import Settings, load_settings
from bot.storage.migrations import latest_version

pytestmark = pytest.mark.timeout(900)  # the first test pays for the wheelhouse, the wheel and the venv

REPO = Path(__file__).resolve().parent.parent
DOCKERFILE = REPO / "Dockerfile"
COMPOSE = REPO / "deploy" / "compose.yaml"
LATEST = latest_version()
#: needs root (a system user, file ownership): read by the tests below instead of being run
NOT_REPLAYED = ("useradd", "chown")


# -- reading the Dockerfile ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    op: str
    args: str

    def json_or_words(self) -> list[str]:
        return json.loads(self.args) if self.args.startswith("[") else shlex.split(self.args)


def dockerfile_stages(text: str) -> list[list[Instruction]]:
    """The instructions of each stage (continuation lines joined, comments dropped)."""
    stages: list[list[Instruction]] = []
    logical = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        logical += line[:-1] + " " if line.endswith("\\") else line
        if line.endswith("\\"):
            continue
        op, _, args = logical.partition(" ")
        logical = ""
        if op.upper() == "FROM":
            stages.append([])
        stages[-1].append(Instruction(op.upper(), args.strip()))
    return stages


STAGES = dockerfile_stages(DOCKERFILE.read_text(encoding="utf-8"))
BUILD, FINAL = STAGES[0], STAGES[-1]


def only(stage: list[Instruction], op: str) -> Instruction:
    found = [i for i in stage if i.op == op]
    assert len(found) == 1, f"expected one {op} in the stage, found {found}"
    return found[0]


def env_of(stage: list[Instruction]) -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction in stage:
        if instruction.op == "ENV":
            for pair in shlex.split(instruction.args):
                key, _, value = pair.partition("=")
                env[key] = value
    return env


class Paths:
    """Container paths → folders under ``root``; a path not provided for fails the replay loudly."""

    def __init__(self, root: Path, mapping: dict[str, str]) -> None:
        self.mapping = {PurePosixPath(k): root / v for k, v in mapping.items()}

    def __call__(self, path: str, cwd: str = "/") -> Path:
        absolute = PurePosixPath(cwd) / path
        for prefix in sorted(self.mapping, key=lambda p: len(p.parts), reverse=True):
            if absolute == prefix or prefix in absolute.parents:
                return self.mapping[prefix].joinpath(*absolute.parts[len(prefix.parts):])
        raise AssertionError(f"the replay has no folder for the container path {absolute}")

    def words(self, words: list[str]) -> list[str]:
        return [str(self(w)) if w.startswith("/") else w for w in words]


def replay_copy(instruction: Instruction, paths: Paths, workdir: str, context: Path) -> None:
    *sources, dest = shlex.split(instruction.args)
    if sources[0].startswith("--from="):
        context, sources = paths(sources[1]).parent, [paths(sources[1]).name]
    target = paths(dest, workdir)
    for source in sources:
        src = context / source
        assert src.exists(), f"{instruction.op} {instruction.args}: {src} does not exist"
        if src.is_dir():
            shutil.copytree(src, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            into = target if dest.endswith("/") or len(sources) > 1 else target.parent
            into.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, into / src.name if into == target else target)


def offline_env(wheelhouse: Path) -> dict[str, str]:
    """No index, no pip configuration of this machine: only the wheelhouse."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GATECORD_", "PIP_"))}
    env.update({"PIP_CONFIG_FILE": os.devnull, "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(wheelhouse),
                "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PYTHON": sys.executable})
    env.pop("PYTHONPATH", None)
    return env


def run(argv: list[str], *, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{shlex.join(argv)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc


# -- the replay ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The locked files (and the build requirements of any sdist among them), downloaded from the index
    this machine's pip is configured with: the one step that needs the network."""
    folder = tmp_path_factory.mktemp("wheelhouse")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATECORD_")}
    pip = [sys.executable, "-m", "pip", "download", "--quiet", "--dest", str(folder)]
    run([*pip, "--require-hashes", "-r", str(REPO / "requirements.lock")], cwd=folder, env=env)
    for sdist in folder.glob("*.tar.gz"):
        with tarfile.open(sdist) as archive:
            member = next(m for m in archive.getmembers() if m.name.count("/") == 1
                          and m.name.endswith("/pyproject.toml"))
            extracted = archive.extractfile(member)
            assert extracted is not None
            requires = tomllib.loads(extracted.read().decode())["build-system"]["requires"]
        run([*pip, "--only-binary=:all:", *requires], cwd=folder, env=env)
    return folder


@dataclass(frozen=True)
class Image:
    paths: Paths
    env: dict[str, str]  # the image's ENV, mapped, for the processes it starts
    workdir: Path
    venv: Path


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory, wheelhouse: Path) -> Image:
    root = tmp_path_factory.mktemp("image")
    paths = Paths(root, {"/src": "src", "/dist": "dist", "/tmp/install": "install", "/opt/gatecord": "venv",
                         "/var/lib/gatecord": "home"})
    env = offline_env(wheelhouse)
    for stage in (BUILD, FINAL):
        assert stage[0].args.split()[0] == "python:3.11-slim"
        workdir = "/"
        for instruction in stage:
            if instruction.op == "WORKDIR":
                workdir = instruction.args
                paths(workdir).mkdir(parents=True, exist_ok=True)
            elif instruction.op == "COPY":
                replay_copy(instruction, paths, workdir, REPO)
            elif instruction.op == "RUN":
                for command in instruction.args.split("&&"):
                    words = shlex.split(command)
                    if words[0] in NOT_REPLAYED:
                        continue
                    words = paths.words(words)
                    if words[:4] == ["python", "-m", "pip", "wheel"]:
                        # the image builds in an isolated environment from the index; here, offline, with the
                        # build backend of this venv (setuptools and wheel are in the test extra)
                        words = [sys.executable, *words[1:], "--no-build-isolation"]
                    run(words, cwd=root if workdir == "/" else paths(workdir), env=env)
    image_env = {k: v for k, v in os.environ.items() if not k.startswith(("GATECORD_", "PIP_"))}
    image_env.pop("PYTHONPATH", None)
    for key, value in env_of(FINAL).items():
        mapped = [str(paths(part)) if part.startswith("/") else part for part in value.split(":")]
        image_env[key] = ":".join(mapped).replace("$PATH", os.environ["PATH"])
    final_workdir = paths(only(FINAL, "WORKDIR").args)
    return Image(paths, image_env, final_workdir, paths("/opt/gatecord"))


def gatecord(image: Image, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    entrypoint = only(FINAL, "ENTRYPOINT").json_or_words()
    program = shutil.which(entrypoint[0], path=image.env["PATH"])
    assert program is not None and Path(program).is_relative_to(image.venv)  # the image's gatecord, not ours
    return subprocess.run([program, *entrypoint[1:], *args], cwd=image.workdir, env={**image.env, **env},
                          capture_output=True, text=True, timeout=120)


def test_the_replayed_image_migrates_its_sqlite_volume(image: Image) -> None:
    proc = gatecord(image, "migrate")
    database = Path(image.env["GATECORD_STORAGE__PATH"])
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, f"database {database}: schema version {LATEST}\n", "")
    volume = image.paths(json.loads(only(FINAL, "VOLUME").args)[0])
    assert database.parent == volume  # the database lives on the data volume


def test_the_replayed_image_migrates_postgresql(image: Image, pg_url: str) -> None:
    proc = gatecord(image, "migrate", GATECORD_STORAGE__URL=pg_url)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, f"database {pg_url}: schema version {LATEST}\n", "")


def test_the_image_holds_the_package_and_exactly_the_locked_dependencies(image: Image, tmp_path: Path) -> None:
    python = str(image.venv / "bin" / "python")
    packages = [p.rstrip("*") for p in tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"][
        "packages"]["find"]["include"]]
    assert packages == ["bot", "cogs", "gateway_client", "sandbox"]
    for package in packages:  # every package made it into the image (the build stage COPYs them)
        where = run([python, "-c", f"import {package}; print({package}.__file__)"], cwd=tmp_path,
                    env=image.env).stdout.strip()
        assert Path(where).is_relative_to(image.venv), package  # the installed wheel, not this checkout
    listed = run([sys.executable, "-m", "pip", "--python", python, "list", "--format=json"], cwd=tmp_path,
                 env=image.env).stdout  # the image's environment has no pip of its own
    installed = {normal(p["name"]): p["version"] for p in json.loads(listed)}
    locked = dict(line.split()[0].split("==") for line in (REPO / "requirements.lock").read_text().splitlines()
                  if "==" in line and not line.startswith((" ", "#")))
    assert installed.pop("gatecord") == "0.1.0"
    # exactly the lock: no package it does not name (not even pip or setuptools), each at its version
    assert installed == {normal(name): version for name, version in locked.items()}


def normal(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


# -- what is read, not run ------------------------------------------------------------------------------


def test_the_image_runs_as_an_unprivileged_user() -> None:
    user = [i for i in FINAL if i.op == "USER"][-1].args
    assert user not in ("root", "0") and not user.startswith(("root:", "0:"))
    created = [shlex.split(i.args) for i in FINAL if i.op == "RUN" and "useradd" in i.args]
    assert len(created) == 1
    words = created[0][:created[0].index("&&")]
    assert words[-1] == user  # the user the image runs as is the one it creates
    assert int(words[words.index("--uid") + 1]) >= 1000
    assert FINAL.index([i for i in FINAL if i.op == "USER"][-1]) > max(
        n for n, i in enumerate(FINAL) if i.op == "RUN")  # no step after it runs as root


def test_the_image_serves_the_web_port_and_keeps_data_on_a_volume() -> None:
    env = env_of(FINAL)
    assert only(FINAL, "ENTRYPOINT").json_or_words() == ["gatecord"]
    assert only(FINAL, "CMD").json_or_words() == ["run"]
    assert only(FINAL, "EXPOSE").args == env["GATECORD_HTTP__PORT"] == "8080"
    assert env["GATECORD_HTTP__HOST"] == "0.0.0.0"  # reachable from outside the container
    volume = json.loads(only(FINAL, "VOLUME").args)
    assert volume == [str(PurePosixPath(env["GATECORD_STORAGE__PATH"]).parent)]


# -- deploy/compose.yaml ---------------------------------------------------------------------------------


def read_env_file(path: Path) -> dict[str, str]:
    pairs = [line.split("=", 1) for line in path.read_text(encoding="utf-8").splitlines()
             if line.strip() and not line.startswith("#")]
    return {key.strip(): value.strip() for key, value in pairs}


COMPOSE_DOC = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
SERVICES = COMPOSE_DOC["services"]
GATECORD_SERVICES = ("migrate", "shard-0", "shard-1", "web")


def test_compose_has_postgresql_two_shard_processes_and_a_web_process() -> None:
    assert set(SERVICES) == {"postgres", *GATECORD_SERVICES}
    postgres = SERVICES["postgres"]
    assert postgres["image"].split(":")[1].split(".")[0] == "15"
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    volume, _, mount = postgres["volumes"][0].partition(":")
    assert mount == "/var/lib/postgresql/data" and volume in COMPOSE_DOC["volumes"]
    commands = {name: SERVICES[name]["command"] for name in GATECORD_SERVICES}
    assert commands == {"migrate": ["migrate"], "shard-0": ["run"], "shard-1": ["run"], "web": ["web"]}
    for n in (0, 1):
        assert SERVICES[f"shard-{n}"]["environment"] == {
            "GATECORD_DISCORD__SHARD_COUNT": "2", "GATECORD_DISCORD__SHARD_IDS": str(n)}
    published = SERVICES["web"]["ports"][0].rsplit(":", 1)[1]
    assert published == only(FINAL, "EXPOSE").args


def test_compose_lets_gatecord_drain_before_it_is_killed() -> None:
    drain = Settings().shutdown.drain_seconds
    for name in GATECORD_SERVICES:
        grace = SERVICES[name]["stop_grace_period"]
        assert grace.endswith("s") and float(grace[:-1]) >= drain + 10, name  # README "Stopping"


def test_compose_starts_gatecord_after_the_schema_is_applied_once() -> None:
    assert SERVICES["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert SERVICES["migrate"]["restart"] == "no"
    for name in ("shard-0", "shard-1", "web"):
        assert SERVICES[name]["depends_on"] == {"migrate": {"condition": "service_completed_successfully"}}
    for name in GATECORD_SERVICES:
        build = SERVICES[name]["build"]
        assert (COMPOSE.parent / build["context"]).resolve() == REPO
        assert (REPO / build["dockerfile"]).resolve() == DOCKERFILE


def test_compose_settings_come_from_the_env_file_and_are_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    example = read_env_file(COMPOSE.parent / "gatecord.env.example")
    assert {"GATECORD_DISCORD__TOKEN", "GATECORD_GATEWAY__API_KEY", "GATECORD_STORAGE__URL"} <= set(example)
    database = read_env_file(COMPOSE.parent / "postgres.env.example")
    postgres_env = SERVICES["postgres"]["environment"]
    assert example["GATECORD_STORAGE__URL"] == (
        f"postgresql://{postgres_env['POSTGRES_USER']}:{database['POSTGRES_PASSWORD']}@postgres:5432/"
        f"{postgres_env['POSTGRES_DB']}"
    )
    assert SERVICES["postgres"]["env_file"] == "postgres.env"
    shards = {}
    for name in GATECORD_SERVICES:
        assert SERVICES[name]["env_file"] == "gatecord.env"  # secrets only from the (git-ignored) env file
        environment = {**example, **SERVICES[name].get("environment", {}), "GATECORD_DISCORD__TOKEN": "x" * 20}
        for key in [k for k in os.environ if k.startswith("GATECORD_")]:
            monkeypatch.delenv(key)
        for key, value in environment.items():
            monkeypatch.setenv(key, value)
        settings = load_settings(None)  # every name is a real setting, every value valid
        assert settings.storage.url is not None
        assert settings.storage.url.get_secret_value() == example["GATECORD_STORAGE__URL"]
        shards[name] = (settings.discord.shard_count, settings.discord.shard_ids)
    assert shards == {"migrate": (None, None), "web": (None, None), "shard-0": (2, [0]), "shard-1": (2, [1])}
    ignored = (REPO / ".gitignore").read_text().split()
    assert "deploy/gatecord.env" in ignored and "deploy/postgres.env" in ignored
