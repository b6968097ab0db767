"""Fixtures: the real stack files, fed to the Pulumi SDK's mocks the way the engine feeds a program."""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pulumi
import pytest

from components.settings import NAMESPACE, StackFile, read_stack_file
from components.settings.stackfile import stack_path
from components.tools.mocks import PROJECT, PlanMocks, config_map
from components.tools.plan import plan_stack
from components.tools.planned import Plan
from tests.debian import tool
from tests.engine import interrupt

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
STACKS = sorted(p.name[len("Pulumi.") : -len(".yaml")] for p in ROOT.glob("Pulumi.*.yaml"))


@functools.cache
def shipped_plan(stack: str) -> Plan:
    """The plan of a shipped stack file, made once per test session: tests read it, never change it."""
    return plan_stack(read_stack_file(stack_path(stack)))


def stack_file(stack: str) -> StackFile:
    return read_stack_file(stack_path(stack))


@pytest.fixture
def mocks() -> Iterator[PlanMocks]:
    """Fresh mocks per test: preview=False so every value is known and every check runs."""
    m = PlanMocks()
    pulumi.runtime.set_mocks(m, project=PROJECT, stack="test", preview=False)
    yield m
    pulumi.runtime.set_all_config({}, [])


def use_stack(stack: str, secrets: dict[str, str] | None = None) -> StackFile:
    """Load the real Pulumi.<stack>.yaml into the runtime's config, with these secret values set."""
    sf = stack_file(stack)
    config, secret_keys = config_map(sf)
    for key, value in (secrets or {}).items():
        config[f"{NAMESPACE}:{key}"] = value
        secret_keys.append(f"{NAMESPACE}:{key}")
    pulumi.runtime.set_all_config(config, secret_keys)
    return sf


def inputs_of(mocks: PlanMocks, typ_suffix: str, name: str) -> dict[str, Any]:
    matches = [v for (t, n), v in mocks.inputs.items() if n == name and t.endswith(typ_suffix)]
    assert len(matches) == 1, f"{typ_suffix} {name} registered {len(matches)} times"
    return matches[0]


# Debian's monitoring tools, run for real (installed when missing: tests/debian.py).
@pytest.fixture(scope="module")
def promtool() -> str:
    return tool("promtool", "prometheus")


@pytest.fixture(scope="module")
def prometheus() -> str:
    return tool("prometheus", "prometheus")


@pytest.fixture(scope="module")
def node_exporter() -> str:
    return tool("prometheus-node-exporter", "prometheus-node-exporter")


@pytest.fixture(scope="module")
def amtool() -> str:
    return tool("amtool", "prometheus-alertmanager")


def git_repo_with(tmp_path: Path, *names: str) -> Path:
    """A git repository holding this project's code, its monitoring files and these stack files, one commit."""
    import shutil
    import subprocess

    repo = tmp_path / "repo"
    repo.mkdir()
    for name in ("components", "monitoring", "Pulumi.yaml", *names):
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, repo / name)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run([*git, "add", "-A"], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-qm", "base"], cwd=repo, check=True)
    return repo


# The order modules are handed to the two workers (pyproject: --dist loadscope --no-loadscope-reorder). The browser
# test goes first and the Docker engine tests last, so they never run at the same time: an engine adds and removes
# bridges and veth links, and Chromium drops every request in flight when the machine's network changes
# (net::ERR_NETWORK_CHANGED). Everything else keeps its order in between.
FIRST_MODULES = ("test_chat_ui_browser.py",)
LAST_MODULES = ("test_engine.py", "test_engine_fleet.py", "test_interrupt.py")


def pytest_configure(config: pytest.Config) -> None:
    """SIGTERM and SIGINT stop what the run started, in the controller and in each worker (tests/engine/interrupt.py)."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        role = "worker"
    elif getattr(config.option, "numprocesses", None) and getattr(config.option, "dist", "no") != "no":
        role = "controller"
    else:
        role = "single"
    interrupt.install(role)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        name = item.path.name
        return 0 if name in FIRST_MODULES else 2 if name in LAST_MODULES else 1

    items.sort(key=rank)
