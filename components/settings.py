"""The stack file, modelled: the one place where configuration is read and validated.

Data flows one way: `Pulumi.<stack>.yaml` -> these frozen models (validated once, all
errors at once) -> component args -> resources. Components never read configuration.
Defaults live here and nowhere else.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import pulumi
import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
)
from pydantic_core import PydanticCustomError

from components.catalog import Architecture, load_yaml

NAMESPACE = "rocm-inference"

# Keys whose values must be set with `pulumi config set --secret`; they are read with
# `get_secret` and stay Outputs end to end, so they are not part of the models below.
SECRET_KEYS: tuple[str, ...] = ("hf_token", "vllm_api_key", "embeddings_api_key", "ssh_private_key")


class StackConfigError(Exception):
    """A stack file that cannot be deployed. Each line names the file and the full key."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


def _invalid(text: str) -> PydanticCustomError:
    """A validation error whose text is the whole message after the key (see _message)."""
    return PydanticCustomError("rocm", "{text}", {"text": text})


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


Port = Annotated[StrictInt, Field(ge=1, le=65535)]
NonNegative = Annotated[StrictInt, Field(ge=0)]

_SIZE = re.compile(r"^(\d+)\s*(b|k|kb|m|mb|g|gb)?$", re.IGNORECASE)
_SIZE_FACTORS = {"b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


def size_bytes(text: str) -> int:
    """Docker's byte-size notation (`16g`, `512m`, `1gb`, `1048576`) in bytes."""
    match = _SIZE.match(text.strip())
    if not match:
        raise ValueError(text)
    unit = (match.group(2) or "b")[0].lower()
    return int(match.group(1)) * _SIZE_FACTORS[unit]


def _check_image(value: str) -> str:
    # A reference with neither tag nor digest means `latest`: a warning, not an error (see _warnings).
    if any(c.isspace() for c in value):
        raise _invalid(f"must be an image reference like repo/name:tag, got {value!r}")
    return value


Image = Annotated[StrictStr, Field(min_length=1), AfterValidator(_check_image)]


class GpuNode(_Model):
    """One GPU of the host: its ROCm index and its DRM nodes (`/dev/dri/cardN`, `/dev/dri/renderDN`)."""

    index: NonNegative
    card: NonNegative
    render: Annotated[StrictInt, Field(ge=128, le=255)]


class Groups(_Model):
    """Numeric ids of the host's `video` and `render` groups (names fail when the image lacks them)."""

    video: NonNegative
    render: NonNegative


class HostSettings(_Model):
    docker: StrictStr
    ssh_opts: tuple[StrictStr, ...] = ()
    address: Annotated[StrictStr, Field(min_length=1)] = "localhost"
    bind: StrictStr = "127.0.0.1"
    gpu: Annotated[StrictStr, Field(min_length=1)]
    gpu_memory_gib: Annotated[float, Field(gt=0, le=1024)] | None = None
    gpus: tuple[GpuNode, ...]
    groups: Groups
    # Check the host (devices, groups, Docker, disk, GPUs held by others) before anything is pulled.
    preflight: StrictBool = True

    @field_validator("docker")
    @classmethod
    def _docker_url(cls, value: str) -> str:
        if value.startswith("unix:///") or re.match(r"^ssh://([^@/\s]+@)?[^@/\s:]+(:\d+)?$", value):
            return value
        raise _invalid(f"must be unix:///path/to/docker.sock or ssh://user@host[:port], got {value!r}")

    @field_validator("bind")
    @classmethod
    def _bind_ip(cls, value: str) -> str:
        try:
            ipaddress.ip_address(value)
        except ValueError:
            raise _invalid(f"must be an IP address such as 127.0.0.1, got {value!r}") from None
        return value

    @field_validator("gpus")
    @classmethod
    def _unique_nodes(cls, value: tuple[GpuNode, ...]) -> tuple[GpuNode, ...]:
        # Checked here, not with min_length, which also fires when an item is invalid (one error per mistake).
        if not value:
            raise _invalid("must list at least one GPU")
        for attr in ("index", "card", "render"):
            seen = [getattr(g, attr) for g in value]
            dupes = sorted({v for v in seen if seen.count(v) > 1})
            if dupes:
                raise _invalid(f"lists {attr} {dupes} more than once")
        return value

    @property
    def is_remote(self) -> bool:
        return self.docker.startswith("ssh://")

    @property
    def ssh_target(self) -> tuple[str, str, int]:
        """(user, host, port) of an ssh:// Docker host; user root and port 22 where the URL has none."""
        match = re.match(r"^ssh://(?:([^@/\s]+)@)?([^@/\s:]+)(?::(\d+))?$", self.docker)
        if not match:
            raise ValueError(f"not an ssh:// Docker host: {self.docker}")
        return match.group(1) or "root", match.group(2), int(match.group(3) or 22)

    @property
    def bind_is_loopback(self) -> bool:
        return ipaddress.ip_address(self.bind).is_loopback

    def nodes(self, indices: Iterable[int]) -> tuple[GpuNode, ...]:
        """The inventory entries of these ROCm indices, in the order given."""
        by_index = {g.index: g for g in self.gpus}
        return tuple(by_index[i] for i in indices)


def _utilization(value: float) -> float:
    if not 0 < value <= 1:
        raise _invalid(f"must be in (0, 1], got {value}")
    return value


def _shm(value: str) -> str:
    try:
        size = size_bytes(value)
    except ValueError:
        raise _invalid(f"must be a size like 16g, 512m or 1gb, got {value!r}") from None
    if size % (1 << 20) or size < 64 << 20:
        raise _invalid(f"must be a whole number of MiB and at least 64m, got {value!r}")
    return value


EnvName = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


MANAGED_ENV = frozenset({"HIP_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES", "CUDA_VISIBLE_DEVICES", "HF_HOME"})


def _environment(value: Mapping[str, str]) -> Mapping[str, str]:
    for key in value:
        if not EnvName.match(key):
            raise _invalid(f"has {key!r}, which is not an environment variable name")
        if re.search(r"(TOKEN|KEY|SECRET|PASSWORD)", key, re.IGNORECASE):
            raise _invalid(
                f"has {key!r}, which looks like a secret: set secrets with `pulumi config set --secret` (see README)"
            )
        if key in MANAGED_ENV:
            raise _invalid(f"has {key!r}, which this project sets itself (from the GPUs and secrets of the stack)")
    return value


Environment = Annotated[dict[StrictStr, StrictStr], Field(default_factory=dict), AfterValidator(_environment)]
Utilization = Annotated[float, AfterValidator(_utilization)]
ShmSize = Annotated[StrictStr, AfterValidator(_shm)]


class VllmSettings(_Model):
    image: Image
    model: Annotated[StrictStr, Field(min_length=1)]
    served_model_name: StrictStr | None = None
    gpus: tuple[NonNegative, ...]
    tensor_parallel_size: Annotated[StrictInt, Field(ge=1)]
    max_model_len: Annotated[StrictInt, Field(ge=16, le=10_485_760)]
    gpu_memory_utilization: Utilization
    max_num_seqs: Annotated[StrictInt, Field(ge=1)] | None = None
    max_num_batched_tokens: Annotated[StrictInt, Field(ge=16)] | None = None
    dtype: Literal["auto", "float16", "bfloat16", "float32"] = "auto"
    shm_size: ShmSize = "16g"
    port: Port = 8000
    container_name: Annotated[StrictStr, Field(pattern=r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")] = "vllm"
    cache_volume: Annotated[StrictStr, Field(pattern=r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")] | None = None
    startup_timeout: Annotated[StrictInt, Field(ge=60, le=7200)] = 1800
    environment: Environment
    # The model's config.json facts, for a model that is not in the catalog (or to override it).
    architecture: Architecture | None = None

    @field_validator("gpus")
    @classmethod
    def _unique_gpus(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value:
            raise _invalid("must list at least one host GPU index")
        if len(set(value)) != len(value):
            raise _invalid(f"lists a GPU more than once: {list(value)}")
        return value

    @property
    def shm_size_mb(self) -> int:
        return size_bytes(self.shm_size) >> 20

    @property
    def volume_name(self) -> str:
        return self.cache_volume or f"{self.container_name}-hf-cache"

    @property
    def name_served(self) -> str:
        return self.served_model_name or self.model


class EmbeddingsSettings(_Model):
    image: Image
    model: Annotated[StrictStr, Field(min_length=1)]
    device: Literal["cpu"] = "cpu"
    engine: Literal["torch", "optimum"] = "torch"
    batch_size: Annotated[StrictInt, Field(ge=1, le=4096)] | None = None
    port: Port = 7997
    container_name: Annotated[StrictStr, Field(pattern=r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")] = "infinity-embeddings"
    cache_volume: Annotated[StrictStr, Field(pattern=r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")] | None = None
    startup_timeout: Annotated[StrictInt, Field(ge=60, le=7200)] = 1200
    environment: Environment

    @property
    def volume_name(self) -> str:
        return self.cache_volume or f"{self.container_name}-cache"


class StackSettings(_Model):
    """Everything a stack deploys. `secrets` names the secret keys that are set (their values stay Outputs)."""

    host: HostSettings
    vllm: VllmSettings
    embeddings: EmbeddingsSettings | None = None
    secrets: frozenset[str] = frozenset()

    def has_secret(self, key: str) -> bool:
        return key in self.secrets


CONFIG_KEYS: tuple[str, ...] = ("host", "vllm", "embeddings", *SECRET_KEYS)


# --------------------------------------------------------------------------- errors


def _show(value: Any) -> str:
    if isinstance(value, str):
        return repr(value)
    try:
        return json.dumps(value)
    except TypeError:
        return repr(value)


def _key(loc: Iterable[Any]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return f"{NAMESPACE}:{text}"


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The model class that holds the last element of loc (to list the keys allowed there)."""
    model: Any = StackSettings
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        info = model.model_fields.get(part)
        if info is None:
            return None
        model = _inner_model(info.annotation)
        if model is None:
            return None
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def _inner_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _inner_model(arg)
        if found is not None:
            return found
    return None


def suggestion(name: str, allowed: Iterable[str]) -> str:
    """` (did you mean 'x'?); allowed: a, b, c` for a name that is not one of `allowed`."""
    allowed = sorted(allowed)
    close = difflib.get_close_matches(name, allowed, n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"{hint}; allowed: {', '.join(allowed)}"


def unknown_key_message(name: str, allowed: Iterable[str]) -> str:
    return "is not a known key" + suggestion(name, allowed)


_TYPE_WORDS = {
    "int": "an integer",
    "float": "a number",
    "string": "a string",
    "bool": "true or false",
    "list": "a list",
    "tuple": "a list",
    "dict": "a mapping",
    "model": "a mapping",
    "model_attributes": "a mapping",
    "frozen_set": "a list",
}


_TEMPLATES = {
    "greater_than_equal": "must be >= {ge}",
    "greater_than": "must be > {gt}",
    "less_than_equal": "must be <= {le}",
    "less_than": "must be < {lt}",
    "literal_error": "must be one of {expected}",
    "too_short": "must have at least {min_length} item(s)",
    "string_too_short": "must not be empty",
    "string_pattern_mismatch": "must match {pattern}",
}


def _message(err: Mapping[str, Any]) -> str:
    kind = err["type"]
    ctx = err.get("ctx") or {}
    got = _show(err.get("input"))
    if kind == "rocm":
        return str(ctx["text"])
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        model = _model_at(tuple(err["loc"]))
        allowed = model.model_fields.keys() if model else ()
        return unknown_key_message(str(err["loc"][-1]), [a for a in allowed if a != "secrets"])
    for prefix, words in _TYPE_WORDS.items():
        if kind in (f"{prefix}_type", f"{prefix}_parsing", f"{prefix}_from_float"):
            return f"must be {words}, got {got}"
    if kind in _TEMPLATES:
        return f"{_TEMPLATES[kind].format(**ctx)}, got {got}"
    return f"is invalid: {err['msg']}, got {got}"


@dataclass(frozen=True)
class Problem:
    """One finding about a stack file: the key (without namespace) and what is wrong with it."""

    key: str
    message: str

    def line(self, source: str) -> str:
        return f"{source}: {NAMESPACE}:{self.key} {self.message}"


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
            problems.append(Problem(_key(loc).split(":", 1)[1], _message(err)))
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


# --------------------------------------------------------------------------- stack files


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


# --------------------------------------------------------------------------- under Pulumi


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
