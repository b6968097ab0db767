"""Reading `Pulumi.<stack>.yaml` files: this project's keys, which of them are secure, and where stacks live."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from components.planning.catalog import load_yaml
from components.settings.errors import NAMESPACE, Problem, StackConfigError
from components.settings.models import SECRET_KEYS


@dataclass(frozen=True)
class StackFile:
    """A `Pulumi.<stack>.yaml` as written: this project's keys (without namespace) and which are secure."""

    path: Path
    stack: str
    values: dict[str, Any]
    secure: frozenset[str]
    other: dict[str, Any]

    @property
    def source(self) -> str:
        return self.path.name


# The project directory: Pulumi.yaml and the Pulumi.<stack>.yaml files beside it.
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def stack_path(stack: str, root: Path = PROJECT_ROOT) -> Path:
    """Where the stack file of `stack` lives: `Pulumi.<stack>.yaml` in the project directory."""
    return root / f"Pulumi.{stack}.yaml"


def stack_names(root: Path = PROJECT_ROOT) -> list[str]:
    """The stacks that have a stack file in the project directory."""
    return sorted(stack_name(p) for p in root.glob("Pulumi.*.yaml"))


def stack_name(path: Path) -> str:
    name = path.name
    if name.startswith("Pulumi.") and name.endswith((".yaml", ".yml")):
        return name[len("Pulumi.") :].rsplit(".", 1)[0]
    return path.stem


def read_stack_file(path: Path) -> StackFile:
    """Read a stack file. Raises StackConfigError naming the file when it cannot be read or parsed."""
    source = path.name
    try:
        text = path.read_text()
    except OSError as exc:
        raise StackConfigError([f"{path}: cannot read the stack file: {exc.strerror}"]) from None
    try:
        doc = load_yaml(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise StackConfigError([f"{source}: is not valid YAML{where}: {getattr(exc, 'problem', exc)}"]) from None
    if not isinstance(doc, dict):
        raise StackConfigError([f"{source}: must be a mapping with a `config:` key, got {type(doc).__name__}"])
    config = doc.get("config") or {}
    if not isinstance(config, dict):
        raise StackConfigError([f"{source}: config must be a mapping of keys to values"])
    values: dict[str, Any] = {}
    other: dict[str, Any] = {}
    secure: set[str] = set()
    for full, value in config.items():
        ns, _, name = str(full).partition(":")
        if ns != NAMESPACE or not name:
            other[str(full)] = value
            continue
        if isinstance(value, dict) and set(value) == {"secure"}:
            secure.add(name)
        values[name] = value
    return StackFile(path, stack_name(path), values, frozenset(secure), other)


def plain_secret_problems(stack_file: StackFile) -> list[Problem]:
    """Secret keys written in plain text: they would sit unencrypted in git and in state."""
    return [
        Problem(key, f"is written in plain text: set it with `pulumi config set --secret {NAMESPACE}:{key} ...`")
        for key in SECRET_KEYS
        if key in stack_file.values and key not in stack_file.secure
    ]
