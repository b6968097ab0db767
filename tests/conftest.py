"""Fixtures: the real stack files, fed to the Pulumi SDK's mocks the way the engine feeds a program."""

from __future__ import annotations

import functools
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
