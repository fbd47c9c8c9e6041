"""The wiring between the parts: one registry, one error vocabulary, one-way imports, no cycles.

Each test fails when a concept gets a second declaration that disagrees with the first.
"""

from __future__ import annotations

import ast
import asyncio
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from psycopg_pool import PoolTimeout

from shared.db import SQL_DIR, with_reconnect
from shared.errors import VOCABULARY, Code, DomainError
from shared.registry import JOB_TYPES, POOLS
from tests.support import ROOT
from totem.generate import CODES_BEGIN, CODES_END, stale_files

PACKAGES = ("gateway", "workers", "shared", "totem", "bench")


def test_generated_deployment_files_and_the_readme_codes_match_their_sources() -> None:
    stale = stale_files()
    assert not stale, "run `./dev totem generate`:\n" + "\n".join(stale.values())


def test_every_pool_is_a_process_type_in_procfile_compose_and_kubernetes() -> None:
    procfile = dict(line.split(": ", 1) for line in (ROOT / "Procfile").read_text().splitlines()
                    if line and not line.startswith("#"))
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    manifests = list(yaml.safe_load_all((ROOT / "deploy/k8s/totem.yaml").read_text()))
    deployments = {m["metadata"]["name"]: m for m in manifests if m["kind"] == "Deployment"}
    scaled = {m["metadata"]["name"]: m for m in manifests if m["kind"] == "ScaledObject"}
    for pool in POOLS:
        assert procfile[pool.name] == f"totem worker {pool.name}"
        assert compose[pool.name]["command"] == ["totem", "worker", pool.name]
        container = deployments[f"totem-{pool.name}"]["spec"]["template"]["spec"]["containers"][0]
        assert container["command"] == ["totem", "worker", pool.name]
        assert scaled[f"totem-{pool.name}"]["spec"]["triggers"][0]["metadata"]["listName"] == f"totem:{pool.queue}"
    pools = {pool.name for pool in POOLS}
    assert pools | {"web", "scheduler", "relay", "release"} == set(procfile)
    assert {f"totem-{name}" for name in pools} == set(scaled)


# What a process needs in its environment to import (it never connects to these).
UNUSED_SERVERS = {**os.environ, "DATABASE_URL": "postgresql://unused", "REDIS_URL": "redis://unused",
                  "SYSTEM_TOKEN": "wiring-system-token", "TOKEN_SECRET": "wiring-token-secret"}


def _actors_declared_by(module: str) -> list[list[str]]:
    code = (f"import dramatiq, json, {module}\n"
            "print(json.dumps(sorted([a.queue_name, a.actor_name] for a in dramatiq.get_broker().actors.values())))")
    out = subprocess.run([sys.executable, "-c", code], env=UNUSED_SERVERS, cwd=ROOT, capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


@pytest.mark.parametrize("pool", POOLS, ids=lambda pool: pool.name)
def test_each_pool_module_declares_exactly_its_registered_actors(pool: Any) -> None:
    registered = sorted([JOB_TYPES[name].queue, actor] for name, actor in pool.jobs.items())
    assert _actors_declared_by(pool.module) == registered


def test_no_sql_names_a_job_type_queue_or_actor() -> None:
    """Statements that stage jobs take type, queue and actor as parameters, from the registry."""
    names = {n for job in JOB_TYPES.values() for n in (job.name, job.queue, job.actor)}
    for path in [*sorted((SQL_DIR / "queries").glob("*.sql")), SQL_DIR / "migrations/0005_payout_jobs_index.sql"]:
        literals = set(re.findall(r"'([a-z_.]+)'", path.read_text()))
        assert not literals & names, f"{path.name} spells out {sorted(literals & names)}"


def _imports(path: Path, module: str) -> set[str]:
    """Every project module ``module`` imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)  # `from package import submodule` is narrowed to the submodule below
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in found if name.split(".")[0] in PACKAGES and name != module}


def _narrow(imported: set[str], modules: set[str]) -> set[str]:
    """Drop a package when what was imported from it is one of its submodules."""
    return {name for name in imported
            if name in modules and not any(other.startswith(name + ".") for other in imported & modules)}


def _project_graph() -> dict[str, set[str]]:
    modules = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return {module: _narrow(_imports(path, module), set(modules)) for module, path in modules.items()}


def test_no_import_cycles_anywhere_in_the_project() -> None:
    graph = _project_graph()
    cycles: list[list[str]] = []
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        if module in path:
            cycles.append([*path[path.index(module):], module])
            return
        if module in done:
            return
        for imported in sorted(graph[module]):
            visit(imported, [*path, module])
        done.add(module)

    for module in sorted(graph):
        visit(module, [])
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(cycle) for cycle in cycles)


def test_imports_run_one_way() -> None:
    """gateway -> shared and workers -> shared; shared imports neither edge; the edges never each other."""
    for module, imported in _project_graph().items():
        top = module.split(".")[0]
        tops = {name.split(".")[0] for name in imported}
        forbidden = {"shared": {"gateway", "workers", "totem", "bench"}, "gateway": {"workers", "totem", "bench"},
                     "workers": {"gateway", "totem", "bench"}}.get(top, set())
        assert not tops & forbidden, f"{module} imports {sorted(tops & forbidden)}"


def _loaded_after(statement: str) -> set[str]:
    code = f"import json, sys\n{statement}\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], env=UNUSED_SERVERS, cwd=ROOT, capture_output=True, text=True,
                         check=True)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize("pool", POOLS, ids=lambda pool: pool.name)
def test_a_worker_process_loads_no_http_framework_and_no_gateway(pool: Any) -> None:
    loaded = _loaded_after(f"import {pool.module}")
    assert not {m for m in loaded if m.split(".")[0] in ("litestar", "gateway", "uvicorn")}
    assert not {m for m in loaded if m.startswith("workers.") and m not in (pool.module, "workers.runtime")}


def test_the_scheduler_loads_no_http_framework_and_no_worker_module() -> None:
    loaded = _loaded_after("import workers.scheduler")
    assert not {m for m in loaded if m.split(".")[0] in ("litestar", "gateway")}
    assert not {m for m in loaded if m.startswith("workers.") and m != "workers.scheduler"}


def test_the_gateway_loads_no_worker_module() -> None:
    loaded = _loaded_after("import gateway.app; gateway.app.create_app()")
    assert not {m for m in loaded if m.split(".")[0] == "workers"}


def test_every_code_is_declared_once_with_a_status_and_a_meaning() -> None:
    assert set(VOCABULARY) == set(Code)
    for code, spec in VOCABULARY.items():
        assert code.value == code.name and 400 <= spec.status < 600 and spec.meaning.endswith(".")
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index(CODES_BEGIN):readme.index(CODES_END)]
    assert set(re.findall(r"^\| `([A-Z_]+)` \|", table, re.M)) == {code.value for code in Code}


def test_a_domain_error_without_a_declared_code_cannot_be_defined() -> None:
    with pytest.raises(TypeError):
        type("Undeclared", (DomainError,), {})
    with pytest.raises(TypeError):
        type("FreeString", (DomainError,), {"code": "SOMETHING_ELSE"})


def test_no_error_code_is_spelled_as_a_free_string_in_the_code() -> None:
    """Codes are used as ``Code.X``; a quoted code outside shared/errors.py would be a second declaration."""
    pattern = re.compile(r"[\"'](" + "|".join(code.value for code in Code) + r")[\"']")
    for package in ("gateway", "workers", "shared", "totem"):
        for path in (ROOT / package).rglob("*.py"):
            if path != ROOT / "shared/errors.py":
                assert not pattern.search(path.read_text()), f"{path} spells an error code as a string"


def test_a_saturated_pool_is_not_retried_as_if_the_connection_were_dead() -> None:
    calls = 0

    async def saturated() -> None:
        nonlocal calls
        calls += 1
        raise PoolTimeout("couldn't get a connection after 5.00 sec")

    with pytest.raises(PoolTimeout):
        asyncio.run(with_reconnect(saturated))
    assert calls == 1

