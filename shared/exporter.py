"""Prometheus exposition for the processes that are not Dramatiq pools (scheduler, relay): a registry of
their own on a port of their own. A taken port is logged and the process goes on: metrics never stop work."""

from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry, start_http_server


def export_metrics(registry: CollectorRegistry, port: int, process: str) -> None:
    log = logging.getLogger(f"totem.{process}")
    try:
        start_http_server(port, registry=registry)
        log.info("%s metrics on :%s", process, port)
    except OSError as exc:
        log.warning("%s metrics not exported", process, extra={"port": port, "error": str(exc)})
