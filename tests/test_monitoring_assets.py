"""The monitoring assets (monitoring/): alert rules run through promtool, dashboards checked, node-exporter
run for real on the recorded host trees.

- `promtool check rules` and `promtool test rules` (Debian's prometheus package, 2.x).
- Every metric name in the rules and dashboards is one vLLM 0.11, prometheus_client, Prometheus or
  node-exporter exposes (an allow-list: a `vllm:num_preemptions` without `_total`, or the hidden
  `vllm:gpu_cache_usage_perc`, fails).
- Debian's prometheus-node-exporter (1.5.0) with only its drm and hwmon collectors, `--path.sysfs` on
  tests/fixtures/hosts/<host>/sys: the GPU series come out with the card and chip names the relabel
  rules in monitoring/README-notes.md expect.

The binaries are installed with apt-get when missing (tests/debian.py); where that cannot be done the
tests skip with the reason, or fail when ROCM_INFERENCE_REQUIRE_ENGINE is set (CI).
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.planning.engines.llamacpp_monitoring import METRICS as LLAMACPP_METRICS
from components.tools.discover import DirectoryReader, discover
from tests.conftest import ROOT

MONITORING = ROOT / "monitoring"
RULES = MONITORING / "alerts.rules.yml"
RULE_TESTS = MONITORING / "alerts.test.yml"
DASHBOARDS = MONITORING / "dashboards"
HOSTS = Path(__file__).resolve().parent / "fixtures" / "hosts"
# Every dashboard by the name Grafana gets it under: the shared ones, and llama.cpp's (monitoring/llamacpp/),
# provisioned where a stack has a llama.cpp server.
DASHBOARD_FILES = {
    "vllm.json": DASHBOARDS / "vllm.json",
    "gpus.json": DASHBOARDS / "gpus.json",
    "llamacpp.json": MONITORING / "llamacpp" / "dashboard.json",
}

REQUIRED_ALERTS = {
    "VllmDown",
    "VllmStalled",
    "VllmKvCacheFull",
    "VllmQueueBacklog",
    "VllmPreempting",
    "EmbeddingsDown",
    "GatewayDown",
    "NodeExporterDown",
    "VllmRestarting",
    "GpuTooHot",
}

# vLLM 0.11 (vllm/v1/metrics/loggers.py at v0.11.2+gfx906): counters are scraped with `_total`, histograms
# as _bucket/_sum/_count. vllm:gpu_cache_usage_perc and vllm:gpu_prefix_cache_* are hidden in 0.11.
VLLM_GAUGES = {
    "num_requests_running",
    "num_requests_waiting",
    "kv_cache_usage_perc",
    "engine_sleep_state",
    "cache_config_info",
    "lora_requests_info",
}
VLLM_COUNTERS = {
    "prompt_tokens",
    "generation_tokens",
    "request_success",
    "num_preemptions",
    "prefix_cache_queries",
    "prefix_cache_hits",
    "corrupted_requests",
}
VLLM_HISTOGRAMS = {
    "time_to_first_token_seconds",
    "inter_token_latency_seconds",
    "e2e_request_latency_seconds",
    "request_queue_time_seconds",
    "request_prefill_time_seconds",
    "request_decode_time_seconds",
    "request_inference_time_seconds",
    "request_prompt_tokens",
    "request_generation_tokens",
    "iteration_tokens_total",
    "request_params_max_tokens",
    "request_params_n",
    "request_max_num_generation_tokens",
    "request_time_per_output_token_seconds",
    "time_per_output_token_seconds",
}
# node-exporter 1.5.0: drm collector (label card) and the hwmon series an amdgpu chip yields.
NODE_EXPORTER = {
    "node_drm_card_info",
    "node_drm_gpu_busy_percent",
    *(f"node_drm_memory_{kind}_{what}_bytes" for kind in ("vram", "vis_vram", "gtt") for what in ("used", "size")),
    "node_hwmon_chip_names",
    "node_hwmon_sensor_label",
    "node_hwmon_temp_celsius",
    "node_hwmon_temp_crit_celsius",
    "node_hwmon_temp_crit_hyst_celsius",
    "node_hwmon_temp_emergency_celsius",
    "node_hwmon_power_average_watt",
    "node_hwmon_power_cap_watt",
    "node_hwmon_power_cap_max_watt",
    "node_hwmon_power_cap_min_watt",
    "node_hwmon_in_volts",
}
KNOWN_METRICS = frozenset(
    {f"vllm:{name}" for name in VLLM_GAUGES}
    | {f"vllm:{name}_total" for name in VLLM_COUNTERS}
    | {f"vllm:{name}_{part}" for name in VLLM_HISTOGRAMS for part in ("bucket", "sum", "count")}
    | {"process_start_time_seconds", "up"}  # prometheus_client's process collector; Prometheus itself
    | NODE_EXPORTER
    | set(LLAMACPP_METRICS)  # llama-server's, read from its source (components/planning/engines/llamacpp_monitoring.py)
)

PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool"}
PROMQL_WORDS |= {"offset", "inf", "nan"}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: identifiers that are not functions, keywords, label
    names (in `{...}` or `by (...)`), strings, durations or Grafana variables."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"(?<![\w.$])[A-Za-z_:][A-Za-z0-9_:]*", text):
        if text[match.end() :].lstrip().startswith("(") or match.group(0).lower() in PROMQL_WORDS:
            continue
        names.add(match.group(0))
    return names


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def alert_rules() -> list[dict[str, Any]]:
    return [rule for group in load_yaml(RULES)["groups"] for rule in group["rules"] if "alert" in rule]


def dashboard(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(DASHBOARD_FILES[name].read_text())
    return doc


def panels(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in doc["panels"] if p["type"] != "row"]


def dashboard_exprs(doc: dict[str, Any]) -> list[str]:
    """Every query of a dashboard: panel targets, and the selectors of its `label_values` variables."""
    exprs = [t["expr"] for p in panels(doc) for t in p["targets"]]
    for var in doc["templating"]["list"]:
        query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
        selector = re.fullmatch(r"label_values\((.*),\s*\w+\)", query)
        assert selector, f"variable {var['name']}: {query}"
        exprs.append(selector.group(1))
    return exprs


def run(*cmd: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=120)


# --- alert rules -------------------------------------------------------------------------------------


def test_promtool_checks_the_rules(promtool: str) -> None:
    done = run(promtool, "check", "rules", str(RULES))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in done.stdout


def test_promtool_unit_tests_pass(promtool: str) -> None:
    done = run(promtool, "test", "rules", RULE_TESTS.name, cwd=MONITORING)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_the_unit_tests_catch_a_counter_without_total(promtool: str, tmp_path: Path) -> None:
    """The upstream example's bug (`rate(vllm:num_preemptions[5m])` never fires) fails the unit tests."""
    (tmp_path / RULES.name).write_text(RULES.read_text().replace("vllm:num_preemptions_total", "vllm:num_preemptions"))
    (tmp_path / RULE_TESTS.name).write_text(RULE_TESTS.read_text())
    done = run(promtool, "test", "rules", RULE_TESTS.name, cwd=tmp_path)
    assert done.returncode != 0
    assert "alertname: VllmPreempting" in done.stdout + done.stderr


def test_every_alert_required_is_there_with_severity_summary_description_and_runbook() -> None:
    rules = alert_rules()
    assert {r["alert"] for r in rules} >= REQUIRED_ALERTS
    for rule in rules:
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
        for key in ("summary", "description", "runbook"):
            assert len(rule["annotations"].get(key, "")) > 20, f"{rule['alert']}: {key}"


def test_every_alert_is_unit_tested_firing_and_silent() -> None:
    fired: set[str] = set()
    silent: set[str] = set()
    for group in load_yaml(RULE_TESTS)["tests"]:
        for case in group.get("alert_rule_test", []):
            (fired if case.get("exp_alerts") else silent).add(case["alertname"])
    names = {r["alert"] for r in alert_rules()}
    assert fired == names
    # Where no case expects silence, the group's healthy neighbour series stay out of exp_alerts.
    assert {"VllmDown", "VllmStalled", "VllmKvCacheFull", "VllmPreempting", "VllmRestarting", "GpuTooHot"} <= silent


# --- metric names ------------------------------------------------------------------------------------


def test_metric_name_extraction() -> None:
    assert metric_names(
        'histogram_quantile(0.95, sum by (le, host) (rate(vllm:e2e_request_latency_seconds_bucket{host=~"$host"}[$__rate_interval])))'
    ) == {"vllm:e2e_request_latency_seconds_bucket"}
    assert metric_names(
        'node_hwmon_temp_celsius{job="node"} * on(host, chip, sensor) group_left(label) node_hwmon_sensor_label{label="junction"} > 95'
    ) == {"node_hwmon_temp_celsius", "node_hwmon_sensor_label"}
    assert metric_names("min_over_time((a + b)[5m:1m]) > 0 and (increase(c[5m]) + 1e3) == 0 offset 5m") == {
        "a",
        "b",
        "c",
    }


@pytest.mark.parametrize(
    "wrong",
    ["rate(vllm:num_preemptions[5m]) > 0", "vllm:gpu_cache_usage_perc > 0.95", "rate(vllm:generation_tokens[1m])"],
)
def test_names_vllm_0_11_does_not_expose_are_rejected(wrong: str) -> None:
    assert metric_names(wrong) - KNOWN_METRICS


def test_rules_use_only_known_metric_names() -> None:
    for rule in alert_rules():
        unknown = metric_names(rule["expr"]) - KNOWN_METRICS
        assert not unknown, f"{rule['alert']}: {sorted(unknown)}"


@pytest.mark.parametrize("name", list(DASHBOARD_FILES))
def test_dashboards_use_only_known_metric_names(name: str) -> None:
    for expr in dashboard_exprs(dashboard(name)):
        unknown = metric_names(expr) - KNOWN_METRICS
        assert not unknown, f"{name}: {sorted(unknown)} in {expr}"


# --- dashboards --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(DASHBOARD_FILES))
def test_dashboard_is_grafana_12_json_on_the_prometheus_datasource_templated_by_host_and_server(name: str) -> None:
    doc = dashboard(name)
    assert doc["schemaVersion"] == 41  # Grafana 12.0's; later 12.x migrate it forward on load
    assert doc["uid"] and len(doc["uid"]) <= 40
    assert [v["name"] for v in doc["templating"]["list"]] == ["host", "server"]
    for var in doc["templating"]["list"]:
        assert var["datasource"] == {"type": "prometheus", "uid": "prometheus"}
    ids = [p["id"] for p in panels(doc)]
    assert len(ids) == len(set(ids))
    for panel in panels(doc):
        assert panel["datasource"] == {"type": "prometheus", "uid": "prometheus"}, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == {"type": "prometheus", "uid": "prometheus"}, panel["title"]
            assert 'host=~"$host"' in target["expr"] and 'server=~"$server"' in target["expr"], panel["title"]


def test_vllm_dashboard_covers_load_cache_latency_throughput_and_preemptions() -> None:
    used = set().union(*(metric_names(e) for e in dashboard_exprs(dashboard("vllm.json"))))
    assert {
        "vllm:num_requests_running",
        "vllm:num_requests_waiting",
        "vllm:kv_cache_usage_perc",
        "vllm:time_to_first_token_seconds_bucket",
        "vllm:e2e_request_latency_seconds_bucket",
        "vllm:prompt_tokens_total",
        "vllm:generation_tokens_total",
        "vllm:num_preemptions_total",
    } <= used
    exprs = " ".join(dashboard_exprs(dashboard("vllm.json")))
    assert "histogram_quantile(0.5," in exprs and "histogram_quantile(0.95," in exprs


def test_gpu_dashboard_covers_busy_vram_temperatures_and_power_with_gpu_and_server_in_every_legend() -> None:
    doc = dashboard("gpus.json")
    used = set().union(*(metric_names(e) for e in dashboard_exprs(doc)))
    assert {
        "node_drm_gpu_busy_percent",
        "node_drm_memory_vram_used_bytes",
        "node_drm_memory_vram_size_bytes",
        "node_hwmon_temp_celsius",
        "node_hwmon_sensor_label",
        "node_hwmon_power_average_watt",
    } <= used
    for panel in panels(doc):
        for target in panel["targets"]:
            assert "{{gpu}}" in target["legendFormat"] and "{{server}}" in target["legendFormat"], panel["title"]
            assert 'gpu!=""' in target["expr"], panel["title"]  # only series relabelled as a GPU
    temps = [t["expr"] for p in panels(doc) for t in p["targets"] if "node_hwmon_temp_celsius" in t["expr"]]
    assert temps and all("group_left(label)" in e and "edge|junction|mem" in e for e in temps)


def test_dashboard_queries_parse(promtool: str, tmp_path: Path) -> None:
    """promtool parses each query (Grafana variables replaced) as a recording rule."""
    rules = []
    for name in DASHBOARD_FILES:
        for n, expr in enumerate(dashboard_exprs(dashboard(name))):
            expr = expr.replace("$__rate_interval", "5m").replace("$host", ".*").replace("$server", ".*")
            rules.append({"record": f"dashboard:{name.removesuffix('.json')}:{n}", "expr": expr})
    path = tmp_path / "dashboards.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    done = run(promtool, "check", "rules", str(path))
    assert done.returncode == 0, done.stdout + done.stderr


# --- node-exporter on the recorded host trees --------------------------------------------------------


Sample = tuple[str, dict[str, str], float]


def parse_exposition(text: str) -> list[Sample]:
    samples = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = re.fullmatch(r"([A-Za-z_:][\w:]*)(?:\{(.*)\})? (\S+)", line)
        assert match, line
        labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(2) or ""))
        samples.append((match.group(1), labels, float(match.group(3))))
    return samples


def free_port(address: str) -> int:
    with socket.socket() as s:
        s.bind((address, 0))
        port: int = s.getsockname()[1]
        return port


SCRAPED_HOSTS = ["dual-mi60", "quad-gfx906-intel"]


def scrape(node_exporter: str, host: str) -> list[Sample]:
    """One scrape of node-exporter (drm and hwmon only) reading a recorded host's sysfs; stopped by its pid."""
    address = f"127.0.0.6:{free_port('127.0.0.6')}"
    process = subprocess.Popen(
        [
            node_exporter,
            "--collector.disable-defaults",
            "--collector.drm",
            "--collector.hwmon",
            f"--path.sysfs={HOSTS / host / 'sys'}",
            f"--web.listen-address={address}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                with urllib.request.urlopen(f"http://{address}/metrics", timeout=5) as response:
                    return parse_exposition(response.read().decode())
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
    finally:
        stop(process)


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after 10 s: by its own pid."""
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


@pytest.fixture(scope="module")
def scraped(node_exporter: str) -> dict[str, list[Sample]]:
    return {host: scrape(node_exporter, host) for host in SCRAPED_HOSTS}


def values(samples: list[Sample], name: str, **labels: str) -> list[float]:
    return [v for n, ls, v in samples if n == name and all(ls.get(k) == want for k, want in labels.items())]


def hwmon_chip(pci: str) -> str:
    """The `chip` label node-exporter gives an amdgpu hwmon: `<parent>_<device>` of the PCI path, cleaned."""
    return pci.replace(".", "_")


@pytest.mark.parametrize("host", SCRAPED_HOSTS)
def test_node_exporter_collectors_succeed(scraped: dict[str, list[Sample]], host: str) -> None:
    samples = scraped[host]
    assert values(samples, "node_scrape_collector_success", collector="drm") == [1.0]
    assert values(samples, "node_scrape_collector_success", collector="hwmon") == [1.0]


@pytest.mark.parametrize("host", SCRAPED_HOSTS)
def test_node_exporter_reports_every_discovered_gpu_by_card_and_by_hwmon_chip(
    scraped: dict[str, list[Sample]], host: str
) -> None:
    """What the relabel rules join on: discovery's card number -> drm `card`, its PCI address -> hwmon `chip`."""
    samples = scraped[host]
    gpus = discover(DirectoryReader(HOSTS / host)).gpus
    amdgpu_chips = {ls["chip"] for n, ls, _ in samples if n == "node_hwmon_chip_names" and ls["chip_name"] == "amdgpu"}
    assert len(amdgpu_chips) == len(gpus)
    for gpu in gpus:
        card = f"card{gpu.card}"
        assert values(samples, "node_drm_memory_vram_size_bytes", card=card) == [34342961152.0]
        assert len(values(samples, "node_drm_gpu_busy_percent", card=card)) == 1
        assert len(values(samples, "node_drm_memory_vram_used_bytes", card=card)) == 1
        chip = [c for c in amdgpu_chips if re.fullmatch(f".*_{re.escape(hwmon_chip(gpu.pci))}", c)]
        assert len(chip) == 1, (gpu.pci, amdgpu_chips)
        labels = {
            ls["sensor"]: ls["label"]
            for n, ls, _ in samples
            if n == "node_hwmon_sensor_label" and ls["chip"] == chip[0]
        }
        assert {labels.get(s) for s in ("temp1", "temp2", "temp3")} == {"edge", "junction", "mem"}
        for sensor in ("temp1", "temp2", "temp3"):
            assert 20 < values(samples, "node_hwmon_temp_celsius", chip=chip[0], sensor=sensor)[0] < 110
        assert 0 < values(samples, "node_hwmon_power_average_watt", chip=chip[0], sensor="power1")[0] <= 300


def test_node_exporter_values_match_the_recorded_dual_mi60(scraped: dict[str, list[Sample]]) -> None:
    samples = scraped["dual-mi60"]
    assert values(samples, "node_drm_gpu_busy_percent", card="card1") == [97.0]
    assert values(samples, "node_drm_memory_vram_used_bytes", card="card1") == [31138512896.0]
    chip = "0000:00:01_0_0000:03:00_0"  # GPU 0, PCI 0000:03:00.0 behind bridge 0000:00:01.0
    assert values(samples, "node_hwmon_temp_celsius", chip=chip, sensor="temp2") == [81.0]
    assert values(samples, "node_hwmon_sensor_label", chip=chip, sensor="temp2", label="junction") == [1.0]
    assert values(samples, "node_hwmon_power_average_watt", chip=chip, sensor="power1") == [212.0]
    # The CPU's k10temp chip is there too: the GPU rules and panels must not take it for a GPU.
    assert values(samples, "node_hwmon_chip_names", chip="pci0000:00_0000:00:18_3", chip_name="k10temp") == [1.0]


@pytest.mark.parametrize("host", SCRAPED_HOSTS)
def test_node_exporter_1_5_reports_a_non_amdgpu_card_with_zeros(scraped: dict[str, list[Sample]], host: str) -> None:
    """procfs reads card0 (BMC VGA or Intel iGPU), finds no DRIVER=amdgpu, and still returns it, empty:
    node_drm_* for card0 are zeros, so the relabel rules drop drm series of cards that are no GPU."""
    samples = scraped[host]
    assert values(samples, "node_drm_gpu_busy_percent", card="card0") == [0.0]
    assert values(samples, "node_drm_memory_vram_size_bytes", card="card0") == [0.0]


def test_node_exporter_series_used_by_rules_and_dashboards_exist(scraped: dict[str, list[Sample]]) -> None:
    samples = scraped["dual-mi60"]
    exported = {name for name, _, _ in samples}
    used = set().union(*(metric_names(r["expr"]) for r in alert_rules()))
    for name in ("vllm.json", "gpus.json"):
        used |= set().union(*(metric_names(e) for e in dashboard_exprs(dashboard(name))))
    node_series = {n for n in used if n.startswith("node_")}
    assert node_series and node_series <= exported, sorted(node_series - exported)
