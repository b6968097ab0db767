"""Validation of a stack's values: structure (the models), then cross-key rules, then extra checks."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from components.settings.errors import NAMESPACE, Problem, StackConfigError, message, pydantic_key, unknown_key_message
from components.settings.models import CONFIG_KEYS, HostSettings, StackSettings


@dataclass(frozen=True)
class LoadedStack:
    source: str
    settings: StackSettings
    warnings: tuple[str, ...] = field(default_factory=tuple)


# A check of a structurally valid stack: (errors, warnings).
Check = Callable[[StackSettings], tuple[list[Problem], list[Problem]]]


def _cross_checks(s: StackSettings) -> list[Problem]:
    problems: list[Problem] = []
    inventory = {g.index for g in s.host.gpus}
    for i, index in enumerate(s.vllm.gpus):
        if index not in inventory:
            problems.append(
                Problem(
                    f"vllm.gpus[{i}]",
                    f"is GPU {index}, which is not in rocm-inference:host.gpus (indices {sorted(inventory)})",
                )
            )
    if s.vllm.tensor_parallel_size != len(s.vllm.gpus):
        problems.append(
            Problem(
                "vllm.tensor_parallel_size",
                f"must equal the number of GPUs in rocm-inference:vllm.gpus ({len(s.vllm.gpus)}), got {s.vllm.tensor_parallel_size}",
            )
        )
    problems += _ssh_problems("host", s.host)
    published = [("vllm.port", s.vllm.port, "vllm_api_key")]
    if s.embeddings is not None:
        published.append(("embeddings.port", s.embeddings.port, "embeddings_api_key"))
    ports = [p for _, p, _ in published]
    for key, port, _ in published[1:]:
        if ports.count(port) > 1:
            problems.append(Problem(key, f"is host port {port}, which another service of this stack already publishes"))
    if not s.host.bind_is_loopback:
        missing = [secret for _, _, secret in published if not s.has_secret(secret)]
        if missing:
            problems.append(
                Problem(
                    "host.bind",
                    f"is {s.host.bind}, which publishes the services beyond this host, so an API key is required: "
                    + ", ".join(f"pulumi config set --secret {NAMESPACE}:{m} ..." for m in missing),
                )
            )
    return problems


def _ssh_problems(key: str, host: HostSettings) -> list[Problem]:
    """The preflight reaches an ssh:// host with pulumi-command's own SSH client (Go's x/crypto/ssh).

    It reads neither ~/.ssh/config nor known_hosts nor the default key files, defaults the user to
    root, and skips host-key checking when no host_key is given (pulumi-command v1.2.1
    provider/pkg/provider/remote/connection.go L57, L88-98, L106-145). So that it logs in where
    Docker's OpenSSH does, as the same user, to the same verified host, the URL names the user and
    the host key is pinned.
    """
    if not (host.is_remote and host.preflight):
        return []
    out = []
    user, name, port = host.ssh_target
    if user is None:
        out.append(
            Problem(
                f"{key}.docker",
                f"is {host.docker!r}, which names no user: the preflight's SSH client reads no ~/.ssh/config and "
                f"would log in as root; write ssh://USER@{name}"
                + (f":{port}" if port != 22 else "")
                + " (or set preflight: false)",
            )
        )
    if host.ssh_host_key is None:
        out.append(
            Problem(
                f"{key}.ssh_host_key",
                "is required for an ssh:// host while preflight is on: the preflight's SSH client reads no known_hosts "
                f"and would accept any host key; run python -m components.discover --ssh USER@{name} --write STACK, "
                "which records it (or set preflight: false)",
            )
        )
    return out


def _warnings(s: StackSettings) -> list[Problem]:
    out = []
    images = [("vllm.image", s.vllm.image)]
    if s.embeddings is not None:
        images.append(("embeddings.image", s.embeddings.image))
    for key, image in images:
        if image_is_unpinned(image):
            out.append(
                Problem(key, f"is {image!r}, an unpinned tag that moves under you: pin a released tag or a digest")
            )
    return out


def image_is_unpinned(image: str) -> bool:
    if "@sha256:" in image:
        return False
    last = image.rsplit("/", 1)[-1]
    return ":" not in last or last.endswith(":latest")


def validate(
    values: Mapping[str, Any],
    secrets_present: Iterable[str],
    source: str,
    extra_checks: Iterable[Check] = (),
    found: Iterable[Problem] = (),
) -> LoadedStack:
    """Validate the project's config values (keys without namespace). Raises StackConfigError with every problem.

    `found` are problems the caller already knows of (plain-text secrets), reported with the rest.
    """
    problems: list[Problem] = list(found)
    for name in values:
        if name not in CONFIG_KEYS:
            problems.append(Problem(name, unknown_key_message(name, CONFIG_KEYS)))
    data = {k: v for k, v in values.items() if k in ("host", "vllm", "embeddings") and v is not None}
    data["secrets"] = frozenset(secrets_present)
    try:
        settings = StackSettings.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            loc = tuple(err["loc"])
            problems.append(Problem(pydantic_key(loc).split(":", 1)[1], message(err)))
        raise StackConfigError([p.line(source) for p in problems]) from None
    problems += _cross_checks(settings)
    warnings = _warnings(settings)
    # The model and memory rules assume a coherent stack (GPUs in the inventory, TP = GPUs given).
    if not problems:
        for check in extra_checks:
            errors, found_warnings = check(settings)
            problems += errors
            warnings += found_warnings
    if problems:
        raise StackConfigError([p.line(source) for p in problems])
    return LoadedStack(source, settings, tuple(w.line(source) for w in warnings))
