"""The dashboard and the alert rules against a real Prometheus (Debian's `prometheus`, installed by ./dev):
it scrapes a running fleet (gateway, two pools, scheduler, relay); every panel's query returns data; every
alert rule loads and evaluates without error, and the leader alert fires when the scheduler is stopped."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.support import ROOT, api_client, future, make_catalog, new_key, wait_for, wait_job
from totem.embedded import free_port
from totem.fleet import Fleet

OBSERVABILITY = ROOT / "deploy" / "observability"


def _panels() -> list[tuple[str, str]]:
    dashboard = json.loads((OBSERVABILITY / "grafana-dashboard.json").read_text())
    return [(panel["title"], target["expr"]) for panel in dashboard["panels"] for target in panel["targets"]]


def test_the_alert_rules_pass_promtool() -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool missing: ./dev installs Debian's prometheus package"
    checked = subprocess.run([promtool, "check", "rules", str(OBSERVABILITY / "prometheus-alerts.yml")],
                             capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr


class Prometheus:
    def __init__(self, tmp: Path, targets: dict[str, tuple[str, str]]) -> None:
        rules = yaml.safe_load((OBSERVABILITY / "prometheus-alerts.yml").read_text())
        for group in rules["groups"]:
            for rule in group["rules"]:
                rule["for"] = "0s"  # forced conditions fire at once here
        (tmp / "rules.yml").write_text(yaml.safe_dump(rules))
        config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                  "rule_files": [str(tmp / "rules.yml")],
                  "scrape_configs": [{"job_name": name, "metrics_path": path, "static_configs": [{"targets": [target]}]}
                                     for name, (target, path) in targets.items()]}
        (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        binary = shutil.which("prometheus")
        assert binary, "prometheus missing: ./dev installs Debian's prometheus package"
        self.log = (tmp / "prometheus.log").open("wb")
        argv = [binary, f"--config.file={tmp / 'prometheus.yml'}", f"--storage.tsdb.path={tmp / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.port}"]
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT)

    def api(self, path: str, **params: str) -> Any:
        response = httpx.get(f"{self.url}/api/v1/{path}", params=params, timeout=5)
        body = response.json()
        assert body["status"] == "success", body
        return body["data"]

    def ready(self) -> bool:
        try:
            return httpx.get(f"{self.url}/-/ready", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(30)
        self.log.close()


@pytest.fixture
def scraped_fleet(fault_fleet: Fleet, isolated_database_url: str, tmp_path: Path) -> Iterator[tuple[Fleet, Prometheus]]:
    catalog = make_catalog(isolated_database_url)
    fault_fleet.start_smtp_sink()
    base = fault_fleet.start_gateway()
    fault_fleet.start_worker()
    fault_fleet.start_worker("notifications")
    fault_fleet.start_scheduler()
    fault_fleet.start_relay()
    with api_client(base) as client:  # some traffic, so every counter and histogram has samples
        for days in (80, 81, 82):
            accepted = client.post("/v1/bookings", json=catalog.slot_body(future(days=days)),
                                   headers={"Idempotency-Key": new_key(), **catalog.widget})
            assert wait_job(client, accepted.json()["job_id"], headers=catalog.widget)["status"] == "succeeded"
    ports = fault_fleet.metrics_ports
    targets = {"web": (base.removeprefix("http://"), "/metrics"),
               "bookings": (f"127.0.0.1:{ports['bookings']}", "/"),
               "notifications": (f"127.0.0.1:{ports['notifications']}", "/"),
               "scheduler": (f"127.0.0.1:{ports['scheduler']}", "/metrics"),
               "relay": (f"127.0.0.1:{ports['relay']}", "/metrics")}
    prometheus = Prometheus(tmp_path, targets)
    try:
        wait_for(prometheus.ready, 30, "Prometheus ready")
        wait_for(lambda: {t["health"] for t in prometheus.api("targets")["activeTargets"]} == {"up"}, 30,
                 "every target scraped")
        yield fault_fleet, prometheus
    finally:
        prometheus.stop()


def test_every_panel_returns_data_and_every_rule_evaluates_and_the_leader_alert_fires(
        scraped_fleet: tuple[Fleet, Prometheus]) -> None:
    fleet, prometheus = scraped_fleet
    for title, expr in _panels():
        wait_for(lambda e=expr: prometheus.api("query", query=e)["result"], 30, f"data for panel {title!r}: {expr}")

    def evaluated() -> list[dict[str, Any]] | None:
        rules = [rule for group in prometheus.api("rules")["groups"] for rule in group["rules"]]
        return rules if rules and all(rule.get("lastEvaluation", "").startswith("20") for rule in rules) else None

    rules = wait_for(evaluated, 30, "every rule evaluated")
    assert {rule["name"] for rule in rules} == {
        "TotemOutboxLagHigh", "TotemDeadDeliveries", "TotemJobsFailing", "TotemNoSchedulerLeader",
        "TotemQueueDepthGrowing", "TotemRateLimiterFailingOpen"}
    assert all(rule["health"] == "ok" for rule in rules), [(r["name"], r.get("lastError")) for r in rules]
    firing = {a["labels"]["alertname"] for a in prometheus.api("alerts")["alerts"] if a["state"] == "firing"}
    assert "TotemNoSchedulerLeader" not in firing

    fleet.kill("scheduler", signal.SIGTERM)  # no leader now
    wait_for(lambda: any(a["labels"]["alertname"] == "TotemNoSchedulerLeader" and a["state"] == "firing"
                         for a in prometheus.api("alerts")["alerts"]), 30, "the no-leader alert firing")
