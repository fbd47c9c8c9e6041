"""``totem chaos``: SPEC's guarantees tried all at once under a realistic load while processes are killed,
servers restarted, Stripe misbehaves and a webhook receiver fails (``run.py`` for the order of a run,
``load.py`` the clients, ``faults.py`` what is broken, ``receiver.py`` the flaky endpoint,
``invariants.py`` what is checked)."""
