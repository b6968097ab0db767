"""The monitoring files made from the stack (components/planning/monitoring.py), checked by the real tools.

- `promtool check config` on the generated prometheus.yml of big-chat and fleet. The container paths
  (/etc/prometheus/...) are laid out under a temporary directory: `lay_out` prefixes every such path in
  the config with that directory and writes the rules file and the secret files there, so promtool
  checks the rule file and the credentials file it names.
- `amtool check-config` on alertmanager.yml. Debian 12's amtool is 0.25, which predates the webhook's
  `url_file` (0.26): it checks the config with `url_file` swapped for `url`, and shows that 0.25 rejects
  `url_file`, the reason the image is pinned at 0.28.1. A newer amtool on PATH checks the file as it is.
- The relabelling, for real: Debian's node-exporter on the recorded dual-mi60 sysfs, behind the basic
  auth of node_exporter_web_config, scraped by Debian's Prometheus with big-chat's node job (its
  relabel rules, basic auth and password file; only the target address is local); the HTTP API shows
  the GPU series with `gpu` and `server`. Everything listens on 127.0.0.7, on free ports; the processes
  are stopped by their pid.

The binaries are installed with apt-get when missing (tests/debian.py); where that cannot be done the
tests skip with the reason, or fail when ROCM_INFERENCE_REQUIRE_ENGINE is set.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.planning.monitoring import (
    ALERTMANAGER_WEBHOOK_FILE,
    GATEWAY_KEY_FILE,
    GRAFANA_DASHBOARDS_DIR,
    NO_SERVER,
    NODE_EXPORTER_PASSWORD_FILE,
    NODE_EXPORTER_USER,
    PROMETHEUS_CONFIG,
    RULES_FILE,
    alertmanager_config,
    gpu_relabel_configs,
    grafana_files,
    hwmon_chip_suffix,
    node_exporter_web_config,
    prometheus_config,
    rules_text,
)
from components.planning.monitoring_services import monitoring_plan
from components.settings import StackSettings
from components.tools.discover import DirectoryReader, discover
from tests.stacks import load, set_key, values_of
from tests.test_monitoring_assets import DASHBOARDS, HOSTS, RULES, free_port, stop

FLEET_SECRETS = ("gateway_api_key",)
ALERTMANAGER_SECRETS = ("monitoring.alertmanager.webhook_url",)
LOCAL = "127.0.0.7"  # never 127.0.0.1's 9090/9100/3000/9093
# bcrypt (cost 5) of PASSWORD, made once with glibc's crypt(3): the tests need no bcrypt package.
PASSWORD = "relabel-test-password"
PASSWORD_HASH = "$2b$05$biIkk.aIzRkyTb/.uQGIm.gVlgghIXN9pJUyWDOnS1s3R2YInhSFG"


def settings(stack: str, **changes: Any) -> StackSettings:
    values = values_of(stack)
    for key, value in changes.items():
        values = set_key(values, key.replace("__", "."), value)
    secrets = (FLEET_SECRETS if stack == "fleet" else ()) + (
        ALERTMANAGER_SECRETS if "alertmanager" in values.get("monitoring", {}) else ()
    )
    return load(values, secrets).settings


def big_chat() -> StackSettings:
    return settings("big-chat")


def fleet() -> StackSettings:
    return settings("fleet")


def job(config: dict[str, Any], name: str) -> dict[str, Any]:
    jobs: list[dict[str, Any]] = [j for j in config["scrape_configs"] if j["job_name"] == name]
    assert len(jobs) == 1, name
    return jobs[0]


def target_table(config: dict[str, Any]) -> set[tuple[str, str, tuple[tuple[str, str], ...]]]:
    """(job, address, labels) of every target."""
    return {
        (j["job_name"], address, tuple(sorted(sc["labels"].items())))
        for j in config["scrape_configs"]
        for sc in j["static_configs"]
        for address in sc["targets"]
    }


def run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


# --- what Prometheus scrapes, and how it reaches it ---------------------------------------------------


def test_big_chat_scrapes_its_one_host_by_container_name_and_node_exporter_through_the_host_gateway() -> None:
    assert target_table(prometheus_config(big_chat())) == {
        ("vllm", "vllm:8000", (("host", "host"), ("server", "vllm"))),
        ("embeddings", "infinity-embeddings:7997", (("host", "host"), ("server", "embeddings"))),
        ("node", "host.docker.internal:9100", (("host", "host"),)),
    }


def test_fleet_scrapes_the_monitoring_host_by_container_name_and_the_others_by_address_and_published_port() -> None:
    assert target_table(prometheus_config(fleet())) == {
        ("vllm", "chat-a:8000", (("host", "gpu-a"), ("server", "chat-a"))),
        ("vllm", "gpu-b.lan:8000", (("host", "gpu-b"), ("server", "chat-b"))),
        ("vllm", "gpu-b.lan:8001", (("host", "gpu-b"), ("server", "coder"))),
        ("embeddings", "gpu-b.lan:7997", (("host", "gpu-b"), ("server", "embeddings"))),
        ("gateway", "litellm-gateway:4000", (("host", "gpu-a"),)),
        ("node", "host.docker.internal:9100", (("host", "gpu-a"),)),
        ("node", "gpu-b.lan:9100", (("host", "gpu-b"),)),
    }


def test_moving_monitoring_swaps_which_host_is_reached_by_container_name() -> None:
    config = prometheus_config(
        settings("fleet", **{"monitoring__host": "gpu-b", "monitoring__node_exporter_port": 9199})
    )
    table = target_table(config)
    assert ("vllm", "gpu-a.lan:8000", (("host", "gpu-a"), ("server", "chat-a"))) in table
    assert ("vllm", "coder:8000", (("host", "gpu-b"), ("server", "coder"))) in table  # internal port, not 8001
    assert ("embeddings", "infinity-embeddings:7997", (("host", "gpu-b"), ("server", "embeddings"))) in table
    assert ("gateway", "gpu-a.lan:4000", (("host", "gpu-a"),)) in table
    assert ("node", "gpu-a.lan:9199", (("host", "gpu-a"),)) in table
    assert ("node", "host.docker.internal:9199", (("host", "gpu-b"),)) in table  # its own port


def test_jobs_are_the_ones_the_rules_select() -> None:
    rule_jobs = set(re.findall(r'job="(\w+)"', RULES.read_text()))
    assert {j["job_name"] for j in prometheus_config(fleet())["scrape_configs"]} == rule_jobs
    assert [j["job_name"] for j in prometheus_config(big_chat())["scrape_configs"]] == ["vllm", "embeddings", "node"]


def test_gateway_job_only_with_a_gateway_and_with_the_master_key_from_a_file() -> None:
    assert "gateway" not in {j["job_name"] for j in prometheus_config(big_chat())["scrape_configs"]}
    gateway = job(prometheus_config(fleet()), "gateway")
    assert gateway["metrics_path"] == "/metrics/"
    assert gateway["authorization"] == {"type": "Bearer", "credentials_file": GATEWAY_KEY_FILE}


def test_node_jobs_use_basic_auth_with_the_password_from_a_file() -> None:
    for s in (big_chat(), fleet()):
        assert job(prometheus_config(s), "node")["basic_auth"] == {
            "username": NODE_EXPORTER_USER,
            "password_file": NODE_EXPORTER_PASSWORD_FILE,
        }


def test_alerting_only_with_alertmanager() -> None:
    assert "alerting" not in prometheus_config(fleet())
    with_am = settings("fleet", **{"monitoring__alertmanager": {}})
    assert prometheus_config(with_am)["alerting"] == {
        "alertmanagers": [{"static_configs": [{"targets": ["alertmanager:9093"]}]}]
    }


def test_scrape_interval_rule_file_and_no_secret_in_the_config() -> None:
    s = settings("fleet", **{"monitoring__scrape_interval": 30})
    config = prometheus_config(s)
    assert config["global"] == {"scrape_interval": "30s", "evaluation_interval": "30s"}
    assert config["rule_files"] == [RULES_FILE]
    text = yaml.safe_dump(config)
    assert "sk-" not in text and "password:" not in text and "credentials:" not in text


def test_health_interval_times_every_monitoring_containers_healthcheck() -> None:
    def intervals(s: StackSettings) -> set[str]:
        plan = monitoring_plan(s, {})
        containers = [*plan.node_exporters.values(), *plan.services.values()]
        assert len(plan.services) == 3, "Prometheus, Grafana and Alertmanager"
        return {c.health.interval for c in containers if c.health is not None}

    with_am: dict[str, Any] = {"monitoring__alertmanager": {}}
    assert intervals(settings("fleet", **with_am)) == {"15s"}
    assert intervals(settings("fleet", monitoring__health_interval=1, **with_am)) == {"1s"}


# --- GPU relabelling, as data ---------------------------------------------------------------------------


def rule(rules: list[dict[str, Any]], regex: str) -> dict[str, Any]:
    found = [r for r in rules if r["regex"] == regex]
    assert len(found) == 1, regex
    return found[0]


def test_chip_suffix_is_the_pci_address_cleaned_like_node_exporter() -> None:
    assert hwmon_chip_suffix("0000:03:00.0") == "0000:03:00_0"
    assert re.fullmatch(f".*_{hwmon_chip_suffix('0000:03:00.0')}", "0000:00:01_0_0000:03:00_0")
    assert re.fullmatch(f".*_{hwmon_chip_suffix('0000:00:18.3')}", "pci0000:00_0000:00:18_3")


def test_fleet_relabels_by_host_and_card_or_chip_to_gpu_and_server() -> None:
    rules = gpu_relabel_configs(fleet())
    assert rule(rules, "gpu-b;card3") == {
        "source_labels": ["host", "card"],
        "regex": "gpu-b;card3",
        "target_label": "gpu",
        "replacement": "2",
    }
    assert rule(rules, "gpu-b;.*_0000:04:00_0")["replacement"] == "1"
    assert rule(rules, "gpu-b;.*_0000:04:00_0")["source_labels"] == ["host", "chip"]
    assert rule(rules, "gpu-a;(0|1)") == {
        "source_labels": ["host", "gpu"],
        "regex": "gpu-a;(0|1)",
        "target_label": "server",
        "replacement": "chat-a",
    }
    assert rule(rules, "gpu-b;(0|1)")["replacement"] == "chat-b"
    assert rule(rules, "gpu-b;(2)")["replacement"] == "coder"
    # The drop comes last: after every gpu label is set.
    assert rules[-1] == {"source_labels": ["__name__", "gpu"], "regex": "node_drm_.*;", "action": "drop"}


def test_a_gpu_no_server_uses_gets_server_none() -> None:
    s = settings(
        "big-chat",
        **{
            "vllm__gpus": [1],
            "vllm__tensor_parallel_size": 1,
            "vllm__model": "Qwen/Qwen2.5-7B-Instruct-AWQ",
            "vllm__max_model_len": 16384,
        },
    )
    rules = gpu_relabel_configs(s)
    assert rule(rules, "host;(1)")["replacement"] == "vllm"
    assert rule(rules, "host;(0)")["replacement"] == NO_SERVER


def test_a_gpu_without_pci_gets_only_the_drm_relabel() -> None:
    s = settings(
        "big-chat",
        **{
            "host__gpus": [
                {"index": 0, "card": 1, "render": 128, "pci": "0000:03:00.0"},
                {"index": 1, "card": 2, "render": 129},
            ]
        },
    )
    rules = gpu_relabel_configs(s)
    assert [r["regex"] for r in rules if r.get("source_labels") == ["host", "chip"]] == ["host;.*_0000:03:00_0"]
    assert rule(rules, "host;card2")["replacement"] == "1"


# --- promtool and amtool ----------------------------------------------------------------------------


def relocate(value: Any, root: Path) -> Any:
    """The config with every /etc/... path under root instead."""
    if isinstance(value, dict):
        return {k: relocate(v, root) for k, v in value.items()}
    if isinstance(value, list):
        return [relocate(v, root) for v in value]
    if isinstance(value, str) and value.startswith("/etc/"):
        return f"{root}{value}"
    return value


def lay_out(config: dict[str, Any], root: Path, secrets: bool = True) -> Path:
    """prometheus.yml, the rules file and the secret files under root, as in the container; the config's
    path."""
    files = {PROMETHEUS_CONFIG: yaml.safe_dump(relocate(config, root), sort_keys=False), RULES_FILE: rules_text()}
    if secrets:
        files |= {NODE_EXPORTER_PASSWORD_FILE: PASSWORD, GATEWAY_KEY_FILE: "sk-test"}
    for path, text in files.items():
        (root / path.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
        (root / path.lstrip("/")).write_text(text)
    return root / PROMETHEUS_CONFIG.lstrip("/")


@pytest.mark.parametrize("stack", ["big-chat", "fleet"])
def test_promtool_checks_the_generated_config(promtool: str, tmp_path: Path, stack: str) -> None:
    done = run(promtool, "check", "config", str(lay_out(prometheus_config(settings(stack)), tmp_path)))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout and "rules found" in done.stdout


def test_promtool_check_reads_the_files_the_config_names(promtool: str, tmp_path: Path) -> None:
    """The check above is not vacuous: without the gateway key file it fails."""
    done = run(promtool, "check", "config", str(lay_out(prometheus_config(fleet()), tmp_path, secrets=False)))
    assert done.returncode != 0
    assert "gateway-key" in done.stdout + done.stderr


def amtool_version(amtool: str) -> tuple[int, ...]:
    done = run(amtool, "--version")
    match = re.search(r"version (\d+)\.(\d+)\.(\d+)", done.stdout + done.stderr)
    assert match, done.stdout + done.stderr
    return tuple(int(g) for g in match.groups())


def test_amtool_checks_the_alertmanager_config(amtool: str, tmp_path: Path) -> None:
    s = settings("fleet", **{"monitoring__alertmanager": {"repeat_interval": "12h"}})
    config = alertmanager_config(s)
    receiver = config["receivers"][0]["webhook_configs"][0]
    assert receiver["url_file"] == ALERTMANAGER_WEBHOOK_FILE and config["route"]["repeat_interval"] == "12h"
    path = tmp_path / "alertmanager.yml"
    if amtool_version(amtool) >= (0, 26, 0):
        path.write_text(yaml.safe_dump(relocate(config, tmp_path)))
        done = run(amtool, "check-config", str(path))
        assert done.returncode == 0, done.stdout + done.stderr
        return
    # Debian 12's amtool 0.25: url_file does not exist yet, the rest is checked with a url in its place.
    path.write_text(yaml.safe_dump(config))
    done = run(amtool, "check-config", str(path))
    assert done.returncode != 0 and "url_file" in done.stdout + done.stderr
    receiver.pop("url_file")
    receiver["url"] = "https://ntfy.example/alerts"
    path.write_text(yaml.safe_dump(config))
    done = run(amtool, "check-config", str(path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 receivers" in done.stdout


# --- Grafana and the rules ---------------------------------------------------------------------------


def test_grafana_files_provision_the_datasource_the_dashboards_name_and_every_dashboard() -> None:
    files = grafana_files(settings("big-chat", **{"monitoring__scrape_interval": 20}))
    (source,) = yaml.safe_load(files["/etc/grafana/provisioning/datasources/prometheus.yaml"])["datasources"]
    assert source["uid"] == "prometheus" and source["url"] == "http://prometheus:9090"
    assert source["jsonData"]["timeInterval"] == "20s"
    (provider,) = yaml.safe_load(files["/etc/grafana/provisioning/dashboards/rocm-inference.yaml"])["providers"]
    assert provider["type"] == "file" and provider["options"]["path"] == GRAFANA_DASHBOARDS_DIR
    for path in DASHBOARDS.glob("*.json"):
        text = files[f"{GRAFANA_DASHBOARDS_DIR}/{path.name}"]
        assert text == path.read_text()
        assert '"uid": "prometheus"' in text
    assert len(files) == 2 + len(list(DASHBOARDS.glob("*.json")))
    assert yaml.safe_load(grafana_files()["/etc/grafana/provisioning/datasources/prometheus.yaml"])["datasources"][0][
        "jsonData"
    ] == {"timeInterval": "15s"}


def test_rules_text_is_the_rules_file() -> None:
    assert rules_text() == RULES.read_text()


def test_node_exporter_web_config_has_one_user_with_the_hash() -> None:
    assert yaml.safe_load(node_exporter_web_config(PASSWORD_HASH)) == {
        "basic_auth_users": {NODE_EXPORTER_USER: PASSWORD_HASH}
    }


# --- the relabelling, for real --------------------------------------------------------------------


def wait_for(process: subprocess.Popen[bytes], url: str, status: int = 200) -> None:
    """Until url answers with this status (node-exporter: 401 without credentials; Prometheus's /-/ready:
    200 once its storage is open)."""
    deadline = time.monotonic() + 20
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == status:
                    return
        except urllib.error.HTTPError as exc:
            if exc.code == status:
                return
        except OSError:
            pass
        assert process.poll() is None, f"{url}: the process exited with {process.returncode}"
        assert time.monotonic() < deadline, f"{url} did not answer {status}"
        time.sleep(0.1)


@pytest.fixture
def node_exporter_on_dual_mi60(node_exporter: str, tmp_path: Path) -> Iterator[str]:
    """node-exporter (drm, hwmon) on the recorded dual-mi60 sysfs, behind basic auth; its address."""
    web = tmp_path / "node-exporter-web.yml"
    web.write_text(node_exporter_web_config(PASSWORD_HASH))
    address = f"{LOCAL}:{free_port(LOCAL)}"
    process = subprocess.Popen(
        [
            node_exporter,
            "--collector.disable-defaults",
            "--collector.drm",
            "--collector.hwmon",
            f"--path.sysfs={HOSTS / 'dual-mi60' / 'sys'}",
            f"--web.listen-address={address}",
            f"--web.config.file={web}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(process, f"http://{address}/metrics", status=401)
        yield address
    finally:
        stop(process)


def query(address: str, promql: str) -> list[dict[str, Any]]:
    url = f"http://{address}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(url, timeout=5) as response:
        body = json.loads(response.read())
    assert body["status"] == "success", body
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def gpu_labels(result: list[dict[str, Any]], key: str) -> dict[str, tuple[str | None, str | None]]:
    """`key` label -> (gpu, server) of each series."""
    return {r["metric"][key]: (r["metric"].get("gpu"), r["metric"].get("server")) for r in result}


def test_node_exporter_asks_for_the_password(node_exporter_on_dual_mi60: str) -> None:
    url = f"http://{node_exporter_on_dual_mi60}/metrics"
    with pytest.raises(urllib.error.HTTPError) as denied:
        urllib.request.urlopen(url, timeout=5)
    assert denied.value.code == 401
    token = base64.b64encode(f"{NODE_EXPORTER_USER}:{PASSWORD}".encode()).decode()
    with urllib.request.urlopen(urllib.request.Request(url, headers={"Authorization": f"Basic {token}"})) as response:
        assert b'node_drm_gpu_busy_percent{card="card1"}' in response.read()


def test_prometheus_relabels_the_gpu_series_of_node_exporter_as_big_chat_says(
    prometheus: str, node_exporter_on_dual_mi60: str, tmp_path: Path
) -> None:
    s = big_chat()
    # The stack's GPUs are the fixture's, as discovery reads them: the labels below are not a coincidence.
    recorded = discover(DirectoryReader(HOSTS / "dual-mi60")).gpus
    assert {(g.index, g.card, g.pci) for g in recorded} == {(g.index, g.card, g.pci) for g in s.hosts["host"].gpus}
    node = job(prometheus_config(s), "node")
    (static,) = node["static_configs"]
    node["static_configs"] = [{"targets": [node_exporter_on_dual_mi60], "labels": static["labels"]}]
    config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"}, "scrape_configs": [node]}
    path = lay_out(config, tmp_path)
    address = f"{LOCAL}:{free_port(LOCAL)}"
    process = subprocess.Popen(
        [
            prometheus,
            f"--config.file={path}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address={address}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(process, f"http://{address}/-/ready")
        deadline = time.monotonic() + 30
        while not query(address, 'node_drm_gpu_busy_percent{job="node"}'):
            assert process.poll() is None and time.monotonic() < deadline, "no scrape came in"
            time.sleep(0.2)
        (up,) = query(address, 'up{job="node"}')
        assert up["value"][1] == "1" and up["metric"]["host"] == "host"

        # drm: card1/card2 -> GPUs 0/1 of server vllm; card0 (the BMC's VGA, all zeros) dropped.
        busy = query(address, "node_drm_gpu_busy_percent")
        assert gpu_labels(busy, "card") == {"card1": ("0", "vllm"), "card2": ("1", "vllm")}
        assert not query(address, 'node_drm_memory_vram_size_bytes{card="card0"}')
        assert {r["metric"]["card"] for r in query(address, "node_drm_card_info")} == {"card1", "card2"}

        # hwmon: the amdgpu chips -> GPUs 0/1 of vllm; the CPU's k10temp keeps no gpu and no server.
        names = query(address, "node_hwmon_chip_names")
        assert gpu_labels(names, "chip") == {
            "0000:00:01_0_0000:03:00_0": ("0", "vllm"),
            "0000:80:01_0_0000:83:00_0": ("1", "vllm"),
            "pci0000:00_0000:00:18_3": (None, None),
        }
        assert all("gpu" not in r["metric"] for r in names if r["metric"]["chip_name"] != "amdgpu")

        # GpuTooHot's join keeps gpu and server: junction 81 and 74 °C as recorded.
        junction = query(
            address,
            'node_hwmon_temp_celsius{job="node"} * on(host, chip, sensor) group_left(label) '
            'node_hwmon_sensor_label{job="node", label="junction"}',
        )
        assert {(r["metric"]["gpu"], r["metric"]["server"], float(r["value"][1])) for r in junction} == {
            ("0", "vllm", 81.0),
            ("1", "vllm", 74.0),
        }
    finally:
        stop(process)
