"""The one launcher: start, wait for, stop and clean up the fleet's processes.

``totem up``, the test suite and the bench all start processes through ``Fleet``, so each process type is
started one way everywhere: ``python -m totem.cli <subcommand>`` with the fleet's environment, its output
in ``<log_dir>/<name>.log``, in a session of its own (so a crash or SIGKILL of the group takes its
children too). The worker pools come from the registry (``shared/registry.py``).

Ports are fixed when the fleet is made, before any process starts: the fake Stripe posts its webhooks to
the gateway and the workers call the fake, so every process must know both addresses up front.

Stopping is graceful: SIGTERM to each process group's leader only (a Dramatiq master, uvicorn's supervisor
or the scheduler stops its own children; Dramatiq takes a second SIGTERM to a child as "kill now"), then
SIGKILL for whatever is still alive after the timeout. With a ``run_dir`` each process leaves a PID file,
so the next run stops what a crashed one left behind (``reap_stale``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from shared.registry import POOL_BY_NAME, POOLS
from totem.embedded import free_port, pid_alive

TOTEM = (sys.executable, "-m", "totem.cli")


def wait_ready(url: str, timeout: float = 60) -> bool:
    """Poll ``url`` until it answers 200, or give up after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - our own http://127.0.0.1 URL
                if response.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.1)
    return False


def wait_listening(port: int, timeout: float = 30) -> bool:
    """Poll until something accepts TCP connections on 127.0.0.1:``port``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            sock.settimeout(1)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.1)
    return False


def _terminate(pid: int, timeout: float) -> None:
    """SIGTERM the leader, wait, then SIGKILL the whole group."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


class FleetError(RuntimeError):
    """A process did not start or become ready; the message says which log to read."""


@dataclass
class Fleet:
    env: dict[str, str]
    log_dir: Path
    run_dir: Path | None = None
    fake_stripe: bool = True
    mail_dir: Path | None = None  # with no SMTP_URL: run the SMTP sink, keeping each message here as .eml
    host: str = "127.0.0.1"  # where the gateway listens (totem up: every interface)
    well_known_ports: bool = False  # metrics on 9191, 9192, ... and 9200 when free (totem up); else any free port
    gateway_port: int = 0
    stripe_port: int = 0
    smtp_port: int = 0
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    commands: dict[str, tuple[tuple[str, ...], dict[str, str]]] = field(default_factory=dict)
    metrics_ports: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        if self.run_dir is not None:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        self.gateway_port = self.gateway_port or free_port()
        self.env = {**self.env, "PORT": str(self.gateway_port)}
        if self.fake_stripe:  # no Stripe account: the local fake stands in, its webhooks come to our gateway
            self.stripe_port = self.stripe_port or free_port()
            self.env.update(STRIPE_API_BASE=self.stripe_url, FAKE_STRIPE_PORT=str(self.stripe_port))
            self.env.setdefault("FAKE_STRIPE_WEBHOOK_URL", f"{self.base_url}/v1/webhooks/stripe")
        if self.mail_dir is not None and not self.env.get("SMTP_URL"):
            self.smtp_port = self.smtp_port or free_port()
            self.env["SMTP_URL"] = f"smtp://127.0.0.1:{self.smtp_port}"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    @property
    def stripe_url(self) -> str:
        return f"http://127.0.0.1:{self.stripe_port}" if self.fake_stripe else ""

    def start(self, name: str, *args: str, **extra_env: str) -> subprocess.Popen[bytes]:
        """Run ``totem <args>`` as process ``name``."""
        with open(self.log_dir / f"{name}.log", "ab") as log:  # the child keeps its own copy of the descriptor
            proc = subprocess.Popen([*TOTEM, *args], env={**self.env, **extra_env}, stdout=log,  # noqa: S603
                                    stderr=subprocess.STDOUT, start_new_session=True)
        if self.run_dir is not None:
            (self.run_dir / f"{name}.pid").write_text(str(proc.pid))
        self.procs[name] = proc
        self.commands[name] = (args, extra_env)
        return proc

    def restart(self, name: str) -> subprocess.Popen[bytes]:
        """Start process ``name`` again as it was started, after killing what is left of its process group
        (a pool's worker processes may outlive their master)."""
        old = self.procs.pop(name)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(old.pid, signal.SIGKILL)
        old.wait()
        args, extra_env = self.commands[name]
        return self.start(name, *args, **extra_env)

    def _await(self, name: str, url: str, timeout: float) -> None:
        if not wait_ready(url, timeout):
            raise FleetError(f"{name} did not become ready at {url}; see {self.log_dir / f'{name}.log'}")

    def start_fake_stripe(self) -> str:
        if self.fake_stripe and "fake-stripe" not in self.procs:
            self.start("fake-stripe", "fake-stripe", "--port", str(self.stripe_port))
            self._await("fake-stripe", f"{self.stripe_url}/_fake/health", 30)
        return self.stripe_url

    def start_smtp_sink(self) -> str | None:
        """The local SMTP sink (when this fleet has a mail folder and no SMTP_URL of its own)."""
        if self.smtp_port and self.mail_dir is not None and "smtp-sink" not in self.procs:
            self.start("smtp-sink", "smtp-sink", "--port", str(self.smtp_port), "--dir", str(self.mail_dir))
            if not wait_listening(self.smtp_port, 30):
                raise FleetError(f"smtp-sink did not listen on {self.smtp_port}; see {self.log_dir / 'smtp-sink.log'}")
        return self.env.get("SMTP_URL")

    def start_relay(self, name: str = "relay") -> None:
        self.metrics_ports[name] = self._port(9201)
        self.start(name, "relay", RELAY_METRICS_PORT=str(self.metrics_ports[name]))

    def start_gateway(self, workers: int = 1, *, name: str = "web", ready: str = "/healthz") -> str:
        """The gateway (and the fake Stripe before it); waits until ``ready`` answers."""
        self.start_fake_stripe()
        self.start(name, "gateway", "--host", self.host, "--port", str(self.gateway_port),
                   "--workers", str(workers))
        self._await(name, self.base_url + ready, 60)
        return self.base_url

    def start_worker(self, pool: str = "bookings", name: str | None = None, *, processes: int | None = None,
                     threads: int | None = None) -> None:
        """One worker pool from the registry, exporting its metrics on a port of its own. Its size is the
        one given here, else what ``totem worker`` reads (``<POOL>_THREADS``, ``WORKER_THREADS``, the
        registry's)."""
        name = name or POOL_BY_NAME[pool].name
        self.metrics_ports[name] = self._port(9191 + len(self.metrics_ports))
        size = [f"--processes={processes}"] if processes else []
        size += [f"--threads={threads}"] if threads else []
        self.start(name, "worker", pool, *size, WORKER_METRICS_PORT=str(self.metrics_ports[name]))

    def start_scheduler(self, name: str = "scheduler", metrics_port: int | None = None) -> None:
        self.metrics_ports[name] = metrics_port or self._port(9200)
        self.start(name, "scheduler", SCHEDULER_METRICS_PORT=str(self.metrics_ports[name]))

    def start_all(self, *, web_workers: int = 1, threads: int | None = None) -> str:
        """The whole fleet: the SMTP sink and fake Stripe (if used), gateway, every registered pool, the
        scheduler and the relay; waits for ``/readyz``."""
        self.start_smtp_sink()
        self.start_gateway(web_workers, ready="/healthz")
        for pool in POOLS:
            self.start_worker(pool.name, threads=threads)
        self.start_scheduler()
        self.start_relay()
        self._await("web", self.base_url + "/readyz", 60)
        return self.base_url

    def kill(self, name: str, sig: int) -> None:
        """SIGKILL hits the whole process group (a crash); SIGTERM only the leader (as a supervisor does).
        A process still alive 40 s after SIGTERM is killed, group and all, rather than left running."""
        proc = self.procs[name]
        if sig == signal.SIGKILL:
            os.killpg(proc.pid, sig)
        else:
            os.kill(proc.pid, sig)
        try:
            proc.wait(40)
        except subprocess.TimeoutExpired:
            _terminate(proc.pid, timeout=1)
            proc.wait(5)
        del self.procs[name]
        self._forget(name)

    def exited(self) -> dict[str, int]:
        return {name: code for name, proc in self.procs.items() if (code := proc.poll()) is not None}

    def stop(self, timeout: float = 40) -> None:
        """Graceful: every leader gets SIGTERM at once (in-flight jobs finish); stragglers are killed."""
        for proc in self.procs.values():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for name, proc in list(self.procs.items()):
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _terminate(proc.pid, timeout=1)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # children left behind by a leader that died hard
            self._forget(name)
        self.procs.clear()

    def reap_stale(self) -> list[str]:
        """Stop processes a crashed earlier run left running (their PID files are still in ``run_dir``)."""
        if self.run_dir is None:
            return []
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

    def log(self, name: str) -> str:
        path = self.log_dir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def _port(self, preferred: int) -> int:
        return free_port(preferred if self.well_known_ports else None)

    def _forget(self, name: str) -> None:
        if self.run_dir is not None:
            (self.run_dir / f"{name}.pid").unlink(missing_ok=True)
