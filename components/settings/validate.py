"""Validation of a stack's values: the form, the structure (the models), the rules across keys and hosts,
then extra checks (the model and memory rules); every problem at once, each naming the full key.

A stack is written in one of two forms. The fleet form names its hosts and servers
(`rocm-inference:hosts`, `rocm-inference:servers`); the single-host form (`rocm-inference:host`,
`rocm-inference:vllm`) is its shorthand for one host named `host` and one server named `vllm`, not a
second code path: it is turned into the fleet form here, and problems are named back in its own keys.
"""

from __future__ import annotations

import ipaddress
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from components.planning.catalog import load_catalog, parse_reference
from components.planning.open_webui import MANAGED as CHAT_UI_MANAGED
from components.settings.errors import (
    NAMESPACE,
    Problem,
    StackConfigError,
    message,
    pydantic_key,
    suggestion,
    unknown_key_message,
)
from components.settings.models import (
    CONFIG_KEYS,
    DOWNLOAD_VARIABLES,
    FLEET_KEYS,
    RESERVED_NAMES,
    SECTIONS,
    SINGLE_HOST,
    SINGLE_KEYS,
    SINGLE_SERVER,
    STACK_FOLDER,
    HostSettings,
    ServerSettings,
    StackSettings,
    environment_name_problem,
    written_key,
)


@dataclass(frozen=True)
class LoadedStack:
    source: str
    settings: StackSettings
    warnings: tuple[str, ...] = field(default_factory=tuple)


# A check of a structurally valid stack: (errors, warnings), keyed in the fleet form.
Check = Callable[[StackSettings], tuple[list[Problem], list[Problem]]]

DEFAULT_VLLM_PORT = 8000
# Sections whose every key has a default: `{}` turns them on as they are.
DEFAULTED_SECTIONS = frozenset({"monitoring", "chat_ui"})


def to_fleet(values: Mapping[str, Any]) -> tuple[dict[str, Any], bool, list[Problem]]:
    """The fleet form of a stack's values, whether the file is written in the single-host form, and form errors."""
    single = [k for k in SINGLE_KEYS if k in values]
    fleet = [k for k in FLEET_KEYS if k in values]
    data = {k: v for k, v in values.items() if k in SECTIONS}
    if single and fleet:
        keys = ", ".join(f"{NAMESPACE}:{k}" for k in single + fleet)
        return (
            data,
            False,
            [
                Problem(
                    single[0],
                    f"mixes the single-host form with the fleet form ({keys}): use rocm-inference:host and "
                    "rocm-inference:vllm for one host and one server, or rocm-inference:hosts and "
                    "rocm-inference:servers (a server named vllm on a host named host is the same deployment)",
                )
            ],
        )
    if fleet or not single:
        data |= {k: values[k] for k in FLEET_KEYS if k in values}
        return data, False, []
    if "host" in values:
        data["hosts"] = {SINGLE_HOST: values["host"]}
    if "vllm" in values:
        data["servers"] = {SINGLE_SERVER: values["vllm"]}
    return data, True, []


def _missing_form_keys(data: Mapping[str, Any], single: bool) -> list[Problem]:
    out = []
    for fleet_key, short in (("hosts", SINGLE_HOST), ("servers", SINGLE_SERVER)):
        if fleet_key not in data:
            why = (
                ": the gateway (rocm-inference:gateway) has nothing to route without a vLLM server"
                if fleet_key == "servers" and data.get("gateway") not in (None, {})
                else ""
            )
            out.append(Problem(short if single else fleet_key, "is required" + why))
    return out


def _empty_sections(values: Mapping[str, Any]) -> list[Problem]:
    """`rocm-inference:embeddings:` with nothing under it must not silently remove the server."""
    out = []
    for key in SECTIONS:
        if key in DEFAULTED_SECTIONS and key in values and values[key] is None:
            out.append(Problem(key, f"is empty: write `{{}}` to turn {key} on with its defaults, or remove the key"))
        elif key not in DEFAULTED_SECTIONS and key in values and values[key] in (None, {}):
            out.append(
                Problem(key, f"is empty: give its settings (image, model, ...), or remove the key for no {key} server")
            )
    return out


def _host_refs(s: StackSettings) -> list[Problem]:
    """Every service names a host of the stack; with several hosts, it must say which."""
    out = []
    services: list[tuple[str, str | None]] = [(f"servers.{n}", srv.host) for n, srv in s.every_server.items()]
    services += [(k, getattr(s, k).host) for k in SECTIONS if getattr(s, k) is not None]
    for key, host in services:
        if host is None:
            out.append(
                Problem(f"{key}.host", f"is required: the stack has {len(s.hosts)} hosts ({', '.join(s.hosts)})")
            )
        elif host not in s.hosts:
            out.append(
                Problem(
                    f"{key}.host",
                    f"is {host!r}, which is not a host of rocm-inference:hosts{suggestion(host, s.hosts)}",
                )
            )
    return out


def machine_name(text: str) -> str:
    """A host name or address as one machine has it, however written: host names in lower case without the root's
    trailing dot (`GPU-A.lan.` is gpu-a.lan), IP addresses in their canonical form. No DNS: plans run offline."""
    bare = text.strip().removeprefix("[").removesuffix("]")
    try:
        return str(ipaddress.ip_address(bare))
    except ValueError:
        return bare.lower().rstrip(".")


def _machine(host: HostSettings) -> dict[str, str]:
    """What names the machine a host is: its Docker engine, the SSH host it is reached at, its address and the
    address it binds (not loopback: `localhost` names every machine), each with the way it is written."""
    names: dict[str, str] = {}
    if host.is_remote:
        _, ssh_host, port = host.ssh_target
        names[f"ssh {machine_name(ssh_host)}:{port}"] = f"docker {host.docker!r}"
        if port == 22:  # two ports of one name may forward to two machines (a NAT)
            names[f"name {machine_name(ssh_host)}"] = f"docker {host.docker!r}"
    else:
        names[f"docker {host.docker}"] = f"docker {host.docker!r}"
    for field_name, value in (("address", host.address), ("bind", host.bind)):
        if not _is_loopback(value):
            names.setdefault(f"name {machine_name(value)}", f"{field_name} {value!r}")
    return names


def _one_machine_twice(s: StackSettings) -> list[Problem]:
    """Two hosts that are one machine (a block copied and only renamed) would give its GPUs out twice."""
    out = []
    seen: dict[str, tuple[str, str]] = {}
    for name, host in s.hosts.items():
        for ident, written in _machine(host).items():
            if ident in seen:
                other, other_written = seen[ident]
                field_name, shown = written.split(" ", 1)
                other_field, other_shown = other_written.split(" ", 1)
                out.append(
                    Problem(
                        f"hosts.{name}.{field_name}",
                        f"is {shown}, which is the machine of {NAMESPACE}:{s.key('hosts.' + other)} (its {other_field} "
                        f"{other_shown}): one machine configured as two hosts would have its GPUs given out twice; give "
                        "each host its own docker and address, or make them one host with all the GPUs and servers",
                    )
                )
                break
            seen[ident] = (name, written)
    return out


def _names(s: StackSettings) -> list[Problem]:
    out = []
    for name in s.every_server:
        if name in s.hosts:
            out.append(Problem(f"servers.{name}", f"has the name of a host: name hosts and servers apart ({name!r})"))
        if name in RESERVED_NAMES:
            out.append(Problem(f"servers.{name}", f"is a reserved name ({', '.join(sorted(RESERVED_NAMES))})"))
    return out


def _server_gpus(s: StackSettings) -> list[Problem]:
    out = []
    owner: dict[tuple[str, int], str] = {}
    for name, srv in s.every_server.items():
        host = s.hosts.get(srv.host or "")
        if host is None:
            continue
        inventory = {g.index for g in host.gpus}
        for i, index in enumerate(srv.gpus):
            if index not in inventory:
                out.append(
                    Problem(
                        f"servers.{name}.gpus[{i}]",
                        f"is GPU {index}, which is not in {NAMESPACE}:{s.key(f'hosts.{srv.host}.gpus')} "
                        f"(indices {sorted(inventory)})",
                    )
                )
            elif (srv.host, index) in owner:
                out.append(
                    Problem(
                        f"servers.{name}.gpus[{i}]",
                        f"is GPU {index} of host {srv.host}, which {NAMESPACE}:{s.key('servers.' + owner[(srv.host or '', index)])} "
                        "already has: a GPU serves one server",
                    )
                )
            else:
                owner[(srv.host or "", index)] = name
        if isinstance(srv, ServerSettings) and srv.tensor_parallel_size != len(srv.gpus):
            out.append(
                Problem(
                    f"servers.{name}.tensor_parallel_size",
                    f"must equal the number of GPUs in {NAMESPACE}:{s.key(f'servers.{name}.gpus')} ({len(srv.gpus)}), "
                    f"got {srv.tensor_parallel_size}",
                )
            )
    return out


@dataclass(frozen=True)
class _Published:
    """One container of a host: its key, name, host port, cache volume and the secret that guards it.
    `what` names the service in messages; `port_key` is the key its port is set with."""

    key: str
    container: str
    port: int | None
    volume: str | None
    guarded: bool
    what: str = ""
    port_key: str = ""

    def field_key(self, attr: str) -> str:
        if attr == "port":
            return self.port_key or f"{self.key}.port"
        if attr == "volume" and self.key == "chat_ui":
            return "chat_ui.data_volume"
        return f"{self.key}.{'container_name' if attr == 'container' else 'cache_volume'}"


def _containers_by_host(s: StackSettings) -> dict[str, list[_Published]]:
    by_host: dict[str, list[_Published]] = defaultdict(list)
    gateway = s.gateway is not None
    for name, srv in s.every_server.items():
        keyed = gateway or s.has_secret("vllm_api_key") or s.has_secret(f"servers.{name}.api_key")
        container = srv.container_name or name
        what = f"{'llama.cpp' if srv.engine == 'llamacpp' else 'vLLM'} server {name}"
        by_host[srv.host or ""].append(_Published(f"servers.{name}", container, srv.port, srv.volume_name, keyed, what))
        # its model download runs in a one-shot container of its own, named after it
        by_host[srv.host or ""].append(
            _Published(f"servers.{name}", f"{container}-prefetch", None, None, True, f"{what}'s download")
        )
    if s.embeddings is not None:
        e = s.embeddings
        keyed = gateway or s.has_secret("embeddings_api_key")
        by_host[e.host or ""].append(
            _Published("embeddings", e.container_name, e.port, e.volume_name, keyed, "the embeddings server")
        )
    if s.gateway is not None:
        g = s.gateway
        by_host[g.host or ""].append(_Published("gateway", g.container_name, g.port, None, True, "the gateway"))
    if s.monitoring is not None:
        m = s.monitoring
        # node-exporter on every host, guarded by basic auth; Prometheus and Grafana by their own logins
        for host in s.hosts:
            by_host[host].append(
                _Published(
                    "monitoring",
                    "node-exporter",
                    m.node_exporter_port,
                    None,
                    True,
                    "node-exporter",
                    "monitoring.node_exporter_port",
                )
            )
        here = by_host[m.host or ""]
        here.append(
            _Published(
                "monitoring",
                "prometheus",
                m.prometheus_port,
                "prometheus-data",
                True,
                "Prometheus",
                "monitoring.prometheus_port",
            )
        )
        here.append(
            _Published(
                "monitoring", "grafana", m.grafana_port, "grafana-data", True, "Grafana", "monitoring.grafana_port"
            )
        )
        if m.alertmanager is not None:
            here.append(
                _Published(
                    "monitoring",
                    "alertmanager",
                    m.alertmanager.port,
                    None,
                    True,
                    "Alertmanager",
                    "monitoring.alertmanager.port",
                )
            )
    # Last: the services it shares a host with keep their ports, and the UI's own key is the one named.
    if s.chat_ui is not None:
        u = s.chat_ui
        # Open WebUI has its own login; without one (login: false) it must stay on loopback (_chat_ui).
        by_host[u.host or ""].append(
            _Published("chat_ui", u.container_name, u.port, u.data_volume, True, "the chat UI", "chat_ui.port")
        )
    return by_host


def _per_host(s: StackSettings) -> list[Problem]:
    """On one host: distinct container names, host ports and cache volumes; keys beyond loopback."""
    out = []
    for host_name, published in _containers_by_host(s).items():
        host = s.hosts.get(host_name)
        if host is None:
            continue
        servers_here = [p for p in published if p.key.startswith("servers.") and p.port is not None]
        unset_port = set()
        if len(servers_here) > 1:
            for p in servers_here:
                if "port" not in s.every_server[p.key.split(".", 1)[1]].model_fields_set:
                    unset_port.add(p.key)
                    out.append(
                        Problem(
                            f"{p.key}.port",
                            f"is required: host {host_name} runs {len(servers_here)} servers, and each needs a host "
                            f"port of its own (the default is {DEFAULT_VLLM_PORT})",
                        )
                    )
        for attr, what in (("container", "container name"), ("port", "host port"), ("volume", "cache volume")):
            seen: dict[Any, _Published] = {}
            reported: set[str] = set()  # one line a key: a server's download clashes when the server does
            for p in published:
                value = getattr(p, attr)
                if value is None or (attr == "port" and p.key in unset_port):
                    continue  # a port that must be given is reported as such, not as a clash with the default
                if value in seen and p.field_key(attr) not in reported:
                    reported.add(p.field_key(attr))
                    on = "" if s.single else f" on host {host_name}"
                    holder, mine = seen[value], p
                    if attr != "port" and mine.key == "monitoring":
                        holder, mine = mine, holder  # monitoring's containers and volumes have fixed names
                    held = (
                        f"{NAMESPACE}:{s.key(holder.field_key(attr))}"
                        if attr == "port" or holder.key != "monitoring"
                        else "a fixed name"
                    )
                    out.append(
                        Problem(
                            mine.field_key(attr),
                            f"is {what} {value!r}{on}, which {holder.what} already uses ({held}): give "
                            + (f"{mine.what}" if held == "a fixed name" else f"{mine.what} or {holder.what}")
                            + f" another {what}",
                        )
                    )
                elif value not in seen:
                    seen[value] = p
        if not host.bind_is_loopback:
            open_ = [p for p in published if not p.guarded]
            if open_:
                keys = sorted({"embeddings_api_key" if p.key == "embeddings" else "vllm_api_key" for p in open_})
                out.append(
                    Problem(
                        f"hosts.{host_name}.bind",
                        f"is {host.bind}, which publishes the services beyond this host, so an API key is required: "
                        + ", ".join(f"pulumi config set --secret {NAMESPACE}:{m} ..." for m in keys),
                    )
                )
        out += _ssh_problems(f"hosts.{host_name}", host)
    return out


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


def _replicas(s: StackSettings) -> tuple[list[Problem], list[Problem]]:
    """Servers that share a served_model_name are replicas behind one model name: one model, alike."""
    errors, warnings = [], []
    first: dict[str, str] = {}
    for name, srv in s.servers.items():
        served = srv.name_served
        if served not in first:
            first[served] = name
            continue
        other = s.servers[first[served]]
        ref = f"{NAMESPACE}:{s.key('servers.' + first[served])}"
        if srv.model != other.model:
            errors.append(
                Problem(
                    f"servers.{name}.model",
                    f"is {srv.model!r}, but {ref} serves {other.model!r} under the same name {served!r}: replicas "
                    "behind one model name must serve one model (give one of them another served_model_name)",
                )
            )
            continue
        if srv.model_revision != other.model_revision:
            warnings.append(
                Problem(
                    f"servers.{name}.model_revision",
                    f"is {_revision(srv.model_revision)}, but its replica {ref} has "
                    f"{_revision(other.model_revision)}: behind the one name {served!r} two revisions of "
                    f"{srv.model} answer, and a client gets either; give them one model_revision (or another "
                    "served_model_name to one of them)",
                )
            )
        if srv.max_model_len != other.max_model_len:
            warnings.append(
                Problem(
                    f"servers.{name}.max_model_len",
                    f"is {srv.max_model_len}, but its replica {ref} has {other.max_model_len}: a long request "
                    "succeeds on one replica and fails on the other",
                )
            )
    return errors, warnings


def _revision(revision: str | None) -> str:
    return repr(revision) if revision is not None else "unset (the repository's main branch, as it moves)"


def _monitoring_secrets(s: StackSettings) -> list[Problem]:
    out = []
    if (
        s.monitoring is not None
        and s.monitoring.alertmanager is not None
        and not s.has_secret("monitoring.alertmanager.webhook_url")
    ):
        out.append(
            Problem(
                "monitoring.alertmanager",
                "needs the webhook alerts go to, a secret (its URL carries a token): pulumi config set --secret "
                "--path 'rocm-inference:monitoring.alertmanager.webhook_url' https://...",
            )
        )
    return out


def _secret_environment(s: StackSettings) -> list[Problem]:
    """Environment entries written as secrets (`servers.NAME.environment.VAR`) name a variable the project does not set."""
    out = []
    for path in sorted(s.secrets):
        service, environment, name = path.partition(".environment.")
        problem = environment_name_problem(name, secret=True) if environment else None
        if problem:
            out.append(Problem(f"{service}.environment", problem))
    return out


_DOWNLOAD_FIELD = {"HF_ENDPOINT": "endpoint", "NO_PROXY": "no_proxy"}


def _download(s: StackSettings) -> tuple[list[Problem], list[Problem]]:
    """The download's mirror and proxy belong to the download: a vLLM server runs offline (HF_HUB_OFFLINE=1) from
    the weights its one-shot download fetched before it started, and its own environment never reaches that run."""
    errors, warnings = [], []
    for name, srv in s.every_server.items():
        if srv.download.proxy is not None and s.has_secret("download_proxy"):
            errors.append(
                Problem(
                    f"servers.{name}.download.proxy",
                    "is set, and so is the secret rocm-inference:download_proxy: the download takes one proxy; "
                    "keep the secret (a proxy with a login) or this key (one without), not both",
                )
            )
        written = [(v, False) for v in srv.environment]
        written += [
            (path.rsplit(".", 1)[1], True) for path in s.secrets if path.startswith(f"servers.{name}.environment.")
        ]
        for variable, secret in sorted(written):
            if variable.upper() not in DOWNLOAD_VARIABLES:
                continue
            field_name = _DOWNLOAD_FIELD.get(variable.upper(), "proxy")
            way = f"{NAMESPACE}:{s.key(f'servers.{name}.download')}.{field_name}"
            if field_name == "proxy":
                way += " (a proxy with a login: the secret rocm-inference:download_proxy)"
            warnings.append(
                Problem(
                    f"servers.{name}.environment",
                    f"has {variable!r}{' (a secret entry)' if secret else ''}, which reaches only the vLLM server, "
                    "which runs offline (HF_HUB_OFFLINE=1) from the weights downloaded before it starts, and never "
                    f"the model download, the only process that goes out: set {way} for the download instead",
                )
            )
    return errors, warnings


def _gateway_key(s: StackSettings) -> list[Problem]:
    if s.gateway is None or s.has_secret("gateway_api_key"):
        return []
    return [
        Problem(
            "gateway",
            "needs rocm-inference:gateway_api_key, the key clients use: "
            'pulumi config set --secret rocm-inference:gateway_api_key "sk-$(openssl rand -hex 24)"',
        )
    ]


def _chat_ui(s: StackSettings) -> list[Problem]:
    """Open WebUI's wiring: the stack's embeddings for its documents, its own variables left to the project, and
    its single-user mode (no login) only on loopback."""
    u = s.chat_ui
    if u is None:
        return []
    out = []
    if s.embeddings is None:
        out.append(
            Problem(
                "chat_ui",
                "needs the stack's embeddings server (rocm-inference:embeddings) for the documents users upload "
                "(RAG): without it Open WebUI would embed them with a model of its own; add an embeddings section",
            )
        )
    for name in sorted(set(u.environment) & CHAT_UI_MANAGED):
        out.append(
            Problem(
                "chat_ui.environment",
                f"has {name!r}, which this project sets itself (the wiring, accounts and offline settings of "
                "components/planning/chat_ui.py): use the chat_ui keys instead",
            )
        )
    host = s.hosts.get(u.host or "")
    if not u.login and host is not None and not host.bind_is_loopback:
        key = s.key(f"hosts.{u.host}.bind")
        out.append(
            Problem(
                "chat_ui.login",
                f"is false, Open WebUI's single-user mode, where whoever opens the page is its admin, but "
                f"{NAMESPACE}:{key} is {host.bind}, beyond this host: keep the login on (login: true), or bind "
                "to loopback and reach the page through an SSH tunnel",
            )
        )
    if s.has_secret("chat_ui_admin_password") and not u.login:
        out.append(
            Problem(
                "chat_ui.login",
                "is false, so there is no admin account, but rocm-inference:chat_ui_admin_password is set: "
                "remove one of them",
            )
        )
    tag = parse_reference(u.image).tag or ""
    if re.search(r"(^|[-_.])slim($|[-_.])", tag):
        out.append(
            Problem(
                "chat_ui.image",
                f"is {u.image!r}, a -slim variant, which has no vector store of its own (its RAG wants Postgres "
                "with pgvector): use the full image, e.g. ghcr.io/open-webui/open-webui:v0.12.4",
            )
        )
    return out


def _reachable(s: StackSettings) -> list[Problem]:
    """The gateway and Prometheus reach services on other hosts at that host's address and published
    port: such a host should publish beyond loopback and be named by an address that is not loopback.
    A warning, not an error: only a caller outside containers on the same machine (the suite's engine
    tests, two engines on one box) reaches another host's loopback."""
    callers = [("gateway", s.gateway.host)] if s.gateway is not None else []
    callers += [("chat UI", s.chat_ui.host)] if s.chat_ui is not None else []
    callers += [("monitoring", s.monitoring.host)] if s.monitoring is not None else []
    out = []
    for caller, here in callers:
        needed = {srv.host for srv in s.every_server.values()} | ({s.embeddings.host} if s.embeddings else set())
        if caller == "chat UI" and s.gateway is not None:
            needed = {s.gateway.host}  # behind a gateway, the UI reaches only the gateway
        if caller == "monitoring":
            needed |= set(s.hosts)  # node-exporter on every host
        for name in sorted(h for h in needed if h and h != here and h in s.hosts):
            host = s.hosts[name]
            if host.bind_is_loopback or _is_loopback(host.address):
                out.append(
                    Problem(
                        f"hosts.{name}.bind",
                        f"is {host.bind} with address {host.address!r}: the {caller} on host {here} reaches this "
                        "host's services at its address and published port, which its container cannot do on "
                        "loopback: publish on the host's private address (bind) and name it there (address)",
                    )
                )
    return out


def _advertised(s: StackSettings, warned: Iterable[Problem]) -> list[Problem]:
    """The outputs give each service's URL at its host's `address`: a name other machines reach, on a host
    that publishes on loopback, is a URL that nothing answers. Hosts the gateway or Prometheus reach from
    elsewhere are warned by _reachable already, with the same way out."""
    already = {p.key for p in warned}
    ports: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for name, srv in s.every_server.items():
        ports[srv.host or ""].append((f"{'llama.cpp' if srv.engine == 'llamacpp' else 'vLLM'} server {name}", srv.port))
    if s.embeddings is not None:
        ports[s.embeddings.host or ""].append(("the embeddings server", s.embeddings.port))
    if s.gateway is not None:
        ports[s.gateway.host or ""].append(("the gateway", s.gateway.port))
    if s.monitoring is not None:
        ports[s.monitoring.host or ""].append(("Grafana", s.monitoring.grafana_port))
    if s.chat_ui is not None:
        ports[s.chat_ui.host or ""].append(("the chat UI", s.chat_ui.port))
    out = []
    for name, services in ports.items():
        host = s.hosts.get(name)
        if host is None or f"hosts.{name}.bind" in already:
            continue
        what, port = next((x for x in services if x[0] == "the gateway"), services[0])  # the clients' endpoint
        if not host.bind_is_loopback and _is_loopback(host.address):
            # The reverse: it listens for other machines, but the outputs send every client to its own machine.
            default = "" if "address" in host.model_fields_set else " (the default)"
            out.append(
                Problem(
                    f"hosts.{name}.address",
                    f"is {host.address!r}{default}, loopback, but {NAMESPACE}:{s.key(f'hosts.{name}.bind')} is "
                    f"{host.bind}, which other machines reach: the outputs advertise {what} at "
                    f"http://{host.address}:{port}, which on any other machine is that machine itself; write "
                    f"address: the name or address clients reach this host at (e.g. address: {host.bind}), or bind "
                    "to 127.0.0.1 for a host used only from itself",
                )
            )
            continue
        if not host.bind_is_loopback or _is_loopback(host.address):
            continue
        default = "" if "bind" in host.model_fields_set else " (the default)"
        out.append(
            Problem(
                f"hosts.{name}.address",
                f"is {host.address!r}, which other machines reach, but {NAMESPACE}:{s.key(f'hosts.{name}.bind')} is "
                f"{host.bind}{default}, loopback: the outputs advertise {what} at http://{host.address}:{port}, "
                f"where nothing answers; bind to the host's LAN address (bind: its private IP, which then needs "
                f"the API keys), or write address: localhost and reach it through an SSH tunnel "
                f"(ssh -L {port}:localhost:{port} {host.address})",
            )
        )
    return out


def _is_loopback(address: str) -> bool:
    """An address or name that means this machine, wherever it is read (`localhost`, 127.0.0.0/8, ::1)."""
    name = machine_name(address)
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return name == "localhost" or name.endswith(".localhost")


def _cross_checks(s: StackSettings) -> tuple[list[Problem], list[Problem]]:
    refs = _host_refs(s)
    problems = refs + _names(s) + _gateway_key(s) + _monitoring_secrets(s) + _secret_environment(s)
    problems += _chat_ui(s) if not refs else []
    if refs:
        return problems, []
    problems += _one_machine_twice(s) + _server_gpus(s) + _per_host(s)
    errors, warnings = _replicas(s)
    download_errors, download_warnings = _download(s)
    reachable = _reachable(s)
    return (
        problems + errors + download_errors,
        warnings + download_warnings + reachable + _advertised(s, reachable),
    )


def _images(model: BaseModel, key: str) -> list[tuple[str, str]]:
    """Every image a stack runs, with its key: each field named `image` or `*_image`, at any depth."""
    out = []
    for name in type(model).model_fields:
        value = getattr(model, name)
        here = f"{key}.{name}" if key else name
        if isinstance(value, str) and (name == "image" or name.endswith("_image")):
            out.append((here, value))
        elif isinstance(value, BaseModel):
            out += _images(value, here)
        elif isinstance(value, dict):
            out += [i for k, v in value.items() if isinstance(v, BaseModel) for i in _images(v, f"{here}.{k}")]
    return out


def _moving_images(s: StackSettings) -> list[Problem]:
    catalog = load_catalog()
    out = []
    for key, image in _images(s, ""):
        tag = catalog.moving_tag(image)
        if tag is None:
            continue
        ref = parse_reference(image)
        why = (
            " (no tag means 'latest')"
            if ref.tag is None
            else ""
            if tag == "latest"
            else f" ({tag!r} is re-pointed at each new build)"
        )
        pinned = catalog.pinned_reference(image)
        hint = f" (the catalog pins {pinned})" if pinned else ""
        out.append(
            Problem(
                key, f"is {image!r}, an unpinned tag that moves under you{why}: pin a released tag or a digest{hint}"
            )
        )
    return out


def _warnings(s: StackSettings) -> list[Problem]:
    return _moving_images(s)


def _lines(problems: Iterable[Problem], single: bool, source: str) -> list[str]:
    return [Problem(written_key(p.key) if single else p.key, p.message).line(source) for p in problems]


def validate(
    values: Mapping[str, Any],
    secrets_present: Iterable[str],
    source: str,
    extra_checks: Iterable[Check] = (),
    found: Iterable[Problem] = (),
    folder: Path | None = None,
) -> LoadedStack:
    """Validate the project's config values (keys without namespace). Raises StackConfigError with every problem.

    `secrets_present` are the secret keys that are set, nested ones by path (`servers.chat-a.api_key`).
    `found` are problems the caller already knows of (plain-text secrets, unknown namespaces), reported
    with the rest, in the keys the file writes. `folder` is the stack file's: paths in the stack
    (`architecture_file`) are read from there (from the current directory when it is not given).
    """
    problems: list[Problem] = []
    for name in values:
        head = re.split(r"[.\[]", name, maxsplit=1)[0]
        if name not in CONFIG_KEYS and head in CONFIG_KEYS:
            problems.append(
                Problem(
                    name,
                    f"is one key with a dot in its name, as `pulumi config set` writes it without --path: Pulumi "
                    f"does not put it into {NAMESPACE}:{head}; run `pulumi config rm '{NAMESPACE}:{name}'` and "
                    f"`pulumi config set --path '{NAMESPACE}:{name}' VALUE`",
                )
            )
        elif name not in CONFIG_KEYS:
            problems.append(Problem(name, unknown_key_message(name, CONFIG_KEYS)))
    problems += _empty_sections(values)
    present = {
        k: v
        for k, v in values.items()
        if k in CONFIG_KEYS and (v not in (None, {}) or (k in DEFAULTED_SECTIONS and v == {}))
    }
    data, single, form_problems = to_fleet(present)
    problems += form_problems
    if form_problems:
        raise StackConfigError([p.line(source) for p in (*found, *problems)])
    data["secrets"] = frozenset(secrets_present)
    data["single"] = single
    missing = _missing_form_keys(data, single)
    try:
        settings = StackSettings.model_validate(data, context={STACK_FOLDER: folder} if folder else None)
    except ValidationError as exc:
        for err in exc.errors():
            loc = tuple(err["loc"])
            if loc and loc[-1] in FLEET_KEYS and err["type"] == "missing":
                continue  # reported in the form's own words below
            problems.append(Problem(pydantic_key(loc).split(":", 1)[1], message(err, StackSettings)))
        raise StackConfigError(
            [*(p.line(source) for p in found), *_lines(problems + missing, single, source)]
        ) from None
    errors, warnings = _cross_checks(settings)
    problems += errors
    warnings += _warnings(settings)
    # The model and memory rules assume a coherent stack (GPUs in the inventory, TP = GPUs given).
    if not problems:
        for check in extra_checks:
            found_errors, found_warnings = check(settings)
            problems += found_errors
            warnings += found_warnings
    found = list(found)
    if problems or found:
        raise StackConfigError([*(p.line(source) for p in found), *_lines(problems, single, source)])
    return LoadedStack(source, settings, tuple(_lines(warnings, single, source)))
