"""The stack's config as the Pulumi engine hands it to the program: the settings package's one pulumi import."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi

from components.settings.errors import NAMESPACE
from components.settings.models import CONFIG_KEYS, SECRET_KEYS
from components.settings.stackfile import StackFile, plain_secret_problems, read_stack_file
from components.settings.validate import Check, LoadedStack, validate


@dataclass(frozen=True)
class Secrets:
    """The secret config values, as Outputs marked secret; None where unset."""

    hf_token: pulumi.Output[str] | None = None
    vllm_api_key: pulumi.Output[str] | None = None
    embeddings_api_key: pulumi.Output[str] | None = None
    ssh_private_key: pulumi.Output[str] | None = None


def load_from_pulumi(
    stack_file: Path, extra_checks: Iterable[Check] = (), written: StackFile | None = None
) -> tuple[LoadedStack, Secrets]:
    """Read this project's config through the Pulumi engine and validate it.

    Values come from `pulumi.Config` (so `--config`, ESC environments and `pulumi config set --path`
    all count); the stack file, when present, tells which keys were written (for unknown-key and
    plain-text-secret errors; `written` when the caller has read it already). Raises StackConfigError
    before any resource is registered.
    """
    config = pulumi.Config(NAMESPACE)
    if written is None and stack_file.exists():
        written = read_stack_file(stack_file)
    source = stack_file.name
    names = set(CONFIG_KEYS) | set(written.values if written else ())
    values: dict[str, Any] = {}
    for name in sorted(names - set(SECRET_KEYS)):
        try:
            value = config.get_object(name)
        except (pulumi.ConfigTypeError, json.JSONDecodeError):
            value = config.get(name)
        if value is not None:
            values[name] = value
    secrets = Secrets(**{key: config.get_secret(key) for key in SECRET_KEYS})
    present = [key for key in SECRET_KEYS if getattr(secrets, key) is not None]
    found = plain_secret_problems(written) if written else []
    return validate(values, present, source, extra_checks, found), secrets
