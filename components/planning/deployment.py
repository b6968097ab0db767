"""The deployment plan: everything a stack deploys, decided in one pure function before any resource exists.

settings (validated once) -> `build_deployment` -> `Deployment` -> the components (components/*.py), which turn
it into resources and decide nothing; the plan JSON, the compose export, the PR comment and `plan --against`
read what those resources are. Per host: its Docker, its preflight, its network; per service: the container
with everything a resource needs (image, command, environment with its secret parts marked, devices,
healthcheck with its stall window, timeouts, volume, ports, what it starts after); and each server's memory
plan and speed bands. A secret is never in the plan, only its name (`Secret`): the components map each to its
Output. Each serving engine (vLLM, Infinity, ...) is one module under components/planning/engines/, found by
name in components/planning/engines/__init__.py's registry. Free of Pulumi, like all of planning.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from components.planning import chat_ui as chat_ui_plan
from components.planning.catalog import dump_yaml, load_catalog
from components.planning.devices import device_paths, group_adds, hip_visible_devices
from components.planning.engines import ServiceContext, assess_stack, engine
from components.planning.engines.llamacpp import LlamacppPlan
from components.planning.engines.llamacpp import plans as llamacpp_plans
from components.planning.gateway import CONFIG_PATH, GATEWAY_PORT, MASTER_KEY_ENV, backend_key_env, litellm_config
from components.planning.monitoring_services import MonitoringPlan, OneShotRun, monitoring_plan
from components.planning.preflight import preflight_spec, script_text
from components.planning.rules import Assessment
from components.planning.secrets import SECRET_ENV_LABEL
from components.planning.service import (
    GATEWAY_TYPE,
    Container,
    Gpus,
    Health,
    Prefetch,
    Run,
    Secret,
    SecretText,
    backend_key,
    health_check,
    secret_environment_of,
    server_key,
)
from components.planning.timing import Timeouts, container_timeouts, image_timeouts
from components.settings import ServerSettings, StackSettings

__all__ = [
    "ChatUi",
    "Container",
    "Deployment",
    "Gpus",
    "Health",
    "Host",
    "MonitoringPlan",
    "OneShotRun",
    "Prefetch",
    "Preflight",
    "Run",
    "Secret",
    "SecretText",
    "Service",
    "SshConnection",
    "Timeouts",
    "build_deployment",
]


@dataclass(frozen=True)
class Preflight:
    """The host check to run before anything is pulled: a command line, its script (stdin), its triggers."""

    command: str
    script: str
    triggers: tuple[str, ...]
    run: Run


@dataclass(frozen=True)
class SshConnection:
    """pulumi-command's SSH connection to an ssh:// host whose key the stack pins (the same user, host and port
    as Docker's URL: it reads no ~/.ssh/config and no known_hosts)."""

    host: str
    user: str | None
    port: int
    host_key: str


@dataclass(frozen=True)
class Host:
    name: str
    docker: str
    ssh_opts: tuple[str, ...]
    address: str
    bind: str
    pull_timeout: int
    remote: bool
    # Where a command that drives the host's Docker runs over SSH (else here, through the docker CLI).
    connection: SshConnection | None
    preflight: Preflight | None
    # The stack's Docker network on this host, when a caller (gateway, Prometheus, chat UI) runs here.
    network: str | None
    # What the host component reports (its registered outputs).
    outputs: Mapping[str, Any]


@dataclass(frozen=True)
class Service:
    """One long-running service: its component's type and name, its host, its container, what it reports."""

    name: str
    type: str  # the component's type token, `rocm-inference:<module>:<Type>`
    host: str
    container: Container
    model: str  # what clients ask for ("" for the gateway)
    path: str  # the OpenAI base path under its published port
    gpus: Gpus | None = None
    # Its own key (stack's or generated), for the stack outputs and the gateway; None: it takes none.
    api_key: Secret | None = None
    # Passwords generated for it, made once and kept in state, in this order before it.
    generated: tuple[Secret, ...] = ()
    max_model_len: int | None = None


@dataclass(frozen=True)
class ChatUi:
    service: Service
    # With a login: its admin's email and password, for the stack outputs.
    admin_email: str | None
    admin_password: Secret | None
    # With a login: the run that sets the admin's password in the UI's data volume (components/planning/chat_ui.py
    # ADMIN_RESET_SCRIPT says why).
    admin_reset: OneShotRun | None = None


@dataclass(frozen=True)
class Deployment:
    project: str
    stack: str
    single: bool
    labels: Mapping[str, str]
    hosts: Mapping[str, Host]
    servers: Mapping[str, Service]
    embeddings: Service | None
    gateway: Service | None
    chat_ui: ChatUi | None
    monitoring: MonitoringPlan | None
    # Each server's rules, memory plan and speed bands (components/planning/rules.py), by server name.
    assessments: Mapping[str, Assessment] = field(default_factory=dict)
    # Each llama.cpp server's memory plan and speed bands (components/planning/engines/llamacpp.py), by name.
    llamacpp_plans: Mapping[str, LlamacppPlan] = field(default_factory=dict)
    gateway_config: Mapping[str, Any] | None = None
    # The key clients use at the gateway, for the stack outputs.
    gateway_api_key: Secret | None = None
    warnings: tuple[str, ...] = ()


def _hosts(s: StackSettings, project: str, stack: str, callers: set[str]) -> dict[str, Host]:
    catalog = load_catalog()
    script = script_text() if any(h.preflight for h in s.hosts.values()) else ""
    out = {}
    for name, h in s.hosts.items():
        preflight = None
        if h.preflight:
            spec = preflight_spec(s, name, catalog, project, stack)
            # Its verdict line is its stdout, which stays in the log.
            preflight = Preflight(spec.command(), script, tuple(spec.triggers(script)), Run(log="stdout"))
        connection = None
        if h.is_remote and h.ssh_host_key is not None:
            user, address, port = h.ssh_target
            connection = SshConnection(address, user, port, h.ssh_host_key)
        out[name] = Host(
            name=name,
            docker=h.docker,
            ssh_opts=tuple(h.ssh_opts),
            address=h.address,
            bind=h.bind,
            pull_timeout=h.pull_timeout,
            remote=h.is_remote,
            connection=connection,
            preflight=preflight,
            network=f"{project}-{stack}" if name in callers else None,
            outputs={
                "docker_host": h.docker,
                "address": h.address,
                "bind": h.bind,
                "gpu": h.gpu,
                "gpus": [g.model_dump() for g in h.gpus],
                "groups": h.groups.model_dump(),
            },
        )
    return out


def build_deployment(
    s: StackSettings, project: str, stack: str, warnings: tuple[str, ...] = (), *, assess: bool = True
) -> Deployment:
    """The whole deployment of a valid stack. `assess`: with each server's memory plan and speed bands (the
    components need none of it; the plan's views show it)."""
    labels = {"rocm-inference.project": project, "rocm-inference.stack": stack}
    ui = chat_ui_plan.plan(s, load_catalog()) if s.chat_ui is not None else None
    # The gateway, Prometheus and the chat UI reach the services of their own host by container name, on a
    # network of the stack's on that host (no host port involved); other hosts' by address and published port.
    callers = {
        h
        for h in (
            s.gateway.host if s.gateway is not None else None,
            s.monitoring.host if s.monitoring is not None else None,
            s.chat_ui.host if s.chat_ui is not None and ui is not None and ui.same_host else None,
        )
        if h is not None
    }
    hosts = _hosts(s, project, stack, callers)
    catalog = load_catalog()
    servers: dict[str, Service] = {}
    for name, srv in s.every_server.items():
        host = hosts[srv.host or ""]
        h = s.hosts[srv.host or ""]
        serving = engine(srv.engine)
        nodes = h.nodes(srv.gpus)
        gpus = Gpus(
            f"{name}-gpus",
            tuple(n.index for n in nodes),
            device_paths(nodes),
            group_adds(h.groups),
            {"HIP_VISIBLE_DEVICES": hip_visible_devices(nodes)},
        )
        key = server_key(s, name)
        ctx = ServiceContext(
            s, name, f"servers.{name}", srv, host.name, host.bind, host.pull_timeout, labels, gpus, catalog, key
        )
        container = _with_stack_secrets(serving.container(ctx), s, f"servers.{name}", host.network is not None)
        servers[name] = Service(
            name=name,
            type=serving.component_type,
            host=host.name,
            container=container,
            model=srv.name_served,
            path=serving.path,
            gpus=gpus,
            api_key=key,
            generated=(key,) if key is not None and key.length else (),
            max_model_len=srv.max_model_len if isinstance(srv, ServerSettings) else srv.ctx_size // srv.parallel,
        )
    embeddings = None
    if s.embeddings is not None:
        e = s.embeddings
        host = hosts[e.host or ""]
        serving = engine("infinity")
        key = backend_key(s, "embeddings", ("embeddings_api_key",))
        ctx = ServiceContext(
            s, "embeddings", "embeddings", e, host.name, host.bind, host.pull_timeout, labels, None, catalog, key
        )
        embeddings = Service(
            name="embeddings",
            type=serving.component_type,
            host=host.name,
            container=_with_stack_secrets(serving.container(ctx), s, "embeddings", host.network is not None),
            model=e.model,
            path=serving.path,
            api_key=key,
            generated=(key,) if key is not None and key.length else (),
        )
    backends = [*servers.values(), *([embeddings] if embeddings else [])]
    gateway = _gateway(s, hosts, labels, backends) if s.gateway is not None else None
    chat = _chat_ui(s, hosts, labels, ui, servers, embeddings, gateway) if ui is not None else None
    return Deployment(
        project=project,
        stack=stack,
        single=s.single,
        labels=labels,
        hosts=hosts,
        servers=servers,
        embeddings=embeddings,
        gateway=gateway,
        chat_ui=chat,
        monitoring=monitoring_plan(s, labels) if s.monitoring is not None else None,
        assessments=assess_stack(s, catalog) if assess else {},
        llamacpp_plans=llamacpp_plans(s) if assess else {},
        gateway_config=litellm_config(s) if s.gateway is not None else None,
        gateway_api_key=Secret("gateway_api_key")
        if s.gateway is not None and s.has_secret("gateway_api_key")
        else None,
        warnings=warnings,
    )


def _with_stack_secrets(c: Container, s: StackSettings, service: str, network: bool) -> Container:
    """The stack's own secret environment entries (they win), named in a label for the policy pack; and the
    host's network when it has one."""
    own = secret_environment_of(s, service)
    if own:
        c = replace(
            c,
            secret_environment={**own, **c.secret_environment},
            labels={**c.labels, SECRET_ENV_LABEL: ",".join(sorted(own))},
        )
    return replace(c, network=network)


def _gateway(
    s: StackSettings, hosts: Mapping[str, Host], labels: Mapping[str, str], backends: list[Service]
) -> Service:
    assert s.gateway is not None
    g = s.gateway
    host = hosts[g.host or ""]
    secret: dict[str, SecretText] = {}
    if s.has_secret("gateway_api_key"):
        secret[MASTER_KEY_ENV] = (Secret("gateway_api_key"),)
    secret |= {backend_key_env(b.name): (b.api_key,) for b in backends if b.api_key is not None}
    container = Container(
        image=g.image,
        container_name=g.container_name,
        # The image's entrypoint runs the litellm CLI with these arguments.
        command=("--config", CONFIG_PATH, "--port", str(GATEWAY_PORT)),
        internal_port=GATEWAY_PORT,
        # Answers without a key once the proxy serves (LiteLLM docs, proxy/health.md).
        health=health_check(GATEWAY_PORT, g.health_interval, g.startup_timeout, path="/health/readiness"),
        external_port=g.port,
        bind=host.bind,
        startup_timeout=g.startup_timeout,
        uploads={CONFIG_PATH: dump_yaml(litellm_config(s), sort_keys=False)},
        # Without LITELLM_LOCAL_MODEL_COST_MAP the proxy fetches its cost map from the internet at every start.
        environment={**g.environment, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "DO_NOT_TRACK": "1"},
        secret_environment=secret,
        labels=dict(labels),
        stop_grace_seconds=30,
        # It routes to servers that are up: its container starts after them, so `pulumi up` ends with one
        # endpoint that answers; its image is pulled meanwhile.
        start_after=tuple(b.name for b in backends),
        host=host.name,
        image_timeouts=image_timeouts(host.pull_timeout),
        container_timeouts=container_timeouts(g.startup_timeout, 30),
    )
    return Service(
        name="gateway",
        type=GATEWAY_TYPE,
        host=host.name,
        container=_with_stack_secrets(container, s, "gateway", host.network is not None),
        model="",
        path="/v1",
    )


def _chat_ui(
    s: StackSettings,
    hosts: Mapping[str, Host],
    labels: Mapping[str, str],
    ui: chat_ui_plan.ChatUiPlan,
    servers: Mapping[str, Service],
    embeddings: Service | None,
    gateway: Service | None,
) -> ChatUi:
    assert s.chat_ui is not None
    u = s.chat_ui
    host = hosts[u.host or ""]
    # Open WebUI signs sessions with this key: generated once and kept in state, so a replaced container
    # signs nobody out (left unset, the image writes one outside its data volume: start.sh L31-50).
    session_key = Secret("chat-ui-secret-key", 48)
    password = None
    generated = [session_key]
    parts: dict[str, Secret] = {chat_ui_plan.SECRET_KEY: session_key}
    if u.login:
        if s.has_secret("chat_ui_admin_password"):
            password = Secret("chat_ui_admin_password")
        else:
            password = Secret("chat-ui-admin-password", 24)
            generated.append(password)
        parts[chat_ui_plan.ADMIN_PASSWORD] = password
    if s.has_secret("gateway_api_key"):
        parts[chat_ui_plan.GATEWAY_KEY] = Secret("gateway_api_key")
    if embeddings is not None and embeddings.api_key is not None:
        parts[chat_ui_plan.EMBEDDINGS_KEY] = embeddings.api_key
    parts |= {chat_ui_plan.server_key(name): srv.api_key for name, srv in servers.items() if srv.api_key is not None}
    secret: dict[str, SecretText] = {
        variable: _joined(names, parts) for variable, names in ui.secret_environment.items()
    }
    own = secret_environment_of(s, "chat_ui")
    # Its login guards its port (the policy pack's wide_ports_need_api_key reads the label); without one it
    # carries none, and a port beyond loopback is a violation (validation refuses that stack before).
    container_labels = {**labels, **({"rocm-inference.auth": "login"} if u.login else {})}
    if own:
        # The stack's own secret entries; the label tells the policy pack which names are secrets too.
        secret = {**own, **secret}
        container_labels[SECRET_ENV_LABEL] = ",".join(sorted(own))
    # After the endpoint it chats through and the embeddings it files documents with; its image is pulled meanwhile.
    endpoint = ["gateway"] if gateway is not None else list(servers)
    container = Container(
        image=u.image,
        container_name=u.container_name,
        command=(),  # the image's own start.sh
        internal_port=chat_ui_plan.CHAT_UI_PORT,
        health=health_check(
            chat_ui_plan.CHAT_UI_PORT, u.health_interval, u.startup_timeout, path=chat_ui_plan.HEALTH_PATH
        ),
        external_port=u.port,
        bind=host.bind,
        cache_volume=u.data_volume,
        cache_path=chat_ui_plan.DATA_DIR,
        startup_timeout=u.startup_timeout,
        environment=dict(ui.environment),
        secret_environment=secret,
        labels=container_labels,
        stop_grace_seconds=30,
        start_after=(*endpoint, *(["embeddings"] if embeddings is not None else [])),
        host=host.name,
        network=host.network is not None,
        image_timeouts=image_timeouts(host.pull_timeout),
        container_timeouts=container_timeouts(u.startup_timeout, 30),
    )
    service = Service(
        name="chat-ui",
        type="rocm-inference:chat_ui:ChatUi",
        host=host.name,
        container=container,
        model="",
        path="",
        generated=tuple(generated),
    )
    reset = None
    if password is not None:
        reset = OneShotRun(
            name=f"{u.container_name}-admin-reset",
            of=service.name,
            entrypoint=("python3", "-c"),
            command=(chat_ui_plan.ADMIN_RESET_SCRIPT,),
            path=chat_ui_plan.DATA_DIR,
            environment={"DATA_DIR": chat_ui_plan.DATA_DIR, "WEBUI_ADMIN_EMAIL": u.admin_email},
            secret_environment={"WEBUI_ADMIN_PASSWORD": (password,)},
            host=host.name,
        )
    return ChatUi(service, u.admin_email if u.login else None, password, reset)


def _joined(names: tuple[str | None, ...], parts: Mapping[str, Secret]) -> SecretText:
    """`;`-joined parts: a part that is None (a server without a key) is an empty entry."""
    pieces: list[str | Secret] = []
    for i, name in enumerate(names):
        if i:
            pieces.append(";")
        pieces.append("" if name is None else parts[name])
    return tuple(pieces)
