"""llama.cpp's monitoring (components/planning/engines/llamacpp_monitoring.py, monitoring/llamacpp/):

- the alert rules through Debian's promtool (`check rules`, `test rules`), and a wrong progress counter caught;
- every `llamacpp:` name in the rules is one llama-server exports, counters under rate/increase/resets only;
- the scrape job sends the key from a file;
- the progress healthcheck against a fake llama-server: loading (503) for longer than the stall window is no
  hang, a held main loop (no /metrics answer while /health says 200) and held requests with no decode are;
- the real llama-server (the pinned build, tests/engine/llama_cpp.py) with --metrics and --api-key on a loopback
  address of its own: /health public, /metrics 401 without the key, and exactly the names and types listed.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.planning.engines.llamacpp_monitoring import (
    JOB_LLAMACPP,
    METRICS,
    RULES_DIR,
    PlannedServer,
    grafana_files,
    planned_rules,
    planned_rules_text,
    progress_check,
    rules_text,
    scrape_job,
)
from components.settings import read_stack_file
from components.tools.plan import plan_stack
from tests.conftest import ROOT
from tests.engine.hostproc import start_process
from tests.engine.llama_cpp import build_or_skip, free_port
from tests.llama_cpp_models import Shape, write_model
from tests.test_monitoring_assets import dashboard_exprs, metric_names, stop
from tests.test_monitoring_config import LOCAL, query, wait_for
from tests.test_progress_check import HOST, FakeServer, run_in_namespace

RULES = RULES_DIR / "alerts.rules.yml"
RULE_TESTS = RULES_DIR / "alerts.test.yml"
SERVER_HOST = "127.0.0.45"  # the real llama-server (HOST: the fake one)
REQUIRED_ALERTS = {"LlamaCppDown", "LlamaCppStalled", "LlamaCppSlotsSaturated", "LlamaCppRestarting"}


def run(*cmd: str, cwd: Path = RULES_DIR) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=120)


def alert_rules() -> list[dict[str, Any]]:
    return [r for g in yaml.safe_load(rules_text())["groups"] for r in g["rules"] if "alert" in r]


# --- the rules ----------------------------------------------------------------------------------------


def test_promtool_checks_and_unit_tests_the_rules(promtool: str) -> None:
    done = run(promtool, "check", "rules", str(RULES))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in done.stdout
    done = run(promtool, "test", "rules", RULE_TESTS.name)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_unit_tests_catch_a_stall_judged_on_the_token_counters(promtool: str, tmp_path: Path) -> None:
    """prompt_tokens_total stands still through a long prefill: the "prefill" neighbour then fires."""
    (tmp_path / RULES.name).write_text(
        RULES.read_text().replace(
            'increase(llamacpp:n_decode_total{job="llamacpp"}[5m])',
            'increase(llamacpp:prompt_tokens_total{job="llamacpp"}[5m])',
        )
    )
    (tmp_path / RULE_TESTS.name).write_text(RULE_TESTS.read_text())
    done = run(promtool, "test", "rules", RULE_TESTS.name, cwd=tmp_path)
    assert done.returncode != 0 and 'server="prefill"' in done.stdout + done.stderr


def test_every_alert_is_there_with_severity_summary_description_runbook_and_is_unit_tested() -> None:
    rules = alert_rules()
    assert {r["alert"] for r in rules} == REQUIRED_ALERTS
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    firing = {c["alertname"] for t in tests for c in t["alert_rule_test"] if c["exp_alerts"]}
    silent = {c["alertname"] for t in tests for c in t["alert_rule_test"] if not c["exp_alerts"]}
    for rule in rules:
        assert rule["labels"]["severity"] in {"critical", "warning"}
        assert set(rule["annotations"]) == {"summary", "description", "runbook"}
        assert f'job="{JOB_LLAMACPP}"' in str(rule["expr"])
        assert rule["alert"] in firing and rule["alert"] in silent


def test_rules_use_only_names_llama_server_exports_and_counters_only_under_rate() -> None:
    for rule in alert_rules():
        expr = str(rule["expr"])
        for name in metric_names(expr) - {"up"}:
            assert name in METRICS, f"{rule['alert']}: {name} is not exported by llama-server"
        for fn, name in re.findall(r"\b(rate|increase|resets)\((llamacpp:\w+)", expr):
            assert METRICS[name] == "counter", f"{rule['alert']}: {fn}() of the gauge {name}"
        for name in re.findall(r"min_over_time\(\(?([\w:]+)", expr):
            assert METRICS[name] == "gauge"


def test_the_scrape_job_sends_the_key_from_a_file() -> None:
    targets = [{"targets": ["gguf:8080"], "labels": {"host": "gpu1", "server": "gguf"}}]
    job = scrape_job(targets)
    assert job["job_name"] == JOB_LLAMACPP and job["static_configs"] == targets
    assert job["authorization"] == {"type": "Bearer", "credentials_file": "/etc/prometheus/secrets/llamacpp-key"}
    assert "credentials" not in job["authorization"]
    assert "authorization" not in scrape_job(targets, key_file=None)


def test_the_dashboard_shows_slots_deferred_speed_throughput_context_and_decodes() -> None:
    ((path, text),) = grafana_files().items()
    assert path == "/etc/grafana/dashboards/llamacpp.json"
    doc = json.loads(text)
    used = set().union(*(metric_names(e) for e in dashboard_exprs(doc)))
    assert used - {"up"} <= set(METRICS)
    assert {
        f"llamacpp:{n}"
        for n in (
            "requests_processing",
            "requests_deferred",
            "tokens_predicted_total",
            "tokens_predicted_seconds_total",
            "prompt_tokens_total",
            "prompt_seconds_total",
            "n_tokens_max",
            "n_decode_total",
        )
    } <= used
    # Counters only under rate() or resets(): a raw counter on a panel is a line that only grows.
    for expr in dashboard_exprs(doc):
        for name in metric_names(expr) - {"up"}:
            if METRICS[name] == "counter" and name != "llamacpp:n_tokens_max":
                assert re.search(rf"(rate|resets)\({re.escape(name)}\{{", expr), expr


PLANNED = {"gguf": PlannedServer(slot_context=4096, decode_low=20.0), "nobands": PlannedServer(2048, None)}
PLANNED_TESTS = """
rule_files: [planned.rules.yml]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      # gguf on gpu1: a 3700-token sequence at minute 20 (over 90 % of 4096), decoding one request at 12 tokens/s
      # from minute 0 (12 tokens per second of generation time), then at 30 tokens/s from minute 40.
      - series: 'llamacpp:n_tokens_max{job="llamacpp", instance="gpu1:8080", host="gpu1", server="gguf"}'
        values: "900x19 3700x40"
      - series: 'llamacpp:tokens_predicted_total{job="llamacpp", instance="gpu1:8080", host="gpu1", server="gguf"}'
        values: "0+720x40 28800+1800x20"
      - series: 'llamacpp:tokens_predicted_seconds_total{job="llamacpp", instance="gpu1:8080", host="gpu1", server="gguf"}'
        values: "0+60x60"
      - series: 'llamacpp:requests_processing{job="llamacpp", instance="gpu1:8080", host="gpu1", server="gguf"}'
        values: "1x60"
      # gguf on gpu2: as slow per request, but with three requests in slots (the band is for one): silent.
      - series: 'llamacpp:tokens_predicted_total{job="llamacpp", instance="gpu2:8080", host="gpu2", server="gguf"}'
        values: "0+720x60"
      - series: 'llamacpp:tokens_predicted_seconds_total{job="llamacpp", instance="gpu2:8080", host="gpu2", server="gguf"}'
        values: "0+60x60"
      - series: 'llamacpp:requests_processing{job="llamacpp", instance="gpu2:8080", host="gpu2", server="gguf"}'
        values: "3x60"
      # nobands: a long sequence since before the window (1900 of 2048), never longer: silent after 15 minutes.
      - series: 'llamacpp:n_tokens_max{job="llamacpp", instance="gpu1:8081", host="gpu1", server="nobands"}'
        values: "1900x60"
    alert_rule_test:
      - {eval_time: 14m, alertname: LlamaCppSlowDecode, exp_alerts: []}
      - eval_time: 31m
        alertname: LlamaCppSlowDecode
        exp_alerts:
          - exp_labels: {severity: warning, job: llamacpp, instance: "gpu1:8080", host: gpu1, server: gguf}
            exp_annotations:
              summary: "llama.cpp gguf on gpu1 decodes at 12.0 tokens/s, under its planned 20"
              description: "llama-server gguf generated 12.0 tokens per second of generation for 15m, one request at a time, under the low edge of its planned decode band (20 tokens/s)."
              runbook: "Check the GPUs' clocks, power cap and temperature (GPU dashboard), and the start-up log for layers or tensors left on the CPU; then `verify --calibrate` to measure the box."
      - {eval_time: 59m, alertname: LlamaCppSlowDecode, exp_alerts: []}
      - {eval_time: 10m, alertname: LlamaCppContextNearFull, exp_alerts: []}
      - eval_time: 25m
        alertname: LlamaCppContextNearFull
        exp_alerts:
          - exp_labels: {severity: warning, job: llamacpp, instance: "gpu1:8080", host: gpu1, server: gguf}
            exp_annotations:
              summary: "llama.cpp gguf on gpu1: a sequence of 3700 tokens, near its slot's 4096"
              description: "A slot of llama-server gguf held a sequence of 3700 tokens in the last 15m, 90 % or more of the 4096 tokens the plan gives each slot: longer conversations are cut or refused (llama.cpp shifts or stops at the slot's end)."
              runbook: "Raise the context (-c) or, with several slots splitting it, fewer slots or a shared KV pool (-kvu), and let the plan say whether it still fits; or cap max_tokens at the gateway."
      - {eval_time: 40m, alertname: LlamaCppContextNearFull, exp_alerts: []}
"""


def test_planned_rules_compare_with_the_plan_under_promtool(promtool: str, tmp_path: Path) -> None:
    rules = planned_rules(PLANNED)["groups"][0]["rules"]
    assert [r["alert"] for r in rules] == ["LlamaCppContextNearFull", "LlamaCppSlowDecode", "LlamaCppContextNearFull"]
    assert ">= 3686" in rules[0]["expr"] and "< 20" in rules[1]["expr"] and ">= 1843" in rules[2]["expr"]
    for rule in rules:
        assert set(rule["annotations"]) == {"summary", "description", "runbook"}
        for name in metric_names(rule["expr"]):
            assert name in METRICS
    (tmp_path / "planned.rules.yml").write_text(planned_rules_text(PLANNED))
    (tmp_path / "planned.test.yml").write_text(PLANNED_TESTS)
    done = run(promtool, "check", "rules", "planned.rules.yml", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    done = run(promtool, "test", "rules", "planned.test.yml", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr


# --- the progress healthcheck ---------------------------------------------------------------------------

STALL_S = 2
KILL_AFTER_S = 1
KEY = "sk-test-key"


def page(processing: int, deferred: int, decodes: float) -> str:
    """llama-server's exposition of the series the check reads (server-task.cpp:1594-1602: no labels)."""
    series = (
        ("n_decode_total", "counter", decodes),
        ("tokens_predicted_total", "counter", 7.0),
        ("requests_processing", "gauge", float(processing)),
        ("requests_deferred", "gauge", float(deferred)),
    )
    return "".join(f"# HELP llamacpp:{n} x\n# TYPE llamacpp:{n} {k}\nllamacpp:{n} {v}\n" for n, k, v in series)


class FakeLlamaServer(FakeServer):
    """Each check takes the next step: (health status, metrics page, or None for a /metrics that does not answer
    in time); the last step repeats. /metrics wants the key, as with --api-key."""

    def __init__(self) -> None:
        self.steps: list[tuple[int, str | None]] = []
        self.checks = 0
        self.keys: list[str] = []
        super().__init__(self.answer)

    def answer(self, path: str, authorization: str) -> tuple[int, bytes]:
        health, metrics = self.steps[min(self.checks, len(self.steps) - 1)]
        if path == "/health":
            self.checks += health != 200
            return health, b"{}"
        if path != "/metrics":
            return 404, b""
        self.checks += 1
        self.keys.append(authorization)
        if authorization != f"Bearer {KEY}":
            return 401, b"{}"
        if metrics is None:
            time.sleep(3)  # past the check's timeout
            return 200, b""
        return 200, metrics.encode()


@pytest.fixture
def fake() -> Iterator[FakeLlamaServer]:
    server = FakeLlamaServer()
    yield server
    server.close()


def run_checks(
    fake: FakeLlamaServer, tmp_path: Path, steps: list[tuple[int, str | None]], delays: list[float], key: str = KEY
) -> dict[str, Any]:
    fake.steps = steps
    script = progress_check(
        fake.port, STALL_S, host=HOST, state_file=str(tmp_path / "progress"), kill_after_s=KILL_AFTER_S, timeout_s=1
    )
    # The key comes from the container's environment, as llama-server reads it (LLAMA_API_KEY).
    script = f"import os;os.environ['LLAMA_API_KEY']={key!r}\n" + script
    return run_in_namespace(script, delays)


APART = [0.0, 1.0, 1.0, 1.0]


def test_loading_for_longer_than_the_stall_window_is_no_hang(fake: FakeLlamaServer, tmp_path: Path) -> None:
    """503 while the model loads (server-http.cpp:306-326) for five checks over 4 s, twice the window: unhealthy,
    never ended; then ready and idle: healthy."""
    steps: list[tuple[int, str | None]] = [(503, None)] * 5 + [(200, page(0, 0, 0))]
    report = run_checks(fake, tmp_path, steps, [0.0, 1.0, 1.0, 1.0, 1.0, 0.5, 0.5])
    assert report == {"codes": [1, 1, 1, 1, 1, 0, 0], "terms": 0, "server": None}


def test_decoding_servers_and_idle_ones_stay_healthy_and_the_key_is_sent(fake: FakeLlamaServer, tmp_path: Path) -> None:
    """A long prompt moves n_decode_total every batch while the token counters stand still."""
    steps: list[tuple[int, str | None]] = [(200, page(1, 2, n)) for n in (10, 11, 12, 13)]
    assert run_checks(fake, tmp_path, steps, APART) == {"codes": [0, 0, 0, 0], "terms": 0, "server": None}
    assert fake.keys and set(fake.keys) == {f"Bearer {KEY}"}


def test_held_requests_without_a_decode_end_the_server(fake: FakeLlamaServer, tmp_path: Path) -> None:
    """Requests deferred, none decoded: SIGTERM past the window, SIGKILL more than KILL_AFTER_S later."""
    report = run_checks(fake, tmp_path, [(200, page(0, 3, 40))], [0.0, 0.5, 2.0, 0.3, 1.5])
    assert report == {"codes": [0, 0, 1, 1, 1], "terms": 1, "server": -9}


def test_a_main_loop_that_never_answers_metrics_while_health_says_200_is_a_hang(
    fake: FakeLlamaServer, tmp_path: Path
) -> None:
    """Wedged inside a decode: /health (not on the main loop) says 200 and /metrics times out."""
    steps: list[tuple[int, str | None]] = [(200, page(1, 0, 40)), (200, None)]
    report = run_checks(fake, tmp_path, steps, [0.0, 0.5, 1.0, 0.0, 1.5])
    assert report["terms"] == 1 and report["server"] == -9, report
    assert report["codes"][:2] == [0, 0] and report["codes"][-1] == 1


def test_a_refused_key_is_unhealthy_but_no_hang(fake: FakeLlamaServer, tmp_path: Path) -> None:
    report = run_checks(fake, tmp_path, [(200, page(1, 0, 40))], APART, key="wrong")
    assert report == {"codes": [1, 1, 1, 1], "terms": 0, "server": None}


# --- the real llama-server ------------------------------------------------------------------------------


def exposition(text: str) -> dict[str, str]:
    """`# TYPE name kind` lines of a Prometheus text page."""
    return dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))


def get(url: str, key: str | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"} if key else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, ""
    except OSError:
        return 0, ""  # not listening yet


def prometheus_on(prometheus: str, root: Path, port: int) -> tuple[subprocess.Popen[bytes], str]:
    """Debian's Prometheus on the real server: the scrape job with the right key and one with a wrong key, and the
    static and planned rules; its process and address, once ready."""
    (root / "key").write_text(KEY)
    (root / "wrong-key").write_text("sk-wrong")
    target = [{"targets": [f"{SERVER_HOST}:{port}"], "labels": {"host": "box", "server": "tiny"}}]
    wrong = scrape_job(target, str(root / "wrong-key")) | {"job_name": "llamacpp-wrong-key"}
    (root / "static.rules.yml").write_text(rules_text())
    (root / "planned.rules.yml").write_text(planned_rules_text({"tiny": PlannedServer(256, 5.0)}))
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(root / "static.rules.yml"), str(root / "planned.rules.yml")],
        "scrape_configs": [scrape_job(target, str(root / "key")), wrong],
    }
    (root / "prometheus.yml").write_text(yaml.safe_dump(config))
    address = f"{LOCAL}:{free_port(LOCAL)}"
    cmd = [prometheus, f"--config.file={root / 'prometheus.yml'}", f"--storage.tsdb.path={root / 'data'}"]
    process = subprocess.Popen(
        [*cmd, f"--web.listen-address={address}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    wait_for(process, f"http://{address}/-/ready")
    return process, address


@pytest.mark.llama_cpp
def test_the_real_server_exports_exactly_these_names_and_prometheus_scrapes_them_with_the_key(
    prometheus: str, tmp_path: Path
) -> None:
    build = build_or_skip()
    model = write_model(tmp_path / "tiny.gguf", Shape())[0]
    port = free_port(SERVER_HOST)
    cmd = [str(build.server), "-m", str(model), "-c", "512", "-np", "2", "--metrics", "--api-key", KEY]
    cmd += ["--host", SERVER_HOST, "--port", str(port), "-t", "1", "--no-warmup"]
    proc = start_process(cmd, {"PATH": "/usr/bin:/bin", "LLAMA_OFFLINE": "1"}, tmp_path, tmp_path / "log", "")
    base = f"http://{SERVER_HOST}:{port}"
    try:
        deadline = time.monotonic() + 60
        while get(f"{base}/health")[0] != 200:
            assert not proc.exited(), proc.log_tail()
            assert time.monotonic() < deadline, proc.log_tail()
            time.sleep(0.1)
        assert get(f"{base}/metrics")[0] == 401
        assert get(f"{base}/metrics", "wrong")[0] == 401
        body = json.dumps({"prompt": "hi", "n_predict": 4, "ignore_eos": True}).encode()
        request = urllib.request.Request(
            f"{base}/completion", data=body, headers={"Authorization": f"Bearer {KEY}"}, method="POST"
        )
        with urllib.request.urlopen(request, timeout=60) as r:
            assert r.status == 200
        status, text = get(f"{base}/metrics", KEY)
        scraper, address = prometheus_on(prometheus, tmp_path, port)
        try:
            deadline = time.monotonic() + 30
            while len(query(address, "up")) < 2 or not query(address, "llamacpp:n_decode_total"):
                assert scraper.poll() is None and time.monotonic() < deadline, "no scrape came in"
                time.sleep(0.2)
            up = {r["metric"]["job"]: r["value"][1] for r in query(address, "up")}
            (decodes,) = query(address, 'llamacpp:n_decode_total{job="llamacpp", host="box", server="tiny"}')
            with urllib.request.urlopen(f"http://{address}/api/v1/rules", timeout=5) as r:
                groups = json.loads(r.read())["data"]["groups"]
        finally:
            stop(scraper)
    finally:
        proc.stop()
    assert up == {"llamacpp": "1", "llamacpp-wrong-key": "0"}  # a refused key is a failed scrape
    assert float(decodes["value"][1]) >= 4
    loaded = {rule["name"]: rule["health"] for g in groups for rule in g["rules"]}
    assert set(loaded) == REQUIRED_ALERTS | {"LlamaCppContextNearFull", "LlamaCppSlowDecode"}
    assert set(loaded.values()) == {"ok"}, loaded
    assert status == 200
    # Without speculative decoding the per-position counter is absent (server-task.cpp:1594).
    assert exposition(text) == METRICS
    values = dict(re.findall(r"^(llamacpp:\w+) (\S+)$", text, re.M))
    assert float(values["llamacpp:tokens_predicted_total"]) == 4
    assert float(values["llamacpp:n_decode_total"]) >= 4
    assert float(values["llamacpp:requests_processing"]) == 0


# --- wired into a stack's monitoring -----------------------------------------------------------------------

MIXED = ROOT / "tests" / "stacks" / "Pulumi.mixed-fleet.yaml"


def test_a_stack_with_a_llamacpp_server_gets_its_rules_planned_rules_and_dashboard(
    promtool: str, tmp_path: Path
) -> None:
    plan = plan_stack(read_stack_file(MIXED))
    assert plan.prometheus_config is not None
    assert plan.prometheus_config["rule_files"] == [
        "/etc/prometheus/alerts.rules.yml",
        "/etc/prometheus/llamacpp.rules.yml",
        "/etc/prometheus/llamacpp-planned.rules.yml",
    ]
    uploads = {u["file"]: u["content"] for u in plan.by_name("prometheus-container").inputs["uploads"]}
    assert uploads["/etc/prometheus/llamacpp.rules.yml"] == rules_text()
    planned = yaml.safe_load(uploads["/etc/prometheus/llamacpp-planned.rules.yml"])
    rules = planned["groups"][0]["rules"]
    # moe: Qwen3-30B-A3B planned with its context per slot and a decode band (engines/llamacpp.py plan_server).
    assert {r["alert"] for r in rules} == {"LlamaCppContextNearFull", "LlamaCppSlowDecode"}
    assert all('server="moe"' in r["expr"] for r in rules)
    (tmp_path / "planned.rules.yml").write_text(uploads["/etc/prometheus/llamacpp-planned.rules.yml"])
    done = run(promtool, "check", "rules", "planned.rules.yml", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    grafana = {u["file"] for u in plan.by_name("grafana-container").inputs["uploads"]}
    assert "/etc/grafana/dashboards/llamacpp.json" in grafana


@pytest.mark.parametrize("stack", ["big-chat", "small-chat", "fleet"])
def test_the_shipped_stacks_get_no_llamacpp_monitoring(stack: str) -> None:
    plan = plan_stack(read_stack_file(ROOT / f"Pulumi.{stack}.yaml"))
    if plan.prometheus_config is None:
        return
    assert plan.prometheus_config["rule_files"] == ["/etc/prometheus/alerts.rules.yml"]
    grafana = {u["file"] for u in plan.by_name("grafana-container").inputs["uploads"]}
    assert not {f for f in grafana if "llamacpp" in f}
