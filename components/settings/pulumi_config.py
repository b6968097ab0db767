"""The stack's config as the Pulumi engine hands it to the program: the settings package's one pulumi import."""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi

from components.planning.chat_ui import contradictions as chat_ui_contradictions
from components.planning.engines import check_stack
from components.settings.errors import NAMESPACE, StackConfigError
from components.settings.models import CONFIG_KEYS, SECRET_KEYS
from components.settings.stackfile import (
    StackFile,
    nested_secret_paths,
    plain_secret_problems,
    read_stack_file,
    secret_environment_entry,
)
from components.settings.validate import Check, LoadedStack, validate


@dataclass(frozen=True)
class Secrets:
    """The secret config values, as Outputs marked secret; None where unset."""

    hf_token: pulumi.Output[str] | None = None
    vllm_api_key: pulumi.Output[str] | None = None
    embeddings_api_key: pulumi.Output[str] | None = None
    gateway_api_key: pulumi.Output[str] | None = None
    ssh_private_key: pulumi.Output[str] | None = None
    grafana_admin_password: pulumi.Output[str] | None = None
    chat_ui_admin_password: pulumi.Output[str] | None = None
    download_proxy: pulumi.Output[str] | None = None
    # A server's own backend key (`servers.<name>.api_key`, a nested secret), by server name.
    server_api_keys: Mapping[str, pulumi.Output[str]] = field(default_factory=dict)
    # `monitoring.alertmanager.webhook_url`, a nested secret.
    alert_webhook_url: pulumi.Output[str] | None = None
    # Environment entries written as secrets (`--path 'rocm-inference:vllm.environment.HTTPS_PROXY'`),
    # by service in the fleet form (`servers.vllm`, `embeddings`, `gateway`), then by variable.
    environment: Mapping[str, Mapping[str, pulumi.Output[str]]] = field(default_factory=dict)

    def get(self, key: str) -> pulumi.Output[str]:
        """A secret by its key as the settings name it (StackSettings.secrets): `gateway_api_key`,
        `servers.chat-a.api_key`, `monitoring.alertmanager.webhook_url`, `embeddings.environment.HTTPS_PROXY`."""
        found: pulumi.Output[str] | None
        if ".environment." in key:
            service, _, name = key.partition(".environment.")
            found = self.environment.get(service, {}).get(name)
        elif key.startswith("servers.") and key.endswith(".api_key"):
            found = self.server_api_keys.get(key[len("servers.") : -len(".api_key")])
        elif key == "monitoring.alertmanager.webhook_url":
            found = self.alert_webhook_url
        else:
            found = getattr(self, key, None) if key in SECRET_KEYS else None
        if found is None:
            raise KeyError(f"the plan names secret {key}, which the stack does not have")
        return found


def _take_nested_secrets(values: dict[str, Any]) -> dict[str, pulumi.Output[str]]:
    """Move each nested secret out of the plain values, into secret Outputs (before validation), by path."""
    taken = {}
    for path, server, name in nested_secret_paths(values):
        if path.startswith("monitoring."):
            entry = values["monitoring"]["alertmanager"]
        else:
            entry = values["vllm"] if path.startswith("vllm.") else values["servers"][server]
        value = entry.pop(name)
        if isinstance(value, str):
            taken[path] = pulumi.Output.secret(value)
    return taken


def _take_secret_environment(values: dict[str, Any], secure: Iterable[str]) -> dict[str, dict[str, pulumi.Output[str]]]:
    """Move each environment entry the stack file writes as a secret out of the plain values, into secret
    Outputs (before validation). The engine hands it over decrypted inside its key's object, so only the
    stack file tells it from a plain entry."""
    taken: dict[str, dict[str, pulumi.Output[str]]] = {}
    for path in sorted(secure):
        entry = secret_environment_entry(path)
        if entry is None:
            continue
        service, name = entry
        section: Any = values
        for part in path.split(".")[:-2]:
            section = section.get(part) if isinstance(section, dict) else None
        environment = section.get("environment") if isinstance(section, dict) else None
        if isinstance(environment, dict) and isinstance(environment.get(name), str):
            taken.setdefault(service, {})[name] = pulumi.Output.secret(environment.pop(name))
    return taken


def load_from_pulumi(
    stack_file: Path, extra_checks: Iterable[Check] = (), written: StackFile | None = None
) -> tuple[LoadedStack, Secrets]:
    """Read this project's config through the Pulumi engine and validate it.

    Values come from `pulumi.Config` (so `--config`, ESC environments and `pulumi config set --path`
    all count); the stack file, when present, tells which keys were written (for unknown-key and
    plain-text-secret errors; `written` when the caller has read it already). A nested secret
    (`--path 'rocm-inference:servers.chat-a.api_key'`) arrives decrypted inside its key's object: it
    is taken out at once and kept as a secret Output. Besides the settings' own checks, every server passes
    its engine's rules (components/planning/engines/: vLLM's model and memory rules), so the stack can be planned,
    and the chat page's settings are held to the servers it fronts (components/planning/chat_ui.py contradictions).
    Raises StackConfigError before any resource is registered.
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
            values[name] = copy.deepcopy(value)
        elif written is not None and name in written.values:
            values[name] = written.values[name]  # an empty section: refused by name, not silently dropped
    nested = _take_nested_secrets(values)
    environment = _take_secret_environment(values, written.secure if written else ())
    server_keys = {
        path.split(".")[-2] if path.startswith("servers.") else "vllm": v
        for path, v in nested.items()
        if path.endswith(".api_key")
    }
    secrets = Secrets(
        **{key: config.get_secret(key) for key in SECRET_KEYS},
        server_api_keys=server_keys,
        alert_webhook_url=nested.get("monitoring.alertmanager.webhook_url"),
        environment=environment,
    )
    present = [key for key in SECRET_KEYS if getattr(secrets, key) is not None]
    present += [f"servers.{server}.api_key" for server in server_keys]
    present += [path for path in nested if path.startswith("monitoring.")]
    present += [f"{service}.environment.{name}" for service, names in environment.items() for name in names]
    found = [*written.misspelled, *plain_secret_problems(written)] if written else []
    warned = [w.line(source) for w in written.warned] if written else []
    # `architecture_file` is beside the stack file: under `pulumi up` (the project directory as the current
    # directory) and in the plan (`--file some/dir/Pulumi.x.yaml`, from anywhere) alike.
    checks = (check_stack, chat_ui_contradictions, *extra_checks)
    try:
        loaded = validate(values, present, source, checks, found, stack_file.parent)
    except StackConfigError as exc:
        # a section under a namespace that is almost ours explains a key of ours said to be missing
        raise StackConfigError([*exc.lines, *warned]) from None
    return dataclasses.replace(loaded, warnings=(*warned, *loaded.warnings)), secrets
