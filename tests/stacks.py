"""Stack config values for table-driven and property tests, built from the real stack files."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import yaml

from components.planning.chat_ui import contradictions as chat_ui_contradictions
from components.planning.engines import check_stack
from components.planning.rules import ServerContext, server_contexts
from components.settings import LoadedStack, StackConfigError, StackSettings, read_stack_file, validate
from components.tools.plan import plan_stack
from components.tools.planned import Plan
from tests.conftest import stack_file


def values_of(stack: str) -> dict[str, Any]:
    return copy.deepcopy(stack_file(stack).values)


def set_key(values: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    """Set `vllm.port` or `host.gpus[0].render` in a copy of values."""
    out = copy.deepcopy(values)
    parts = [p for p in re.split(r"\.|\[(\d+)\]", key) if p]
    node: Any = out
    for part in parts[:-1]:
        node = node[int(part)] if part.isdigit() else node.setdefault(part, {})
    last = parts[-1]
    if last.isdigit():
        node[int(last)] = value
    else:
        node[last] = value
    return out


def plan_values(
    values: dict[str, Any], where: Path, secure: dict[str, Any] | None = None, stack: str = "variant"
) -> Plan:
    """Plan these stack values, written to where/Pulumi.<stack>.yaml; `secure` values as the stack file holds
    them (`{"secure": "v1:..."}`)."""
    config = {f"rocm-inference:{k}": v for k, v in values.items()}
    config |= {f"rocm-inference:{k}": v for k, v in (secure or {}).items()}
    where.mkdir(parents=True, exist_ok=True)
    path = where / f"Pulumi.{stack}.yaml"
    path.write_text(yaml.safe_dump({"config": config}, sort_keys=False))
    return plan_stack(read_stack_file(path))


def load(values: dict[str, Any], secrets: tuple[str, ...] = (), source: str = "Pulumi.test.yaml") -> LoadedStack:
    return validate(values, secrets, source, (check_stack, chat_ui_contradictions))


def errors(values: dict[str, Any], secrets: tuple[str, ...] = ()) -> list[str]:
    try:
        load(values, secrets)
    except StackConfigError as exc:
        return exc.lines
    return []


def vllm_context(s: StackSettings) -> ServerContext:
    """The single-host form's one server, with its host, as the rules see it."""
    return server_contexts(s)["vllm"]
