"""What the command line tells its user: one prefixed line on stderr, flushed at once."""

from __future__ import annotations

import sys


def say(message: str) -> None:
    print(f"totem: {message}", file=sys.stderr, flush=True)
