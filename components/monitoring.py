"""Metrics, dashboards and alerts: node-exporter on every host, Prometheus, Grafana and Alertmanager on one.

node-exporter runs with its `drm` collector (off by default: busy %, VRAM) and `hwmon` (edge,
junction and memory temperature, power), in the host's network and PID namespaces with the host's root
read-only at /host, as its README runs it in Docker; it listens on the host's `bind` address (and, on
the monitoring host, on Docker's address of the host, where Prometheus reaches it) and answers only
with basic auth (its web config), since scrapes cross hosts. Prometheus keeps its data in a
volume Pulumi never deletes; Grafana has its datasource and dashboards provisioned from files, anonymous
access off and its admin password a secret. Every file comes from components/planning/monitoring.py.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi

from components.container import OneShot, ServiceResources, ServiceSpec, run_once, service_resources
from components.host import RocmHost
from components.planning.catalog import dump_yaml
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
    node_exporter_listen_addresses,
    node_exporter_web_config,
)
from components.settings import MonitoringSettings

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


def wget_check(port: int, path: str) -> list[str]:
    return ["CMD-SHELL", f"{WGET} http://127.0.0.1:{port}{path} || exit 1"]


def node_exporter_check(address: str) -> list[str]:
    """node-exporter answers only with basic auth: alive is its 401 to a request without it, at the
    address it listens on (`ip:port`: on the host's network, the host's `bind` address)."""
    return ["CMD-SHELL", f"wget -q -S -O /dev/null http://{address}/metrics 2>&1 | grep -q ' 401 '"]


@dataclass(frozen=True)
class MonitoringArgs:
    settings: MonitoringSettings
    hosts: Mapping[str, RocmHost]
    # What every container is told, from components/planning/monitoring.py (no secret in them).
    prometheus_config: Mapping[str, object]
    alertmanager_config: Mapping[str, object] | None
    grafana_files: Mapping[str, str]
    rules: str
    # node-exporter's basic-auth password, and its bcrypt hash for node-exporter's web config.
    node_exporter_password: pulumi.Output[str]
    node_exporter_password_hash: pulumi.Output[str]
    grafana_admin_password: pulumi.Output[str]
    gateway_api_key: pulumi.Output[str] | None = None
    alert_webhook_url: pulumi.Output[str] | None = None
    networks: Mapping[str, Sequence[pulumi.Input[str]]] = field(default_factory=dict)  # by host
    labels: Mapping[str, str] = field(default_factory=dict)
    depends_on: Mapping[str, Sequence[pulumi.Resource]] = field(default_factory=dict)  # by host: its preflight


class Monitoring(pulumi.ComponentResource):
    prometheus_url: pulumi.Output[str]
    grafana_url: pulumi.Output[str]

    def __init__(self, name: str, args: MonitoringArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("rocm-inference:monitoring:Monitoring", name, None, opts)
        m = args.settings
        here = args.hosts[m.host or ""]
        h = here.settings
        for host_name, host in args.hosts.items():
            self._node_exporter(host_name, host, args)
        secret_files: dict[str, pulumi.Input[str]] = {NODE_EXPORTER_PASSWORD_FILE: args.node_exporter_password}
        if args.gateway_api_key is not None:
            secret_files[GATEWAY_KEY_FILE] = args.gateway_api_key

        # What the services of the monitoring host share: their host, network, labels and preflight.
        spec = functools.partial(
            ServiceSpec,
            startup_timeout=300,
            pull_timeout=h.pull_timeout,
            health_interval=15,
            bind=LOOPBACK,
            networks=list(args.networks.get(m.host or "", [])),
            labels=dict(args.labels),
            depends_on=list(args.depends_on.get(m.host or "", [])),
            # Moving monitoring to another host replaces its images, volumes and containers there, as it does
            # every other service's (a provider change alone creates nothing on the new host).
            host=m.host or "",
        )

        prometheus = service_resources(
            "prometheus",
            spec(
                image=m.prometheus_image,
                container_name=PROMETHEUS_CONTAINER,
                command=[
                    f"--config.file={PROMETHEUS_CONFIG}",
                    "--storage.tsdb.path=/prometheus",
                    f"--storage.tsdb.retention.time={m.retention}",
                    f"--web.listen-address=:{PROMETHEUS_PORT}",
                ],
                internal_port=PROMETHEUS_PORT,
                health_check=wget_check(PROMETHEUS_PORT, "/-/ready"),
                external_port=m.prometheus_port,
                cache_volume="prometheus-data",
                cache_path="/prometheus",
                # its own host's node-exporter is on the host's network: Prometheus scrapes it there
                extra_hosts={HOST_GATEWAY: DOCKER_HOST_GATEWAY},
                uploads={
                    PROMETHEUS_CONFIG: dump_yaml(dict(args.prometheus_config), sort_keys=False),
                    RULES_FILE: args.rules,
                    **secret_files,
                },
            ),
            self,
            here.provider,
        )
        grafana = service_resources(
            "grafana",
            spec(
                image=m.grafana_image,
                container_name=GRAFANA_CONTAINER,
                command=[],
                internal_port=GRAFANA_PORT,
                health_check=wget_check(GRAFANA_PORT, "/api/health"),
                external_port=m.grafana_port,
                cache_volume="grafana-data",
                cache_path=GRAFANA_DATA,
                uploads=dict(args.grafana_files),
                environment={
                    "GF_AUTH_ANONYMOUS_ENABLED": "false",
                    "GF_USERS_ALLOW_SIGN_UP": "false",
                    "GF_ANALYTICS_REPORTING_ENABLED": "false",
                    "GF_ANALYTICS_CHECK_FOR_UPDATES": "false",
                },
                secret_environment={"GF_SECURITY_ADMIN_PASSWORD": args.grafana_admin_password},
                # Grafana has a login: it is the way in from elsewhere, on the host's bind address.
                bind=h.bind,
                labels={**args.labels, AUTH_LABEL: "login"},
            ),
            self,
            here.provider,
        )
        if m.alertmanager is not None and args.alertmanager_config is not None:
            service_resources(
                "alertmanager",
                spec(
                    image=m.alertmanager.image,
                    container_name=ALERTMANAGER_CONTAINER,
                    command=[f"--config.file={ALERTMANAGER_CONFIG}", "--storage.path=/alertmanager"],
                    internal_port=ALERTMANAGER_PORT,
                    health_check=wget_check(ALERTMANAGER_PORT, "/-/ready"),
                    external_port=m.alertmanager.port,
                    uploads={
                        ALERTMANAGER_CONFIG: dump_yaml(dict(args.alertmanager_config), sort_keys=False),
                        **({ALERTMANAGER_WEBHOOK_FILE: args.alert_webhook_url} if args.alert_webhook_url else {}),
                    },
                ),
                self,
                here.provider,
            )
        self._grafana_password_reset(grafana, args, here)
        # On the monitoring host's loopback: from elsewhere through Grafana, or `ssh -L 9090:127.0.0.1:9090`.
        self.prometheus_url = prometheus.url(LOOPBACK)
        self.grafana_url = grafana.url(h.address)
        self.register_outputs(
            {
                "prometheus_url": self.prometheus_url,
                "grafana_url": self.grafana_url,
            }
        )

    def _grafana_password_reset(self, grafana: ServiceResources, args: MonitoringArgs, here: RocmHost) -> None:
        """Grafana reads GF_SECURITY_ADMIN_PASSWORD only when it creates the admin, on its first start
        (conf/defaults.ini: "default admin password, can be changed before first start of grafana"); the
        data volume keeps that password. So once Grafana is up, a one-shot run of its image on its volume
        sets the admin password with `grafana cli admin reset-admin-password --password-from-stdin`
        (pkg/cmd/grafana-cli/commands/reset_password_command.go): the password comes on the run's stdin as
        an env file, a secret, and the shell pipes it on, never on a command line. A new password changes
        only that stdin, which runs it again; a failed run fails `pulumi up`, leaves nothing in state, and
        the next `pulumi up` tries again. On the first deploy it sets what Grafana just set."""
        assert grafana.volume is not None, "Grafana keeps its data in a volume"
        run_once(
            "grafana-password-reset",
            here.shell,
            OneShot(
                name=GRAFANA_PASSWORD_RESET_CONTAINER,
                image=grafana.image.image_id,
                entrypoint=["sh", "-c"],
                command=[GRAFANA_PASSWORD_RESET_SCRIPT],
                volume=grafana.volume.name,
                path=GRAFANA_DATA,
                secret_environment={"GF_SECURITY_ADMIN_PASSWORD": args.grafana_admin_password},
            ),
            here.on_host(
                pulumi.ResourceOptions(
                    parent=self,
                    # Against the database Grafana has created and migrated (the CLI also runs beside a live
                    # Grafana: `docker exec grafana grafana cli ...` is the documented way).
                    depends_on=[grafana.container, *args.depends_on.get(args.settings.host or "", [])],
                    replacement_trigger=args.settings.host or None,
                )
            ),
        )

    def _node_exporter(self, host_name: str, host: RocmHost, args: MonitoringArgs) -> None:
        """As node_exporter's README runs it in Docker (v1.9.1 README.md "Docker"): the host's network and
        PID namespaces, the host's root read-only at /host with `rslave`, `--path.rootfs=/host`; so its
        filesystem, network and process series are the host's, not the container's."""
        m, h = args.settings, host.settings
        listen = node_exporter_listen_addresses(h.bind, m.node_exporter_port, host_name == m.host)
        service_resources(
            f"{host_name}-node-exporter",
            ServiceSpec(
                image=m.node_exporter_image,
                container_name=NODE_EXPORTER_CONTAINER,
                command=[
                    f"--path.rootfs={HOST_ROOT}",
                    "--collector.drm",  # off by default: amdgpu busy %, VRAM (it only scans card[0-9])
                    *(f"--web.listen-address={a}" for a in listen),
                    f"--web.config.file={NODE_EXPORTER_WEB_CONFIG}",
                ],
                internal_port=m.node_exporter_port,
                health_check=node_exporter_check(listen[0]),
                bind=h.bind,
                host_mounts={"/": HOST_ROOT},
                # Docker refuses `rslave` on a private / ("path / is mounted on / but it is not a shared or slave
                # mount"): there node-exporter sees only what was mounted before it started.
                host_mount_propagation="rslave" if h.root_mount == "shared" else None,
                host_namespaces=True,
                # The monitoring host's node-exporter listens on HOST_GATEWAY too: the name must resolve.
                extra_hosts={HOST_GATEWAY: DOCKER_HOST_GATEWAY} if host_name == m.host else {},
                uploads={NODE_EXPORTER_WEB_CONFIG: args.node_exporter_password_hash.apply(node_exporter_web_config)},
                startup_timeout=120,
                pull_timeout=h.pull_timeout,
                health_interval=15,
                labels={**args.labels, AUTH_LABEL: "basic-auth"},
                depends_on=list(args.depends_on.get(host_name, [])),
                host=host_name,
            ),
            self,
            host.provider,
        )
