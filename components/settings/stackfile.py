"""Reading `Pulumi.<stack>.yaml` files: this project's keys, which of them are secure, and where stacks live."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from components.settings.errors import NAMESPACE, Problem, StackConfigError
from components.settings.models import CONFIG_KEYS, NESTED_SECRET_FIELDS, SECRET_KEYS


@dataclass(frozen=True)
class StackFile:
    """A `Pulumi.<stack>.yaml` as written: this project's keys (without namespace) and which are secure."""

    path: Path
    stack: str
    values: dict[str, Any]
    secure: frozenset[str]  # secure keys, nested ones by path (`servers.chat-a.api_key`)
    other: dict[str, Any]
    misspelled: tuple[Problem, ...] = ()  # keys of a namespace that looks like a typo of ours

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


try:  # libyaml's parser where PyYAML has it (several times faster)
    from yaml import CSafeLoader as _SafeLoader
except ImportError:  # pragma: no cover  # a PyYAML built without libyaml
    from yaml import SafeLoader as _SafeLoader  # type: ignore[assignment]


class _StackLoader(_SafeLoader):
    """YAML's safe loader that keeps every mapping key it sees twice (YAML itself lets the last one win)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.duplicates: list[tuple[str, int, int]] = []

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        lines: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if isinstance(key, str | int | float | bool) and key in lines:
                self.duplicates.append((str(key), lines[key], line))
            else:
                lines[key] = line
        return super().construct_mapping(node, deep=deep)


def _tab_indented(text: str) -> list[int]:
    return [n for n, line in enumerate(text.splitlines(), 1) if "\t" in line[: len(line) - len(line.lstrip())]]


def _secure_paths(value: Any, path: str) -> set[str]:
    """Where a value holds `{secure: ...}`: the key itself, or nested ones (`servers.chat-a.api_key`)."""
    if isinstance(value, dict):
        if set(value) == {"secure"}:
            return {path}
        return set().union(*(_secure_paths(v, f"{path}.{k}") for k, v in value.items()))
    return set()


def _misspelled_namespace(full: str) -> Problem | None:
    ns, _, name = full.partition(":")
    if name and ns != NAMESPACE and difflib.SequenceMatcher(a=ns, b=NAMESPACE).ratio() >= 0.8:
        return Problem(full, f"is not a known key (did you mean {f'{NAMESPACE}:{name}'!r}?)", namespaced=False)
    return None


def _config_key(full: str) -> tuple[str, str, str]:
    """(namespace, ':', name) of a stack file's config key, as the Pulumi CLI reads it: a key without
    `:` is the project's (sdk/go/common/workspace/loaders.go stackConfigNamespacedWithProject), and
    `<ns>:config:<name>` is the old form of `<ns>:<name>` (sdk/go/common/resource/config/key.go ParseKey)."""
    if ":" not in full:
        return NAMESPACE, ":", full
    ns, colon, name = full.partition(":")
    if name.startswith("config:") and name.count(":") == 1:
        name = name[len("config:") :]
    return ns, colon, name


# The keys of a stack file besides `config` (sdk/go/common/workspace/project.go ProjectStack).
STACK_FILE_KEYS = frozenset({"config", "secretsprovider", "encryptedkey", "encryptionsalt", "environment"})


def _outside_config(doc: dict[Any, Any]) -> list[Problem]:
    """Keys at the top of the file that belong under `config:`: Pulumi reads only the keys of a stack
    file it knows (STACK_FILE_KEYS) and ignores the others without a word."""
    out = []
    for key in doc:
        text = str(key)
        if text in STACK_FILE_KEYS:
            continue
        if ":" in text or text.split(".", 1)[0] in CONFIG_KEYS:
            message = (
                "is at the top of the file, outside `config:`: Pulumi ignores it without a word; indent it under "
                "`config:`"
            )
        else:
            close = difflib.get_close_matches(text, sorted(STACK_FILE_KEYS), n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            message = (
                f"is not a key of a stack file{hint}: Pulumi ignores it without a word; a stack file holds "
                f"{', '.join(sorted(STACK_FILE_KEYS))}, and this project's keys go under `config:` as {NAMESPACE}:KEY"
            )
        out.append(Problem(text, message, namespaced=False))
    return out


def read_stack_file(path: Path) -> StackFile:
    """Read a stack file. Raises StackConfigError naming the file when it cannot be read or parsed."""
    source = path.name
    try:
        text = path.read_text()
    except OSError as exc:
        raise StackConfigError([f"{path}: cannot read the stack file: {exc.strerror}"]) from None
    except UnicodeDecodeError as exc:
        raise StackConfigError([f"{path}: is not UTF-8 text (byte {exc.start}): a stack file is YAML text"]) from None
    tabs = _tab_indented(text)
    if tabs:
        raise StackConfigError(
            [f"{source}: line {n} is indented with a tab: YAML allows only spaces for indentation" for n in tabs]
        )
    loader = _StackLoader(text)
    try:
        doc = loader.get_single_data() or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise StackConfigError([f"{source}: is not valid YAML{where}: {getattr(exc, 'problem', exc)}"]) from None
    finally:
        loader.dispose()
    if loader.duplicates:
        raise StackConfigError(
            [
                f"{source}: key {key!r} is written twice, at lines {first} and {second}: YAML would silently keep "
                "the last one; keep one"
                for key, first, second in loader.duplicates
            ]
        )
    if not isinstance(doc, dict):
        raise StackConfigError([f"{source}: must be a mapping with a `config:` key, got {type(doc).__name__}"])
    config = doc.get("config") or {}
    if not isinstance(config, dict):
        raise StackConfigError([f"{source}: config must be a mapping of keys to values"])
    values: dict[str, Any] = {}
    other: dict[str, Any] = {}
    secure: set[str] = set()
    misspelled: list[Problem] = _outside_config(doc)
    written_as: dict[str, str] = {}
    for full, value in config.items():
        ns, _, name = _config_key(str(full))
        if ns != NAMESPACE or not name:
            other[str(full)] = value
            problem = _misspelled_namespace(str(full))
            if problem:
                misspelled.append(problem)
            continue
        if name in written_as:
            misspelled.append(
                Problem(
                    str(full),
                    f"is {NAMESPACE}:{name}, which the file also writes as {written_as[name]!r}: Pulumi keeps one "
                    "of the two, whichever it reads last; keep one",
                    namespaced=False,
                )
            )
        written_as[name] = str(full)
        secure |= _secure_paths(value, name)
        values[name] = value
    return StackFile(path, stack_name(path), values, frozenset(secure), other, tuple(misspelled))


def nested_secret_paths(values: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(path, server, field) of each nested secret a stack holds: a server's own key (in either form),
    and the alert webhook's URL (server "")."""
    out = []
    servers = values.get("servers") if isinstance(values.get("servers"), dict) else {}
    entries = [(f"servers.{n}", n, v) for n, v in (servers or {}).items()]
    if isinstance(values.get("vllm"), dict):
        entries.append(("vllm", "vllm", values["vllm"]))
    for path, server, entry in entries:
        if isinstance(entry, dict):
            out += [(f"{path}.{f}", server, f) for f in NESTED_SECRET_FIELDS if f in entry]
    monitoring = values.get("monitoring")
    alertmanager = monitoring.get("alertmanager") if isinstance(monitoring, dict) else None
    if isinstance(alertmanager, dict) and "webhook_url" in alertmanager:
        out.append(("monitoring.alertmanager.webhook_url", "", "webhook_url"))
    return out


# An environment entry written as a secret: `vllm.environment.NAME`, `servers.<name>.environment.NAME`,
# `embeddings.environment.NAME`, `gateway.environment.NAME`.
_SECRET_ENVIRONMENT = re.compile(r"^(vllm|servers\.[^.]+|embeddings|gateway|chat_ui)\.environment\.([^.]+)$")


def secret_environment_entry(path: str) -> tuple[str, str] | None:
    """(service in the fleet form, variable) of a secure path that is an environment entry, or None."""
    match = _SECRET_ENVIRONMENT.match(path)
    if not match:
        return None
    service = match.group(1)
    return ("servers.vllm" if service == "vllm" else service), match.group(2)


def plain_secret_problems(stack_file: StackFile) -> list[Problem]:
    """Secret keys written in plain text: they would sit unencrypted in git and in state."""
    top = [
        Problem(key, f"is written in plain text: set it with `pulumi config set --secret {NAMESPACE}:{key} ...`")
        for key in SECRET_KEYS
        if key in stack_file.values and key not in stack_file.secure
    ]
    nested = [
        Problem(
            path,
            f"is written in plain text: set it with `pulumi config set --secret --path '{NAMESPACE}:{path}' ...`",
        )
        for path, _, _ in nested_secret_paths(stack_file.values)
        if path not in stack_file.secure
    ]
    allowed = {*SECRET_KEYS, *(path for path, _, _ in nested_secret_paths(stack_file.values))}
    stray = [
        Problem(
            path,
            "is a secret where rocm-inference reads none, so it would reach its container in plain text: secrets "
            f"go only under {', '.join(SECRET_KEYS)}, servers.NAME.api_key, monitoring.alertmanager.webhook_url "
            "and an environment entry of a service (servers.NAME.environment.VAR)",
        )
        for path in sorted(stack_file.secure - allowed)
        if secret_environment_entry(path) is None
    ]
    return top + nested + stray
