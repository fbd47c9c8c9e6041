"""A provider's webhook endpoint that misbehaves: a real local HTTP server that answers some deliveries 500,
some 503 with ``Retry-After``, and holds some past the sender's timeout before answering 200 (so the sender
records a failure for a message that did arrive, the case Standard Webhooks' ``webhook-id`` exists for).

What it did is counted (``faults``), and every message is kept by its ``webhook-id`` with what the receiver
answered, so the checker can tell a redelivery of one message (allowed: same id) from two messages for one
event (a duplicate notification)."""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class FlakyReceiver:
    def __init__(self, seed: int, *, timeout_seconds: float, fail_rate: float = 0.2, slow_rate: float = 0.1) -> None:
        self.rng = random.Random(seed)  # noqa: S311 - a repeatable fault schedule, not a secret
        self.fail_rate, self.slow_rate, self.timeout_seconds = fail_rate, slow_rate, timeout_seconds
        self.flaky = True  # off while the run settles: what is still retried then gets through
        self.lock = threading.Lock()
        self.faults: Counter[str] = Counter()
        self.messages: dict[str, list[dict[str, Any]]] = {}  # webhook-id → every arrival
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                status, delay = receiver._decide()
                if delay:
                    time.sleep(delay)
                with receiver.lock:
                    receiver.messages.setdefault(self.headers.get("webhook-id", ""), []).append(
                        {"answered": status, "late": bool(delay), "body": body.decode(errors="replace")})
                try:
                    self.send_response(status)
                    if status == 503:
                        self.send_header("Retry-After", "1")
                    self.end_headers()
                    self.wfile.write(b"ok" if status < 300 else b"receiver says no")
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the sender gave up waiting (a timeout we provoked): exactly the point

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def _decide(self) -> tuple[int, float]:
        with self.lock:
            if not self.flaky:
                return 200, 0.0
            roll = self.rng.random()
            if roll < self.fail_rate * 0.75:
                self.faults["receiver_500"] += 1
                return 500, 0.0
            if roll < self.fail_rate:
                self.faults["receiver_503"] += 1
                return 503, 0.0
            if roll < self.fail_rate + self.slow_rate:
                self.faults["receiver_timeout"] += 1
                return 200, self.timeout_seconds + 0.5
            return 200, 0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks"

    def events_by_id(self) -> dict[str, dict[str, Any]]:
        """Each message id with the event it carried (its body: ``type``, ``data``) and every arrival of it
        (``answered``: what the receiver said)."""
        with self.lock:
            return {msg_id: {**json.loads(arrivals[0]["body"]), "arrivals": [
                {"answered": a["answered"], "late": a["late"]} for a in arrivals]}
                for msg_id, arrivals in self.messages.items() if msg_id}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
