"""The monitoring component in the plan: what each container is given (the files come from
components/planning/monitoring.py, tested against the real tools in tests/test_monitoring_config.py)."""

from __future__ import annotations

from pathlib import Path

import yaml

from components.planning.monitoring import (
    ALERTMANAGER_WEBHOOK_FILE,
    GRAFANA_DASHBOARDS_DIR,
    NODE_EXPORTER_PASSWORD_FILE,
    PROMETHEUS_CONFIG,
    RULES_FILE,
    rules_text,
)
from components.settings import read_stack_file
from components.tools.compose import to_compose
from components.tools.plan import plan_stack
from components.tools.planned import Plan
from tests.conftest import ROOT, shipped_plan


def uploads(plan: Plan, name: str) -> dict[str, str]:
    return {u["file"]: u["content"] for u in plan.by_name(name).inputs.get("uploads") or []}


def test_big_chat_gets_node_exporter_prometheus_and_grafana_with_their_settings() -> None:
    plan = shipped_plan("big-chat")
    node = plan.by_name("host-node-exporter-container").inputs
    assert "--collector.drm" in node["command"] and "--path.sysfs=/host/sys" in node["command"]
    assert {"hostPath": "/sys", "containerPath": "/host/sys", "readOnly": True} in node["volumes"]
    web = uploads(plan, "host-node-exporter-container")["/etc/node-exporter/web.yml"]
    assert yaml.safe_load(web) == {"basic_auth_users": {"prometheus": "$2a$10$[secret]"}}
    assert plan.by_name("host-node-exporter-container").options["secret_inputs"] == ["uploads"]

    prom = plan.by_name("prometheus-container")
    assert "--storage.tsdb.retention.time=30d" in prom.inputs["command"]
    assert prom.inputs["ports"] == [{"internal": 9090, "external": 9090, "ip": "127.0.0.1"}]
    files = uploads(plan, "prometheus-container")
    assert yaml.safe_load(files[PROMETHEUS_CONFIG]) == plan.prometheus_config
    assert files[RULES_FILE] == rules_text() and files[NODE_EXPORTER_PASSWORD_FILE] == "[secret]"
    assert plan.by_name("prometheus-cache").options["protect"], "Prometheus's data lives in a protected volume"

    grafana = plan.by_name("grafana-container").inputs
    env = dict(e.split("=", 1) for e in grafana["envs"])
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "false" and env["GF_SECURITY_ADMIN_PASSWORD"] == "[secret]"
    assert {f for f in uploads(plan, "grafana-container") if f.startswith(GRAFANA_DASHBOARDS_DIR)} == {
        f"{GRAFANA_DASHBOARDS_DIR}/gpus.json",
        f"{GRAFANA_DASHBOARDS_DIR}/vllm.json",
    }
    assert plan.outputs["grafana_admin_password"] == "[secret]"


def test_small_chat_has_no_monitoring() -> None:
    plan = shipped_plan("small-chat")
    assert not [r for r in plan.resources if "monitoring" in (r.name, r.parent)]


def test_the_fleet_runs_node_exporter_on_every_host_and_the_rest_on_the_monitoring_host() -> None:
    plan = shipped_plan("fleet")
    hosts = {r.name: r.options["provider"] for r in plan.services if r.parent == "monitoring"}
    assert hosts == {
        "gpu-a-node-exporter-container": "gpu-a-docker",
        "gpu-b-node-exporter-container": "gpu-b-docker",
        "prometheus-container": "gpu-a-docker",
        "grafana-container": "gpu-a-docker",
    }
    # node-exporter answers other hosts on the host's private address, behind basic auth
    b = plan.by_name("gpu-b-node-exporter-container").inputs
    assert b["ports"][0]["ip"] == "10.0.0.6"
    assert {lbl["label"]: lbl["value"] for lbl in b["labels"]}["rocm-inference.auth"] == "basic-auth"
    compose = to_compose(plan, "gpu-a")
    assert {"prometheus", "grafana", "gpu-a-node-exporter"} <= set(compose["services"])
    assert compose["configs"]["prometheus-node-exporter-password"] == {
        "environment": "PROMETHEUS_NODE_EXPORTER_PASSWORD"
    }


def test_alertmanager_routes_to_the_webhook_a_nested_secret_names(tmp_path: Path) -> None:
    text = (
        (ROOT / "Pulumi.fleet.yaml")
        .read_text()
        .replace(
            "    retention: 30d\n",
            "    retention: 30d\n    alertmanager:\n      webhook_url:\n        secure: v1:AAAA:BBBB\n",
        )
    )
    path = tmp_path / "Pulumi.fleet.yaml"
    path.write_text(text)
    plan = plan_stack(read_stack_file(path))
    alertmanager = plan.by_name("alertmanager-container")
    assert alertmanager.options["provider"] == "gpu-a-docker"
    assert uploads(plan, "alertmanager-container")[ALERTMANAGER_WEBHOOK_FILE] == "[secret]"
    assert plan.prometheus_config is not None and plan.prometheus_config["alerting"]


def test_alertmanager_without_its_webhook_and_a_bind_on_all_interfaces_are_refused() -> None:
    from tests.stacks import errors, set_key, values_of

    values = set_key(values_of("fleet"), "monitoring.alertmanager", {"port": 9093})
    assert errors(values, ("gateway_api_key",)) == [
        "Pulumi.test.yaml: rocm-inference:monitoring.alertmanager needs the webhook alerts go to, a secret (its URL "
        "carries a token): pulumi config set --secret --path 'rocm-inference:monitoring.alertmanager.webhook_url' https://..."
    ]
    wide = errors(set_key(values_of("big-chat"), "host.bind", "0.0.0.0"), ("vllm_api_key", "embeddings_api_key"))
    assert (
        len(wide) == 1
        and "rocm-inference:host.bind is 0.0.0.0, every interface: vLLM's /metrics is open by design" in wide[0]
    )


def test_the_stall_window_outlasts_the_longest_prefill_and_warns_past_twenty_minutes() -> None:
    from components.planning.catalog import load_catalog
    from components.planning.health import RESTART_DEADLINE_S, STALL_MIN_S
    from components.planning.prefill import longest_prefill_seconds
    from components.planning.rules import _stall_warning, server_contexts, server_stall_seconds
    from tests.stacks import load, values_of

    catalog = load_catalog()
    big = server_contexts(load(values_of("big-chat")).settings)["vllm"]
    arch = catalog.models[big.vllm.model]
    longest = longest_prefill_seconds(arch, big.vllm.max_model_len, 2, catalog.gpus["mi60"])
    assert server_stall_seconds(big, catalog) > longest and server_stall_seconds(big, catalog) >= STALL_MIN_S
    assert server_stall_seconds(big, catalog) <= RESTART_DEADLINE_S, "big-chat plans without the warning"
    small = server_contexts(load(values_of("small-chat")).settings)["vllm"]
    assert server_stall_seconds(small, catalog) == STALL_MIN_S, "a 14B model at 16K: the floor"
    # 128k tokens of a 70B model on two MI60: the longest prefill outlasts 20 minutes, and the plan says so,
    # with the way out: Llama attends the whole prompt in every layer, so its prefill fills the KV cache
    long = big.vllm.model_copy(update={"max_model_len": 131072})
    (warning,) = _stall_warning(type(big)(big.host, long), catalog, "vllm")
    assert warning.key == "vllm.max_model_len" and "a hung server is restarted only after" in warning.message
    assert "a shorter stall_timeout restarts it sooner" in warning.message
    assert _stall_warning(type(big)(big.host, long.model_copy(update={"stall_timeout": 300})), catalog, "vllm") == []
    # every layer slides (Mistral-style): the KV cache stops growing once the window is full, no such hint
    sliding = arch.model_copy(update={"sliding_window": 4096, "use_sliding_window": True})
    assert all(w == 4096 for w in sliding.layer_windows())
    slid = long.model_copy(update={"architecture": sliding, "max_model_len": 1048576})
    (warning,) = _stall_warning(type(big)(big.host, slid), catalog, "vllm")
    assert "stall_timeout" not in warning.message
