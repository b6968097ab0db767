"""Reading `Pulumi.<stack>.yaml` files: this project's keys, which of them are secure, and where stacks live."""

from __future__ import annotations

import datetime
import difflib
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from components.planning.secrets import token_kind
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
    # keys of ours under a namespace that is almost ours (`rocm:vllm`): Pulumi keeps them for another package
    warned: tuple[Problem, ...] = ()

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

# How the Pulumi CLI reads a stack file: gopkg.in/yaml.v3 (sdk/go/common/encoding/marshal.go L27, L111-L125 at
# pulumi/pulumi 1b5949891b3c), whose plain scalars follow YAML 1.2's core schema (go-yaml/yaml v3 f6f7691b1fde,
# resolve.go L52-L61 and L124-L289), not PyYAML's YAML 1.1: `yes`, `no`, `on`, `off` are strings; `1:30` is a
# string (no base 60); `0o17`, `1e3` and `08` are numbers; `=` is a string. A date or time is a time.Time, which
# Pulumi turns into Go's Time.String() (sdk/go/common/resource/config/object.go L490-L491): `2026-01-05` reaches
# the program as '2026-01-05 00:00:00 +0000 UTC'. A number reaches it through JSON with json.Number (object.go
# L436-L444, L469-L479), so a float with no fraction (`32768.0`) arrives as an int.
_PLAIN = "tag:rocm-inference,2026:go-yaml-plain"
_GO_WORDS: dict[str, Any] = {
    **dict.fromkeys(("true", "True", "TRUE"), True),
    **dict.fromkeys(("false", "False", "FALSE"), False),
    **dict.fromkeys(("", "~", "null", "Null", "NULL"), None),
    **dict.fromkeys((".nan", ".NaN", ".NAN"), math.nan),
    **dict.fromkeys((".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF"), math.inf),
    **dict.fromkeys(("-.inf", "-.Inf", "-.INF"), -math.inf),
}
# strconv.ParseInt(s, 0, 64) after yaml.v3 drops every `_` (resolve.go L192-L199): a base prefix, or a leading 0
# for octal.
_GO_INT = re.compile(r"^([+-]?)(0[xX][0-9a-fA-F]+|0[oO][0-7]+|0[bB][01]+|0[0-7]*|[1-9][0-9]*)$")
_GO_FLOAT = re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$")  # resolve.go L122 yamlStyleFloat
# resolve.go L294-L300 allowedTimestampFormats, as Go's time.Parse reads them (1 or 2 digits in each field).
_GO_TIME = re.compile(
    r"^(\d{4})-(\d{1,2})-(\d{1,2})(?:(?:([Tt])| )(\d{1,2}):(\d{1,2}):(\d{1,2})(\.\d+)?(Z|[+-]\d{2}:\d{2})?)?$"
)
_JSON_INTEGRAL = 1e21  # Go's encoding/json writes a float64 below this without an exponent


def _go_time(text: str) -> str | None:
    """Go's Time.String() of a plain scalar yaml.v3 reads as a timestamp, or None."""
    match = _GO_TIME.match(text)
    if not match:
        return None
    year, month, day, t, hour, minute, second, fraction, zone = match.groups()
    if hour is not None and (t is None) != (zone is None):
        return None  # `T` needs a zone (RFC 3339); a space takes none
    try:
        when = datetime.datetime(int(year), int(month), int(day), int(hour or 0), int(minute or 0), int(second or 0))
    except ValueError:
        return None  # `2026-02-30`: time.Parse refuses it, so it stays a string
    nanos = (fraction or ".")[1:10].ljust(9, "0").rstrip("0")
    offset = (zone or "Z").replace(":", "")
    # UTC as on a machine whose local zone is UTC (a local zone with a name prints that name); any other offset
    # is Go's fixed zone, which has no name: its offset twice
    tz = "+0000 UTC" if offset in ("Z", "+0000", "-0000") else f"{offset} {offset}"
    return f"{when:%Y-%m-%d %H:%M:%S}{'.' + nanos if nanos else ''} {tz}"


def _go_number(text: str) -> int | float | None:
    plain = text.replace("_", "")
    match = _GO_INT.match(plain)
    if match:
        sign, digits = match.groups()
        prefix = digits[:2].lower()
        if prefix in ("0x", "0o", "0b"):
            value = int(digits[2:], {"0x": 16, "0o": 8, "0b": 2}[prefix])
        elif digits[0] == "0" and len(digits) > 1:
            value = int(digits, 8)  # strconv's base 0: a leading 0 is octal (`0755`)
        else:
            value = int(digits)
        value = -value if sign == "-" else value
        # beyond int64, Pulumi's json.Number is read as a float64 (object.go L470-L478)
        return value if -(2**63) <= value < 2**63 else float(value)
    if _GO_FLOAT.match(plain):
        number = float(plain)
        return int(number) if number.is_integer() and abs(number) < _JSON_INTEGRAL else number
    return None


def go_scalar(text: str) -> Any:
    """A plain (unquoted) scalar as the Pulumi CLI reads it: yaml.v3's resolve() (resolve.go L124-L289), then
    Pulumi's config object (object.go L467-L493)."""
    if text in _GO_WORDS:
        return _GO_WORDS[text]
    if text[0] == ".":
        return float(text) if re.match(r"^\.[0-9]+([eE][-+]?[0-9]+)?$", text) else text
    if text[0] in "+-0123456789":
        when = _go_time(text)
        if when is not None:
            return when
        number = _go_number(text)
        if number is not None:
            return number
    return text


class _StackLoader(_SafeLoader):
    """YAML's safe loader that reads plain scalars as the Pulumi CLI does (go_scalar), takes merge keys
    (`<<: *anchor`, which yaml.v3 takes: resolve.go L59, decode.go L999), and keeps every mapping key it sees
    twice (YAML itself lets the last one win; yaml.v3 refuses it)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.duplicates: list[tuple[str, int, int]] = []

    def resolve(self, kind: type[yaml.Node], value: Any, implicit: Any) -> str:
        if kind is yaml.ScalarNode and implicit[0] and value != "<<":
            return _PLAIN
        return str(super().resolve(kind, value, implicit))  # type: ignore[no-untyped-call]

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        lines: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # the merged keys are defaults: a key written beside them is not written twice
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if isinstance(key, str | int | float | bool) and key in lines:
                self.duplicates.append((str(key), lines[key], line))
            else:
                lines[key] = line
        return super().construct_mapping(node, deep=deep)


def _construct_plain(loader: _StackLoader, node: yaml.ScalarNode) -> Any:
    return go_scalar(str(loader.construct_scalar(node)))


_StackLoader.add_constructor(_PLAIN, _construct_plain)


def _config_nodes(document: yaml.Node | None) -> dict[str, yaml.Node]:
    """The value nodes of the file's `config:` keys, by key as written."""
    for key, value in document.value if isinstance(document, yaml.MappingNode) else ():
        if isinstance(key, yaml.ScalarNode) and key.value == "config" and isinstance(value, yaml.MappingNode):
            return {k.value: v for k, v in value.value if isinstance(k, yaml.ScalarNode)}
    return {}


def _unquoted_dates(node: yaml.Node | None, path: str) -> list[tuple[str, str, str]]:
    """(key, as written, as Pulumi reads it) of each plain scalar under `path` that yaml.v3 reads as a timestamp."""
    if isinstance(node, yaml.ScalarNode):
        read = _go_time(node.value) if node.tag == _PLAIN else None
        return [(path, node.value, read)] if read is not None else []
    if isinstance(node, yaml.SequenceNode):
        return [d for n, item in enumerate(node.value) for d in _unquoted_dates(item, f"{path}[{n}]")]
    if isinstance(node, yaml.MappingNode):
        return [
            d
            for key, value in node.value
            if isinstance(key, yaml.ScalarNode) and key.tag != "tag:yaml.org,2002:merge"
            for d in _unquoted_dates(value, f"{path}.{key.value}")
        ]
    return []


def _tab_indented(text: str) -> list[int]:
    return [n for n, line in enumerate(text.splitlines(), 1) if "\t" in line[: len(line) - len(line.lstrip())]]


def _secure_paths(value: Any, path: str) -> set[str]:
    """Where a value holds `{secure: ...}`: the key itself, or nested ones (`servers.chat-a.api_key`)."""
    if isinstance(value, dict):
        if set(value) == {"secure"}:
            return {path}
        return set().union(*(_secure_paths(v, f"{path}.{k}") for k, v in value.items()))
    return set()


# What `pulumi config set --secret` writes: the passphrase and cloud (KMS) providers' `v1:NONCE:CIPHERTEXT`
# (sdk/go/common/resource/config/crypt.go L179-L183), or the Pulumi Cloud's base64 of its ciphertext
# (pkg/secrets/service/manager.go L66-L73), which is longer than AES-GCM's 16-byte tag alone.
_CIPHERTEXT_V1 = re.compile(r"^v1:[A-Za-z0-9+/_=-]+:[A-Za-z0-9+/_=-]+$")
_CIPHERTEXT_SERVICE = re.compile(r"^(?=.{24,})(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$")


def is_ciphertext(value: Any) -> bool:
    """Whether a `secure:` value is Pulumi's ciphertext, not a secret written by hand (`secure: hf_...`)."""
    if not isinstance(value, str):
        return False
    if _CIPHERTEXT_V1.match(value):
        return True
    # hex (`openssl rand -hex 24`) or a token is a plain secret: a ciphertext's base64 is neither
    return (
        bool(_CIPHERTEXT_SERVICE.match(value)) and not re.fullmatch(r"[0-9a-fA-F]+", value) and not (token_kind(value))
    )


def secret_way_out(path: str) -> str:
    """The command that sets `path` (a key without namespace, nested by dots) as a secret."""
    if "." in path or "[" in path:
        return f"pulumi config set --secret --path '{NAMESPACE}:{path}' ..."
    return f"pulumi config set --secret {NAMESPACE}:{path} ..."


def _handwritten_secure(value: Any, path: str) -> list[Problem]:
    """`{secure: ...}` whose text is not Pulumi's ciphertext: a plain secret in git, which `pulumi up` fails to
    decrypt. The text is never shown."""
    if isinstance(value, dict) and set(value) == {"secure"}:
        if is_ciphertext(value["secure"]):
            return []
        return [
            Problem(
                path,
                "is written as `secure:` by hand, but what it holds is not Pulumi's ciphertext (v1:... from "
                "`pulumi config set --secret`): it is the secret itself, in plain text in the stack file and in "
                f"git, and `pulumi up` cannot decrypt it; remove the entry and set it with `{secret_way_out(path)}` "
                "(and replace the secret if the file was shared or committed)",
            )
        ]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _handwritten_secure(v, f"{path}.{k}")]
    return []


def _normalised(namespace: str) -> str:
    return re.sub(r"[-_. ]", "", namespace.lower())


def _levenshtein(a: str, b: str) -> int:
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        previous, row[0] = row[0], i
        for j, cb in enumerate(b, 1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (ca != cb))
    return row[-1]


def _almost_ours(namespace: str) -> bool:
    """A short or misspelt form of this project's namespace: another case or separator (`ROCm_Inference`), a
    piece of it (`rocm`, `inference`, `rocm-inf`), or two edits away (`rocm-inferece`)."""
    ours, theirs = _normalised(NAMESPACE), _normalised(namespace)
    if len(theirs) < 3:
        return False
    pieces = {_normalised(p) for p in re.split(r"[-_.]", NAMESPACE)}
    return (
        theirs == ours
        or ours.startswith(theirs)
        or theirs in pieces
        or theirs.startswith(ours)
        or _levenshtein(theirs, ours) <= 2
    )


def _misspelled_namespace(full: str) -> Problem | None:
    ns, _, name = full.partition(":")
    if name and ns != NAMESPACE and difflib.SequenceMatcher(a=ns, b=NAMESPACE).ratio() >= 0.8:
        return Problem(full, f"is not a known key (did you mean {f'{NAMESPACE}:{name}'!r}?)", namespaced=False)
    return None


def _nearly_our_namespace(full: str) -> Problem | None:
    """A key of ours under a namespace that is almost ours (`rocm:vllm`): a warning, since Pulumi hands keys of
    another namespace to the package of that name, which may be there on purpose."""
    ns, _, name = full.partition(":")
    head = re.split(r"[.\[]", name, maxsplit=1)[0]
    if not name or ns == NAMESPACE or head not in CONFIG_KEYS or not _almost_ours(ns):
        return None
    return Problem(
        full,
        f"is in namespace {ns!r}, not {NAMESPACE!r}: Pulumi keeps it for a package named {ns} and this project "
        f"never reads it, so its settings are not used; if it is this project's, write it {NAMESPACE}:{name}",
        namespaced=False,
    )


def _namespace_as_parent(key: str, value: Any) -> Problem | None:
    """`rocm-inference:` with the project's keys under it: Pulumi reads it as one key named
    `rocm-inference:rocm-inference` (a key without namespace is the project's: loaders.go
    stackConfigNamespacedWithProject), so none of the keys under it is read."""
    ns = key.rstrip(":")
    if ":" in ns or not isinstance(value, dict) or not (ns == NAMESPACE or _almost_ours(ns)):
        return None
    ours = sorted(str(k) for k in value if str(k).split(".", 1)[0] in CONFIG_KEYS)
    if not ours:
        return None
    return Problem(
        key,
        f"holds {', '.join(ours)} as keys under it, but Pulumi does not read a namespace as a parent key: it reads "
        f"one key named {NAMESPACE}:{key} and none of these; write each key with the namespace in its own name, "
        f"directly under `config:` ({', '.join(f'{NAMESPACE}:{k}:' for k in ours)})",
        namespaced=False,
    )


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
        parent = _namespace_as_parent(text, doc[key])
        if parent is not None:
            out.append(Problem(text, parent.message.replace("directly under `config:`", "under `config:`"), False))
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
        node = loader.get_single_node()
        doc = (loader.construct_document(node) if node is not None else None) or {}
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
    config_nodes = _config_nodes(node)
    misspelled: list[Problem] = _outside_config(doc)
    warned: list[Problem] = []
    written_as: dict[str, str] = {}
    for full, value in config.items():
        ns, _, name = _config_key(str(full))
        parent = _namespace_as_parent(str(full), value)
        if parent is not None:
            other[str(full)] = value
            misspelled.append(parent)
            continue
        if ns != NAMESPACE or not name:
            other[str(full)] = value
            problem = _misspelled_namespace(str(full))
            if problem:
                misspelled.append(problem)
            else:
                warned += [w for w in (_nearly_our_namespace(str(full)),) if w]
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
        warned += [
            Problem(
                path,
                f"is {written}, an unquoted date: Pulumi reads it as a timestamp and hands the program "
                f"{read!r}, which is what the plan shows; quote it ('{written}') to keep it as written",
            )
            for path, written, read in _unquoted_dates(config_nodes.get(str(full)), name)
        ]
        secure |= _secure_paths(value, name)
        misspelled += _handwritten_secure(value, name)
        values[name] = value
    return StackFile(path, stack_name(path), values, frozenset(secure), other, tuple(misspelled), tuple(warned))


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
