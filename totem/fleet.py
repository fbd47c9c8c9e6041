"""Supervise the fleet's processes for ``totem up``: start each with its log file and PID file, stop them
all on exit, and clean up what a crashed earlier run left behind."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from totem.embedded import pid_alive


def _terminate(pid: int, timeout: float) -> None:
    """SIGTERM the process group's leader only: a Dramatiq master, uvicorn's supervisor or the scheduler
    stops its own children gracefully (Dramatiq takes a second SIGTERM to a child as "kill now"). What is
    still alive after ``timeout`` is SIGKILLed, group and all."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


@dataclass
class Fleet:
    run_dir: Path
    log_dir: Path
    env: dict[str, str]
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)

    def reap_stale(self) -> list[str]:
        """Stop processes a crashed earlier ``totem up`` left running (their PID files are still here)."""
        reaped = []
        for pid_file in self.run_dir.glob("*.pid"):
            try:
                pid = int(pid_file.read_text().strip())
            except ValueError:
                pid = 0
            if pid and pid_alive(pid):
                _terminate(pid, timeout=10)
                reaped.append(pid_file.stem)
            pid_file.unlink(missing_ok=True)
        return reaped

    def start(self, name: str, argv: list[str], **extra_env: str) -> subprocess.Popen[bytes]:
        log = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 - the child owns it for its life
        proc = subprocess.Popen(argv, env={**self.env, **extra_env}, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        (self.run_dir / f"{name}.pid").write_text(str(proc.pid))
        self.procs[name] = proc
        return proc

    def exited(self) -> dict[str, int]:
        return {name: code for name, proc in self.procs.items() if (code := proc.poll()) is not None}

    def stop(self, timeout: float = 40) -> None:
        """Graceful: every leader gets SIGTERM at once (in-flight jobs finish); stragglers are killed."""
        for proc in self.procs.values():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for name, proc in self.procs.items():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _terminate(proc.pid, timeout=1)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # children left behind by a leader that died hard
            (self.run_dir / f"{name}.pid").unlink(missing_ok=True)
