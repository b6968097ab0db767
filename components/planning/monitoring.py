"""What Prometheus, Alertmanager, Grafana and node-exporter are told: their files, made from the stack
(pure, free of Pulumi).

Prometheus runs on the monitoring host. There, every container of the stack shares a user-defined
Docker network with it, so a target is `<container>:<internal port>`; on every other host a target is
`<host address>:<published port>`. node-exporter is the exception: it runs in the host's network
namespace (node_exporter's README, "Docker"), so no Docker network reaches it by name; on every host it
listens on the host's `bind` address, and on the monitoring host also on HOST_GATEWAY, the name Docker
maps to its own address of the host (`host-gateway`), which Prometheus scrapes: the `bind` address may
be loopback, which no container reaches. Every target carries `host` (the host key); vLLM and embeddings
targets also carry `server` (the server key, or `embeddings`). Jobs and labels are the contract of
monitoring/README-notes.md, which the alert rules and dashboards select on.

node-exporter's GPU series are relabelled to carry `gpu` (the ROCm index) and `server` (the server
that owns the GPU, or `none`): drm series by their `card` label, hwmon series by the PCI address at the
end of their `chip` label, both keyed by `host` because card numbers and PCI addresses are per host.
drm series that got no `gpu` are dropped: node-exporter 1.5 reports a card without amdgpu (a BMC's
VGA, an iGPU) with zeros.

No secret is in these files: Prometheus reads node-exporter's password and the gateway's master key
from files under SECRETS_DIR, Alertmanager its webhook URL from ALERTMANAGER_WEBHOOK_FILE
(`url_file`, Alertmanager 0.26 and later; 0.28.0 fixed a crash with it, and we pin 0.28.1).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from components.planning.catalog import dump_yaml
from components.planning.engines import EMBEDDINGS_ENGINE, engine
from components.planning.engines.llamacpp_monitoring import JOB_LLAMACPP, PLANNED_RULES_FILE, scrape_job
from components.planning.engines.llamacpp_monitoring import RULES_FILE as LLAMACPP_RULES_FILE
from components.planning.engines.llamacpp_monitoring import grafana_files as llamacpp_grafana_files
from components.planning.gateway import GATEWAY_PORT

# Re-exported: the components and tests read them here.
from components.planning.monitoring_paths import GRAFANA_DASHBOARDS_DIR as GRAFANA_DASHBOARDS_DIR
from components.planning.monitoring_paths import MONITORING_DIR as MONITORING_DIR
from components.planning.monitoring_paths import SECRETS_DIR as SECRETS_DIR
from components.planning.service import server_key
from components.settings import StackSettings

PROMETHEUS_CONFIG = "/etc/prometheus/prometheus.yml"
RULES_FILE = "/etc/prometheus/alerts.rules.yml"
NODE_EXPORTER_PASSWORD_FILE = f"{SECRETS_DIR}/node-exporter-password"  # basic auth towards node-exporter
GATEWAY_KEY_FILE = f"{SECRETS_DIR}/gateway-key"  # LiteLLM 1.108.5's /metrics/ needs the master key (Bearer)
NODE_EXPORTER_USER = "prometheus"
ALERTMANAGER_CONFIG = "/etc/alertmanager/alertmanager.yml"
ALERTMANAGER_WEBHOOK_FILE = "/etc/alertmanager/webhook-url"
GRAFANA_PROVISIONING_DIR = "/etc/grafana/provisioning"
GRAFANA_DATASOURCE_FILE = f"{GRAFANA_PROVISIONING_DIR}/datasources/prometheus.yaml"
GRAFANA_DASHBOARD_PROVIDER_FILE = f"{GRAFANA_PROVISIONING_DIR}/dashboards/rocm-inference.yaml"
# Outside /var/lib/grafana, the data volume, so that a dashboard file is replaced with the container.

# Container names and ports inside the containers (fixed; the published ports are settings).
PROMETHEUS_CONTAINER, PROMETHEUS_PORT = "prometheus", 9090
GRAFANA_CONTAINER, GRAFANA_PORT = "grafana", 3000
NODE_EXPORTER_CONTAINER = "node-exporter"  # on the host's network: it listens on monitoring.node_exporter_port
ALERTMANAGER_CONTAINER, ALERTMANAGER_PORT = "alertmanager", 9093
# How Prometheus reaches the node-exporter of its own host: both containers map this name to Docker's
# `host-gateway` (the daemon's address of the host, Docker 20.10 and later).
HOST_GATEWAY = "host.docker.internal"
DOCKER_HOST_GATEWAY = "host-gateway"

# Job names: the alert rules and dashboards select on these (monitoring/alerts.rules.yml).
JOB_VLLM = "vllm"
JOB_EMBEDDINGS = "embeddings"
JOB_GATEWAY = "gateway"
JOB_NODE = "node"
EMBEDDINGS_SERVER = "embeddings"  # the `server` label of the embeddings target
NO_SERVER = "none"  # the `server` label of a GPU that no server uses
GATEWAY_METRICS_PATH = "/metrics/"  # LiteLLM redirects /metrics to /metrics/
DATASOURCE_UID = "prometheus"  # what every dashboard panel and variable names


@dataclass(frozen=True)
class Target:
    """One scrape target as Prometheus reaches it."""

    job: str
    address: str  # host:port
    labels: dict[str, str]
    same_host: bool  # on Prometheus's host: by container name over the Docker network (node-exporter: HOST_GATEWAY)


def duration(seconds: int) -> str:
    """A Prometheus duration: 15 -> "15s"."""
    return f"{seconds}s"


def _monitoring_host(s: StackSettings) -> str:
    assert s.monitoring is not None, "the stack has no monitoring section"
    assert s.monitoring.host is not None, "monitoring.host is filled in by validation"
    return s.monitoring.host


def targets(s: StackSettings) -> list[Target]:
    """Every target Prometheus scrapes, job by job: vLLM servers, embeddings, gateway, node-exporters."""
    assert s.monitoring is not None
    here = _monitoring_host(s)

    def target(job: str, host: str, container: str, internal: int, published: int, **labels: str) -> Target:
        same = host == here
        address = f"{container}:{internal}" if same else f"{s.hosts[host].address}:{published}"
        return Target(job, address, {"host": host, **labels}, same)

    out = []
    for name, srv in s.every_server.items():
        e = engine(srv.engine)
        out.append(target(e.scrape_job, srv.host or "", srv.container_name or name, e.port, srv.port, server=name))
    if s.embeddings is not None:
        emb, e = s.embeddings, engine(EMBEDDINGS_ENGINE)
        out.append(target(e.scrape_job, emb.host or "", emb.container_name, e.port, emb.port, server=EMBEDDINGS_SERVER))
    if s.gateway is not None:
        g = s.gateway
        out.append(target(JOB_GATEWAY, g.host or "", g.container_name, GATEWAY_PORT, g.port))
    port = s.monitoring.node_exporter_port  # on the host's network: the port it listens on, no mapping
    for host in s.hosts:
        address = f"{HOST_GATEWAY}:{port}" if host == here else f"{s.hosts[host].address}:{port}"
        out.append(Target(JOB_NODE, address, {"host": host}, host == here))
    return out


def listen_address(ip: str, port: int) -> str:
    """`ip:port` for a Go listener, an IPv6 address in brackets."""
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def node_exporter_listen_addresses(bind: str, port: int, monitoring_host: bool) -> list[str]:
    """Where a node-exporter on the host's network listens (`--web.listen-address` repeats): the host's
    `bind` address, and on the monitoring host also HOST_GATEWAY, which Prometheus's container reaches."""
    return [listen_address(bind, port), *([f"{HOST_GATEWAY}:{port}"] if monitoring_host else [])]


def hwmon_chip_suffix(pci: str) -> str:
    """The end of the `chip` label node-exporter gives a PCI device's hwmon: its address, cleaned the way
    `hwmonName()` does (lower case, `[^a-z0-9:_]` -> `_`): 0000:03:00.0 -> 0000:03:00_0. The full label
    starts with the parent bridge (`0000:00:01_0_0000:03:00_0`), which discovery does not record."""
    return re.sub(r"[^a-z0-9:_]", "_", pci.lower())


def gpu_owners(s: StackSettings, host: str) -> dict[int, str]:
    """ROCm index -> the server key using that GPU, for one host."""
    return {index: name for name, srv in s.on_host(host).items() for index in srv.gpus}


def gpu_relabel_configs(s: StackSettings) -> list[dict[str, Any]]:
    """The node job's metric_relabel_configs: drm `card` and hwmon `chip` -> `gpu`, `gpu` -> `server`,
    then drop the drm series that are no GPU. Host and server keys are `[a-z0-9-]` and PCI addresses hex,
    colons and underscores: nothing in the regexes needs escaping."""
    cards: list[dict[str, Any]] = []
    chips: list[dict[str, Any]] = []
    servers: list[dict[str, Any]] = []
    for host, settings in s.hosts.items():
        owners = gpu_owners(s, host)
        by_server: dict[str, list[int]] = {}
        for gpu in settings.gpus:
            cards.append(
                {
                    "source_labels": ["host", "card"],
                    "regex": f"{host};card{gpu.card}",
                    "target_label": "gpu",
                    "replacement": str(gpu.index),
                }
            )
            if gpu.pci is not None:
                chips.append(
                    {
                        "source_labels": ["host", "chip"],
                        "regex": f"{host};.*_{hwmon_chip_suffix(gpu.pci)}",
                        "target_label": "gpu",
                        "replacement": str(gpu.index),
                    }
                )
            by_server.setdefault(owners.get(gpu.index, NO_SERVER), []).append(gpu.index)
        for server, indices in by_server.items():
            servers.append(
                {
                    "source_labels": ["host", "gpu"],
                    "regex": f"{host};({'|'.join(str(i) for i in sorted(indices))})",
                    "target_label": "server",
                    "replacement": server,
                }
            )
    drop = {"source_labels": ["__name__", "gpu"], "regex": "node_drm_.*;", "action": "drop"}
    return [*cards, *chips, *servers, drop]


def _static_configs(found: list[Target]) -> list[dict[str, Any]]:
    return [{"targets": [t.address], "labels": dict(t.labels)} for t in found]


def llamacpp_key_file(server: str) -> str:
    """Where Prometheus reads a llama.cpp server's key (its Bearer credential)."""
    return f"{SECRETS_DIR}/llamacpp-{server}-key"


def prometheus_config(s: StackSettings) -> dict[str, Any]:
    """Prometheus's prometheus.yml, as data."""
    assert s.monitoring is not None
    m = s.monitoring
    by_job: dict[str, list[Target]] = {}
    for t in targets(s):
        by_job.setdefault(t.job, []).append(t)
    # Each engine's servers under its own job (in the order of their first server), then the embeddings'.
    served = [j for j in by_job if j not in (JOB_EMBEDDINGS, JOB_GATEWAY, JOB_NODE)]
    jobs: list[dict[str, Any]] = []
    for job in (*served, JOB_EMBEDDINGS):
        if job == JOB_LLAMACPP:
            # Each llama.cpp server has its own key, and a job reads one credentials file: one scrape config per
            # server, each labelled job="llamacpp" as the alert rules select (monitoring/llamacpp/alerts.rules.yml).
            for t in by_job[job]:
                name = t.labels["server"]
                key = llamacpp_key_file(name) if server_key(s, name) is not None else None
                jobs.append(
                    {
                        **scrape_job(_static_configs([t]), key),
                        "job_name": f"{job}-{name}",
                        "relabel_configs": [{"target_label": "job", "replacement": job}],
                    }
                )
        elif job in by_job:
            jobs.append({"job_name": job, "static_configs": _static_configs(by_job[job])})
    if JOB_GATEWAY in by_job:
        jobs.append(
            {
                "job_name": JOB_GATEWAY,
                "metrics_path": GATEWAY_METRICS_PATH,
                "authorization": {"type": "Bearer", "credentials_file": GATEWAY_KEY_FILE},
                "static_configs": _static_configs(by_job[JOB_GATEWAY]),
            }
        )
    jobs.append(
        {
            "job_name": JOB_NODE,
            "basic_auth": {"username": NODE_EXPORTER_USER, "password_file": NODE_EXPORTER_PASSWORD_FILE},
            "static_configs": _static_configs(by_job[JOB_NODE]),
            "metric_relabel_configs": gpu_relabel_configs(s),
        }
    )
    config: dict[str, Any] = {
        "global": {"scrape_interval": duration(m.scrape_interval), "evaluation_interval": duration(m.scrape_interval)},
        # llama.cpp's rules, static and planned (engines/llamacpp_monitoring.py), where a stack has its servers.
        "rule_files": [RULES_FILE, *([LLAMACPP_RULES_FILE, PLANNED_RULES_FILE] if s.llamacpp_servers else [])],
    }
    if m.alertmanager is not None:
        config["alerting"] = {
            "alertmanagers": [{"static_configs": [{"targets": [f"{ALERTMANAGER_CONTAINER}:{ALERTMANAGER_PORT}"]}]}]
        }
    config["scrape_configs"] = jobs
    return config


def node_exporter_web_config(bcrypt_hash: str) -> str:
    """node-exporter's --web.config.file: basic auth for NODE_EXPORTER_USER with this bcrypt hash
    (exporter-toolkit's format; pulumi-random's RandomPassword.bcrypt_hash is one)."""
    return dump_yaml({"basic_auth_users": {NODE_EXPORTER_USER: bcrypt_hash}}, sort_keys=False)


def alertmanager_config(s: StackSettings) -> dict[str, Any]:
    """Alertmanager's alertmanager.yml, as data: every alert to one webhook whose URL is read from a file."""
    assert s.monitoring is not None and s.monitoring.alertmanager is not None, "the stack has no alertmanager"
    a = s.monitoring.alertmanager
    return {
        "route": {
            "receiver": "webhook",
            "group_by": ["alertname", "host", "server"],
            "group_wait": "30s",
            "group_interval": "5m",
            "repeat_interval": a.repeat_interval,
        },
        "receivers": [
            {
                "name": "webhook",
                "webhook_configs": [{"url_file": ALERTMANAGER_WEBHOOK_FILE, "send_resolved": True}],
            }
        ],
    }


def dashboards() -> dict[str, str]:
    """monitoring/dashboards/*.json: file name -> content."""
    return {p.name: p.read_text() for p in sorted((MONITORING_DIR / "dashboards").glob("*.json"))}


def grafana_files(s: StackSettings | None = None) -> dict[str, str]:
    """Grafana's provisioning (the Prometheus datasource, a file provider) and the dashboards: path in the
    container -> content. The datasource's timeInterval is the scrape interval (15s without a stack), so
    the dashboards' $__rate_interval spans enough scrapes."""
    interval = 15 if s is None or s.monitoring is None else s.monitoring.scrape_interval
    datasource = {
        "apiVersion": 1,
        "datasources": [
            {
                "name": "Prometheus",
                "type": "prometheus",
                "uid": DATASOURCE_UID,
                "access": "proxy",
                "url": f"http://{PROMETHEUS_CONTAINER}:{PROMETHEUS_PORT}",
                "isDefault": True,
                "editable": False,
                "jsonData": {"timeInterval": duration(interval)},
            }
        ],
    }
    provider = {
        "apiVersion": 1,
        "providers": [
            {
                "name": "rocm-inference",
                "folder": "rocm-inference",
                "type": "file",
                "disableDeletion": True,
                "allowUiUpdates": False,
                "options": {"path": GRAFANA_DASHBOARDS_DIR},
            }
        ],
    }
    files = {
        GRAFANA_DATASOURCE_FILE: dump_yaml(datasource, sort_keys=False),
        GRAFANA_DASHBOARD_PROVIDER_FILE: dump_yaml(provider, sort_keys=False),
    }
    files.update({f"{GRAFANA_DASHBOARDS_DIR}/{name}": text for name, text in dashboards().items()})
    if s is not None and s.llamacpp_servers:
        files.update(llamacpp_grafana_files())
    return files


def rules_text() -> str:
    """monitoring/alerts.rules.yml, as it is."""
    return (MONITORING_DIR / "alerts.rules.yml").read_text()
