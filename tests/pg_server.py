"""A throwaway PostgreSQL server for a test session (Debian's ``postgresql`` package, no container).

``PgServer.start()`` runs ``initdb`` in a fresh temporary directory and starts ``postgres`` on a free
TCP port of 127.0.0.1, tuned for speed rather than durability; ``stop()`` shuts it down at once and
removes the directory. Everything is synchronous (subprocesses), so a session fixture needs no event loop.

PostgreSQL refuses to run as root, and the tests run as root: the server then runs as the ``postgres``
OS user (``setpriv``), with its data directory chowned to it. Run as any other user, it runs as that user.
Two test sessions can run side by side: each has its own directory and port.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

DEBIAN_ROOT = Path("/usr/lib/postgresql")
INSTALL_HINT = "`make test` installs it (apt-get install -y postgresql)"
#: start-up settings: nothing the tests check needs durability, and a session may open many connections
FAST_SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",
}
STARTUP_TIMEOUT = 60.0
_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class PgUnavailable(RuntimeError):
    """PostgreSQL cannot be started here; the message says what is missing and how to install it."""


def find_bindir(root: Path = DEBIAN_ROOT, pg_config: str = "pg_config") -> Path:
    """The newest ``<root>/<version>/bin`` holding a server; ``pg_config --bindir`` otherwise."""
    candidates = sorted(
        (int(d.name), d / "bin") for d in (root.iterdir() if root.is_dir() else []) if d.name.isdigit()
    )
    for _, bindir in reversed(candidates):
        if (bindir / "postgres").is_file():
            return bindir
    if shutil.which(pg_config):
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False).stdout.strip()
        if out and (Path(out) / "postgres").is_file():
            return Path(out)
    raise PgUnavailable(f"PostgreSQL server binaries not found (no {root}/<version>/bin/postgres): {INSTALL_HINT}")


def free_port() -> int:
    """A TCP port of 127.0.0.1 nobody listens on now (the kernel's pick for port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _quote(name: str) -> str:
    if not _NAME.match(name):
        raise ValueError(f"database name {name!r}: use lower-case letters, digits and _ (at most 63)")
    return f'"{name}"'


class PgServer:
    """One running server; ``url(dbname)`` is what the code under test connects to."""

    def __init__(self, bindir: Path, workdir: Path, port: int, process: subprocess.Popen[bytes]) -> None:
        self.bindir = bindir
        self.workdir = workdir
        self.port = port
        self.process = process
        self.host = "127.0.0.1"

    @property
    def datadir(self) -> Path:
        return self.workdir / "data"

    @property
    def socket_dir(self) -> Path:
        return self.workdir

    @property
    def pid(self) -> int:
        """The postmaster's process id."""
        return self.process.pid

    @classmethod
    def start(cls, bindir: Path | None = None) -> PgServer:
        """initdb in a fresh temporary directory, then start and wait until it accepts connections.

        When run as root, the server is tied to the calling thread (parent-death signal): start it from
        the thread that stops it (a session fixture's main thread), and a killed test run leaves no server.
        """
        bindir = bindir or find_bindir()
        run_as = _server_user()
        workdir = Path(tempfile.mkdtemp(prefix="gatecord-pg-"))
        try:
            if run_as is not None:
                os.chown(workdir, run_as.pw_uid, run_as.pw_gid)
            os.chmod(workdir, 0o700)
            initdb = [
                str(bindir / "initdb"), "-D", str(workdir / "data"),
                "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8", "--locale=C",
            ]
            done = subprocess.run(_as(run_as, initdb), cwd=workdir, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise PgUnavailable(f"initdb failed ({done.returncode}): {done.stderr.strip()[-800:]}")
            # A port picked by binding port 0 may be taken before postgres binds it: pick again then.
            for _ in range(3):
                server = cls._launch(bindir, workdir, run_as)
                if server is not None:
                    return server
            raise PgUnavailable(f"postgres found no free port in 3 attempts: {_log_tail(workdir)}")
        except BaseException:
            shutil.rmtree(workdir, ignore_errors=True)
            raise

    @classmethod
    def _launch(cls, bindir: Path, workdir: Path, run_as: pwd.struct_passwd | None) -> PgServer | None:
        port = free_port()
        cmd = [str(bindir / "postgres"), "-D", str(workdir / "data"), "-k", str(workdir), "-p", str(port)]
        for key, value in FAST_SETTINGS.items():
            cmd += ["-c", f"{key}={value}"]
        with open(workdir / "postgres.log", "ab") as log:
            process = subprocess.Popen(
                _as(run_as, cmd, pdeathsig=True), cwd=workdir, stdin=subprocess.DEVNULL, stdout=log, stderr=log
            )
        server = cls(bindir, workdir, port, process)
        try:
            if server._wait_ready():
                return server
        except BaseException:
            server._terminate()
            raise
        if "already in use" in _log_tail(workdir):
            return None
        raise PgUnavailable(f"postgres exited with {process.returncode} while starting: {_log_tail(workdir)}")

    def _wait_ready(self) -> bool:
        """Poll pg_isready until the server accepts connections (True) or exits (False); bounded."""
        deadline = time.monotonic() + STARTUP_TIMEOUT
        probe = [str(self.bindir / "pg_isready"), "-q", "-h", self.host, "-p", str(self.port), "-U", "postgres"]
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            if subprocess.run(probe + ["-t", "1"], check=False).returncode == 0:
                return True
            time.sleep(0.05)  # start-up waiting on a process we cannot be signalled by, not test synchronisation
        waited = f"{STARTUP_TIMEOUT:.0f} s"
        raise PgUnavailable(f"postgres did not accept connections within {waited}: {_log_tail(self.workdir)}")

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@{self.host}:{self.port}/{dbname}"

    def execute(self, sql: str, dbname: str = "postgres") -> str:
        """Run SQL through psql (admin statements; synchronous, so usable from any fixture); its output."""
        cmd = [
            str(self.bindir / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
            "-h", self.host, "-p", str(self.port), "-U", "postgres", "-d", dbname, "-c", sql,
        ]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"psql {sql!r} on {dbname}: {done.stderr.strip()}")
        return done.stdout

    def create_database(self, name: str, template: str | None = None) -> str:
        """A new database, empty (template0) or a copy of ``template``; returns its URL."""
        self.execute(f"CREATE DATABASE {_quote(name)} TEMPLATE {_quote(template or 'template0')}")
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop it, ending any connection the test left open."""
        self.execute(f"DROP DATABASE IF EXISTS {_quote(name)} WITH (FORCE)")

    def stop(self) -> None:
        """Immediate shutdown (nothing to keep), then remove the directory. Idempotent."""
        self._terminate()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def _terminate(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)  # postmaster's "immediate shutdown"
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> PgServer:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _server_user() -> pwd.struct_passwd | None:
    """The account to run the server as: ``postgres`` when we are root, else ourselves (None)."""
    if os.geteuid() != 0:
        return None
    try:
        user = pwd.getpwnam("postgres")
    except KeyError:
        raise PgUnavailable(
            f"running as root and there is no `postgres` OS user to run the server: {INSTALL_HINT}"
        ) from None
    if shutil.which("setpriv") is None:
        raise PgUnavailable("running as root and `setpriv` (util-linux) is missing to run the server as postgres")
    return user


def _as(user: pwd.struct_passwd | None, cmd: list[str], pdeathsig: bool = False) -> list[str]:
    """``cmd`` run as ``user`` through setpriv, which execs (the server is our child, not a wrapper's)."""
    if user is None:
        return cmd
    prefix = ["setpriv", f"--reuid={user.pw_name}", f"--regid={user.pw_gid}", "--init-groups"]
    if pdeathsig:
        prefix.append("--pdeathsig=SIGQUIT")  # our test run killed: the server shuts down too
    return [*prefix, "--", *cmd]


def _log_tail(workdir: Path) -> str:
    try:
        return (workdir / "postgres.log").read_text(errors="replace").strip()[-800:]
    except OSError:
        return "(no log)"
