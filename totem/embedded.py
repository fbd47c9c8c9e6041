"""Private Postgres and Redis servers under a data folder, started from the system's binaries.

Used by ``totem up`` (the embedded default) and by fault tests that must break servers of their own.
A server already running on the data folder (a previous ``totem up`` that crashed) is adopted, not
duplicated; a stale PID file is ignored. When running as root, Postgres runs as the ``postgres`` user
(it refuses root).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path


class ServerError(RuntimeError):
    pass


def free_port(preferred: int | None = None) -> int:
    for port in ([preferred] if preferred else []) + [0]:
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is free; a listener is not
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    raise ServerError("no free TCP port")


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def pg_bindir() -> Path:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]))
    if candidates:
        return Path(candidates[-1])
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).parent
    raise ServerError("PostgreSQL server binaries not found: apt-get install postgresql (or run ./dev up)")


def _as_postgres_user() -> list[str]:
    if os.geteuid() != 0:
        return []
    return ["runuser", "-u", "postgres", "--"]


def _chown_for_postgres(path: Path) -> None:
    if os.geteuid() == 0:
        entry = pwd.getpwnam("postgres")
        os.chown(path, entry.pw_uid, entry.pw_gid)


def _let_postgres_reach(path: Path) -> list[Path]:
    """As root, Postgres runs as `postgres`, which must traverse every parent of the data folder
    (root's home and pytest's temp folders are 0700): grant search (o+x) only, never listing."""
    if os.geteuid() != 0:
        return []
    granted = []
    for parent in path.resolve().parents:
        mode = parent.stat().st_mode
        if not mode & 0o001:
            os.chmod(parent, mode | 0o001)
            granted.append(parent)
    return granted


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class PrivatePostgres:
    root: Path
    preferred_port: int | None = None
    port: int = 0
    granted: list[Path] = field(default_factory=list)

    @property
    def pgdata(self) -> Path:
        return self.root / "postgres"

    @property
    def log_file(self) -> Path:
        return self.root / "postgres.log"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([*_as_postgres_user(), *args], capture_output=True, text=True)  # noqa: S603 - our own argv, from the system's server binaries
        if check and result.returncode != 0:
            raise ServerError(f"{Path(args[0]).name} failed: {(result.stderr or result.stdout).strip()}")
        return result

    def running_port(self) -> int | None:
        pid_file = self.pgdata / "postmaster.pid"
        if not pid_file.exists():
            return None
        lines = pid_file.read_text().splitlines()
        if len(lines) >= 4 and lines[0].isdigit() and pid_alive(int(lines[0])) and _port_open(int(lines[3])):
            return int(lines[3])
        return None

    def start(self, port: int | None = None) -> PrivatePostgres:
        """Start (or adopt) the server; ``port`` restarts it on a known port (a probe bind would fail
        while the old socket is in TIME_WAIT, and Postgres itself sets SO_REUSEADDR)."""
        self.root.mkdir(parents=True, exist_ok=True)
        _chown_for_postgres(self.root)
        self.granted = _let_postgres_reach(self.root)
        bindir = pg_bindir()
        if not (self.pgdata / "PG_VERSION").exists():
            self._run(str(bindir / "initdb"), "-D", str(self.pgdata), "-U", "postgres", "--auth=trust",
                      "-E", "UTF8", "--locale=C.UTF-8", "--no-sync")
        adopted = self.running_port()
        if adopted:
            self.port = adopted
            return self
        self.port = port or free_port(self.preferred_port)
        options = (f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories='{self.pgdata}' "
                   "-c max_connections=300 -c shared_buffers=256MB -c fsync=on")
        if not self.log_file.exists():
            self.log_file.touch()
        _chown_for_postgres(self.log_file)
        result = self._run(str(bindir / "pg_ctl"), "-D", str(self.pgdata), "-l", str(self.log_file),
                           "-o", options, "-w", "-t", "60", "start", check=False)
        if result.returncode != 0:
            raise ServerError(f"postgres did not start (see {self.log_file}): {result.stderr.strip()}")
        return self

    def stop(self, mode: str = "fast") -> None:
        if self.running_port() is None:
            return
        self._run(str(pg_bindir() / "pg_ctl"), "-D", str(self.pgdata), "-m", mode, "-w", "stop", check=False)

    def kill(self) -> None:
        """SIGKILL the postmaster, as a crash would (tests)."""
        pid_file = self.pgdata / "postmaster.pid"
        if pid_file.exists():
            os.kill(int(pid_file.read_text().splitlines()[0]), signal.SIGKILL)


@dataclass
class PrivateRedis:
    root: Path
    preferred_port: int | None = None
    port: int = 0

    @property
    def dir(self) -> Path:
        return self.root / "redis"

    @property
    def pid_file(self) -> Path:
        return self.dir / "redis.pid"

    @property
    def port_file(self) -> Path:
        return self.dir / "port"

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def running_pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
            port = int(self.port_file.read_text().strip())
        except (OSError, ValueError):
            return None
        if pid_alive(pid) and _port_open(port):
            self.port = port
            return pid
        return None

    def start(self, port: int | None = None) -> PrivateRedis:
        binary = shutil.which("redis-server")
        if binary is None:
            raise ServerError("redis-server not found: apt-get install redis-server (or run ./dev up)")
        self.dir.mkdir(parents=True, exist_ok=True)
        if port is None and self.running_pid():
            return self
        self.port = port or free_port(self.preferred_port)
        subprocess.run([binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir),  # noqa: S603 - our own argv, from the system's server binaries
                        "--daemonize", "yes", "--pidfile", str(self.pid_file),
                        "--logfile", str(self.dir / "redis.log"), "--save", "", "--appendonly", "no"],
                       check=True, capture_output=True)
        self.port_file.write_text(str(self.port))
        deadline = time.monotonic() + 20
        while not _port_open(self.port):
            if time.monotonic() > deadline:
                raise ServerError(f"redis did not start (see {self.dir / 'redis.log'})")
            time.sleep(0.05)
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        pid = self.running_pid()
        if pid is None:
            return
        os.kill(pid, sig)
        deadline = time.monotonic() + 10
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.pid_file.unlink(missing_ok=True)
