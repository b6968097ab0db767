"""The monitoring services' containers, as the deployment plan holds them: node-exporter on every host;
Prometheus, Grafana (and its password reset) and Alertmanager on the monitoring host. Their files come from
components/planning/monitoring.py; components/monitoring.py turns these into resources.

node-exporter runs with its `drm` collector (off by default: busy %, VRAM) and `hwmon` (edge, junction and
memory temperature, power), in the host's network and PID namespaces with the host's root read-only at /host,
as its README runs it in Docker; it listens on the host's `bind` address (and, on the monitoring host, on
Docker's address of the host, where Prometheus reaches it) and answers only with basic auth (its web config),
since scrapes cross hosts. Prometheus keeps its data in a volume Pulumi never deletes; Grafana has its
datasource and dashboards provisioned from files, anonymous access off and its admin password a secret.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field

from components.planning.catalog import dump_yaml
from components.planning.engines.llamacpp import plans as llamacpp_plans
from components.planning.engines.llamacpp_monitoring import PLANNED_RULES_FILE, PlannedServer, planned_rules_text
from components.planning.engines.llamacpp_monitoring import RULES_FILE as LLAMACPP_RULES_FILE
from components.planning.engines.llamacpp_monitoring import rules_text as llamacpp_rules_text
from components.planning.monitoring import (
    ALERTMANAGER_CONFIG,
    ALERTMANAGER_CONTAINER,
    ALERTMANAGER_PORT,
    ALERTMANAGER_WEBHOOK_FILE,
    DOCKER_HOST_GATEWAY,
    GATEWAY_KEY_FILE,
    GRAFANA_CONTAINER,
    GRAFANA_PORT,
    HOST_GATEWAY,
    NODE_EXPORTER_CONTAINER,
    NODE_EXPORTER_PASSWORD_FILE,
    PROMETHEUS_CONFIG,
    PROMETHEUS_CONTAINER,
    PROMETHEUS_PORT,
    RULES_FILE,
    alertmanager_config,
    grafana_files,
    llamacpp_key_file,
    node_exporter_listen_addresses,
    node_exporter_web_config,
    prometheus_config,
    rules_text,
)
from components.planning.service import Container, Run, Secret, SecretText, health_check, server_key
from components.planning.timing import container_timeouts, image_timeouts
from components.settings import StackSettings

NODE_EXPORTER_WEB_CONFIG = "/etc/node-exporter/web.yml"
HOST_ROOT = "/host"  # where node-exporter sees the host's root
GRAFANA_DATA = "/var/lib/grafana"
GRAFANA_PASSWORD_RESET_CONTAINER = f"{GRAFANA_CONTAINER}-password-reset"
# The password reaches the CLI on stdin from the environment (`$` is the shell's, not Python's): never
# on a command line, where `ps` and `docker inspect` would show it. The image's shell is busybox ash.
GRAFANA_PASSWORD_RESET_SCRIPT = (
    'printf "%s\\n" "$GF_SECURITY_ADMIN_PASSWORD" | grafana cli --homepath /usr/share/grafana '
    "--config /etc/grafana/grafana.ini admin reset-admin-password --password-from-stdin"
)
# Prometheus and Alertmanager have no login: on loopback of their host only (Grafana, with its login,
# is the way in from elsewhere; or an ssh tunnel). node-exporter answers other hosts with basic auth.
LOOPBACK = "127.0.0.1"
AUTH_LABEL = "rocm-inference.auth"
# The Prometheus images are busybox-based: wget is there, python is not.
WGET = "wget -q -O /dev/null"
STARTUP_S = 300
NODE_EXPORTER_STARTUP_S = 120
STOP_GRACE_S = 30
# A bcrypt hash's stand-in, to split node-exporter's web config around the real (secret) hash.
_HASH_MARK = "$2a$10$rocm-inference-hash-mark"


def wget_check(port: int, path: str) -> tuple[str, ...]:
    return ("CMD-SHELL", f"{WGET} http://127.0.0.1:{port}{path} || exit 1")


def node_exporter_check(address: str) -> tuple[str, ...]:
    """node-exporter answers only with basic auth: alive is its 401 to a request without it, at the
    address it listens on (`ip:port`: on the host's network, the host's `bind` address)."""
    return ("CMD-SHELL", f"wget -q -S -O /dev/null http://{address}/metrics 2>&1 | grep -q ' 401 '")


@dataclass(frozen=True)
class OneShotRun:
    """A container run to completion (components/container.py run_once) on the volume of a planned service."""

    name: str  # its container's name
    of: str  # the service whose image and cache volume it runs with, and after
    entrypoint: tuple[str, ...]
    command: tuple[str, ...]
    path: str
    secret_environment: Mapping[str, SecretText]
    host: str
    run: Run = field(default_factory=Run)
    environment: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class MonitoringPlan:
    host: str
    address: str  # the monitoring host's: Grafana is reached there
    # by name: `<host>-node-exporter` for each host, then prometheus, grafana and alertmanager
    node_exporters: Mapping[str, Container]
    services: Mapping[str, Container]
    grafana_password_reset: OneShotRun
    # Passwords generated for it, in this order, and the stack outputs' secrets.
    generated: tuple[Secret, ...]
    grafana_admin_password: Secret
    # What the plan's views show: the files its containers read (no secret in them).
    prometheus_config: Mapping[str, object]


def llamacpp_rule_files(s: StackSettings) -> dict[str, str]:
    """llama.cpp's alert rules, and those its servers' plans set (each slot's context, the decode band's low edge)."""
    planned = {
        name: PlannedServer(p.memory.n_ctx_seq, p.speed.decode_tokens_per_s.low if p.speed is not None else None)
        for name, p in llamacpp_plans(s).items()
    }
    return {LLAMACPP_RULES_FILE: llamacpp_rules_text(), PLANNED_RULES_FILE: planned_rules_text(planned)}


def monitoring_plan(s: StackSettings, labels: Mapping[str, str]) -> MonitoringPlan:
    assert s.monitoring is not None
    m = s.monitoring
    here = m.host or ""
    h = s.hosts[here]
    # Scrapes cross hosts, so node-exporter answers only with basic auth; Prometheus has the password.
    node_password = Secret("node-exporter-password", 32)
    generated = [node_password]
    if s.has_secret("grafana_admin_password"):
        grafana_password = Secret("grafana_admin_password")
    else:
        grafana_password = Secret("grafana-admin-password", 24)
        generated.append(grafana_password)
    before, _, after = node_exporter_web_config(_HASH_MARK).partition(_HASH_MARK)
    web_config: SecretText = (before, Secret(node_password.key, node_password.length, "bcrypt_hash"), after)
    node_exporters = {}
    for host_name, host in s.hosts.items():
        # As node_exporter's README runs it in Docker (v1.9.1 README.md "Docker"): the host's network and PID
        # namespaces, the host's root read-only at /host with `rslave`, `--path.rootfs=/host`; so its
        # filesystem, network and process series are the host's, not the container's.
        listen = node_exporter_listen_addresses(host.bind, m.node_exporter_port, host_name == m.host)
        node_exporters[f"{host_name}-node-exporter"] = Container(
            image=m.node_exporter_image,
            container_name=NODE_EXPORTER_CONTAINER,
            command=(
                f"--path.rootfs={HOST_ROOT}",
                "--collector.drm",  # off by default: amdgpu busy %, VRAM (it only scans card[0-9])
                *(f"--web.listen-address={a}" for a in listen),
                f"--web.config.file={NODE_EXPORTER_WEB_CONFIG}",
            ),
            internal_port=m.node_exporter_port,
            health=health_check(
                m.node_exporter_port, m.health_interval, NODE_EXPORTER_STARTUP_S, test=node_exporter_check(listen[0])
            ),
            bind=host.bind,
            host_mounts={"/": HOST_ROOT},
            # Docker refuses `rslave` on a private / ("path / is mounted on / but it is not a shared or slave
            # mount"): there node-exporter sees only what was mounted before it started.
            host_mount_propagation="rslave" if host.root_mount == "shared" else None,
            host_namespaces=True,
            # The monitoring host's node-exporter listens on HOST_GATEWAY too: the name must resolve.
            extra_hosts={HOST_GATEWAY: DOCKER_HOST_GATEWAY} if host_name == m.host else {},
            uploads={NODE_EXPORTER_WEB_CONFIG: web_config},
            labels={**labels, AUTH_LABEL: "basic-auth"},
            host=host_name,
            startup_timeout=NODE_EXPORTER_STARTUP_S,
            image_timeouts=image_timeouts(host.pull_timeout),
            container_timeouts=container_timeouts(NODE_EXPORTER_STARTUP_S, STOP_GRACE_S),
            stop_grace_seconds=STOP_GRACE_S,
        )
    secret_files: dict[str, str | SecretText] = {NODE_EXPORTER_PASSWORD_FILE: (node_password,)}
    if s.gateway is not None and s.has_secret("gateway_api_key"):
        secret_files[GATEWAY_KEY_FILE] = (Secret("gateway_api_key"),)
    for name in s.llamacpp_servers:
        key = server_key(s, name)
        if key is not None:
            secret_files[llamacpp_key_file(name)] = (key,)
    # What the services of the monitoring host share: their host, network, labels and timings. Moving
    # monitoring to another host replaces its images, volumes and containers there, as it does every other
    # service's (a provider change alone creates nothing on the new host).
    container = functools.partial(
        Container,
        bind=LOOPBACK,
        network=True,
        labels=dict(labels),
        host=here,
        startup_timeout=STARTUP_S,
        image_timeouts=image_timeouts(h.pull_timeout),
        container_timeouts=container_timeouts(STARTUP_S, STOP_GRACE_S),
        stop_grace_seconds=STOP_GRACE_S,
    )
    prometheus = container(
        image=m.prometheus_image,
        container_name=PROMETHEUS_CONTAINER,
        command=(
            f"--config.file={PROMETHEUS_CONFIG}",
            "--storage.tsdb.path=/prometheus",
            f"--storage.tsdb.retention.time={m.retention}",
            f"--web.listen-address=:{PROMETHEUS_PORT}",
        ),
        internal_port=PROMETHEUS_PORT,
        health=health_check(
            PROMETHEUS_PORT, m.health_interval, STARTUP_S, test=wget_check(PROMETHEUS_PORT, "/-/ready")
        ),
        external_port=m.prometheus_port,
        cache_volume="prometheus-data",
        cache_path="/prometheus",
        # its own host's node-exporter is on the host's network: Prometheus scrapes it there
        extra_hosts={HOST_GATEWAY: DOCKER_HOST_GATEWAY},
        uploads={
            PROMETHEUS_CONFIG: dump_yaml(prometheus_config(s), sort_keys=False),
            RULES_FILE: rules_text(),
            **(llamacpp_rule_files(s) if s.llamacpp_servers else {}),
            **secret_files,
        },
    )
    grafana = container(
        image=m.grafana_image,
        container_name=GRAFANA_CONTAINER,
        command=(),
        internal_port=GRAFANA_PORT,
        health=health_check(GRAFANA_PORT, m.health_interval, STARTUP_S, test=wget_check(GRAFANA_PORT, "/api/health")),
        external_port=m.grafana_port,
        cache_volume="grafana-data",
        cache_path=GRAFANA_DATA,
        uploads=dict(grafana_files(s)),
        environment={
            "GF_AUTH_ANONYMOUS_ENABLED": "false",
            "GF_USERS_ALLOW_SIGN_UP": "false",
            "GF_ANALYTICS_REPORTING_ENABLED": "false",
            "GF_ANALYTICS_CHECK_FOR_UPDATES": "false",
        },
        secret_environment={"GF_SECURITY_ADMIN_PASSWORD": (grafana_password,)},
        # Grafana has a login: it is the way in from elsewhere, on the host's bind address.
        bind=h.bind,
        labels={**labels, AUTH_LABEL: "login"},
    )
    services = {"prometheus": prometheus, "grafana": grafana}
    if m.alertmanager is not None:
        webhook = "monitoring.alertmanager.webhook_url"
        services["alertmanager"] = container(
            image=m.alertmanager.image,
            container_name=ALERTMANAGER_CONTAINER,
            command=(f"--config.file={ALERTMANAGER_CONFIG}", "--storage.path=/alertmanager"),
            internal_port=ALERTMANAGER_PORT,
            health=health_check(
                ALERTMANAGER_PORT, m.health_interval, STARTUP_S, test=wget_check(ALERTMANAGER_PORT, "/-/ready")
            ),
            external_port=m.alertmanager.port,
            uploads={
                ALERTMANAGER_CONFIG: dump_yaml(alertmanager_config(s), sort_keys=False),
                **({ALERTMANAGER_WEBHOOK_FILE: (Secret(webhook),)} if s.has_secret(webhook) else {}),
            },
        )
    # Grafana reads GF_SECURITY_ADMIN_PASSWORD only when it creates the admin, on its first start
    # (conf/defaults.ini: "default admin password, can be changed before first start of grafana"); the
    # data volume keeps that password. So once Grafana is up, a one-shot run of its image on its volume
    # sets the admin password with `grafana cli admin reset-admin-password --password-from-stdin`
    # (pkg/cmd/grafana-cli/commands/reset_password_command.go): the password comes on the run's stdin as
    # an env file, a secret, and the shell pipes it on, never on a command line. A new password changes
    # only that stdin, which runs it again; a failed run fails `pulumi up`, leaves nothing in state, and
    # the next `pulumi up` tries again. On the first deploy it sets what Grafana just set.
    reset = OneShotRun(
        name=GRAFANA_PASSWORD_RESET_CONTAINER,
        of="grafana",
        entrypoint=("sh", "-c"),
        command=(GRAFANA_PASSWORD_RESET_SCRIPT,),
        path=GRAFANA_DATA,
        secret_environment={"GF_SECURITY_ADMIN_PASSWORD": (grafana_password,)},
        host=here,
    )
    return MonitoringPlan(
        host=here,
        address=h.address,
        node_exporters=node_exporters,
        services=services,
        grafana_password_reset=reset,
        generated=tuple(generated),
        grafana_admin_password=grafana_password,
        prometheus_config=prometheus_config(s),
    )
