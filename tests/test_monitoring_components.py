"""The monitoring component in the plan: what each container is given (the files come from
components/planning/monitoring.py, tested against the real tools in tests/test_monitoring_config.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pulumi
import pytest
import yaml

from components.planning.monitoring import (
    ALERTMANAGER_WEBHOOK_FILE,
    GRAFANA_DASHBOARDS_DIR,
    NODE_EXPORTER_PASSWORD_FILE,
    PROMETHEUS_CONFIG,
    RULES_FILE,
    rules_text,
)
from components.program import deploy
from components.settings import read_stack_file
from components.tools.compose import to_compose
from components.tools.mocks import PlanMocks
from components.tools.plan import plan_stack, render_text
from components.tools.planned import Plan
from tests.conftest import ROOT, shipped_plan


def uploads(plan: Plan, name: str) -> dict[str, str]:
    return {u["file"]: u["content"] for u in plan.by_name(name).inputs.get("uploads") or []}


def test_big_chat_gets_node_exporter_prometheus_and_grafana_with_their_settings() -> None:
    plan = shipped_plan("big-chat")
    node = plan.by_name("host-node-exporter-container").inputs
    assert "--collector.drm" in node["command"]
    web = uploads(plan, "host-node-exporter-container")["/etc/node-exporter/web.yml"]
    assert yaml.safe_load(web) == {"basic_auth_users": {"prometheus": "$2a$10$[secret]"}}
    assert plan.by_name("host-node-exporter-container").options["secret_inputs"] == ["uploads"]

    prom = plan.by_name("prometheus-container")
    assert "--storage.tsdb.retention.time=30d" in prom.inputs["command"]
    assert prom.inputs["ports"] == [{"internal": 9090, "external": 9090, "ip": "127.0.0.1"}]
    files = uploads(plan, "prometheus-container")
    assert yaml.safe_load(files[PROMETHEUS_CONFIG]) == plan.prometheus_config
    assert files[RULES_FILE] == rules_text() and files[NODE_EXPORTER_PASSWORD_FILE] == "[secret]"
    assert plan.by_name("prometheus-cache").options["retain_on_delete"], "Prometheus's data lives in a kept volume"

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
    assert "--web.listen-address=10.0.0.6:9100" in b["command"]
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


def listen_addresses(inputs: dict[str, Any]) -> list[str]:
    return [a.split("=", 1)[1] for a in inputs["command"] if a.startswith("--web.listen-address=")]


def test_node_exporter_runs_as_its_readme_says_for_docker_on_the_hosts_namespaces() -> None:
    """node_exporter v1.9.1 README.md "Docker": --net=host, --pid=host, / at /host read-only with rslave,
    --path.rootfs=/host; else its filesystem and network series are the container's."""
    for stack, host, bind in (
        ("big-chat", "host", "127.0.0.1"),
        ("fleet", "gpu-a", "10.0.0.5"),
        ("fleet", "gpu-b", "10.0.0.6"),
    ):
        plan = shipped_plan(stack)
        node = plan.by_name(f"{host}-node-exporter-container").inputs
        assert node["networkMode"] == "host" and node["pidMode"] == "host"
        assert node["mounts"] == [
            {
                "type": "bind",
                "source": "/",
                "target": "/host",
                "readOnly": True,
                "bindOptions": {"propagation": "rslave"},
            }
        ]
        assert "--path.rootfs=/host" in node["command"]
        assert not [a for a in node["command"] if a.startswith(("--path.procfs", "--path.sysfs"))]
        # on the host's network nothing is published and no Docker network is joined
        assert "ports" not in node and "networksAdvanced" not in node and "volumes" not in node
        assert listen_addresses(node)[0] == f"{bind}:9100"
        assert f"http://{bind}:9100/metrics" in node["healthcheck"]["tests"][1], "the check asks where it listens"


def test_prometheus_reaches_its_own_hosts_node_exporter_through_dockers_host_gateway() -> None:
    """A node-exporter on the host's network has no container name on the stack's network, and the host's
    bind may be loopback (big-chat), which no container reaches: Prometheus scrapes host.docker.internal,
    Docker's address of the host, where the monitoring host's node-exporter listens too."""
    for stack, here, other in (("big-chat", "host", None), ("fleet", "gpu-a", "gpu-b")):
        plan = shipped_plan(stack)
        assert plan.by_name("prometheus-container").inputs["hosts"] == [
            {"host": "host.docker.internal", "ip": "host-gateway"}
        ]
        node = plan.by_name(f"{here}-node-exporter-container").inputs
        assert node["hosts"] == [{"host": "host.docker.internal", "ip": "host-gateway"}]
        assert listen_addresses(node)[1:] == ["host.docker.internal:9100"]
        assert plan.prometheus_config is not None
        targets = {
            sc["labels"]["host"]: sc["targets"]
            for job in plan.prometheus_config["scrape_configs"]
            if job["job_name"] == "node"
            for sc in job["static_configs"]
        }
        assert targets[here] == ["host.docker.internal:9100"]
        if other is not None:  # another host: its own node-exporter only on its bind address, by its address
            inputs = plan.by_name(f"{other}-node-exporter-container").inputs
            assert listen_addresses(inputs) == ["10.0.0.6:9100"] and "hosts" not in inputs
            assert targets[other] == ["gpu-b.lan:9100"]


def test_the_compose_export_runs_node_exporter_on_the_hosts_namespaces() -> None:
    compose = to_compose(shipped_plan("fleet"), "gpu-a")
    node = compose["services"]["gpu-a-node-exporter"]
    assert node["network_mode"] == "host" and node["pid"] == "host"
    assert node["volumes"] == ["/:/host:ro,rslave"]
    assert node["extra_hosts"] == ["host.docker.internal:host-gateway"]
    assert "ports" not in node and "networks" not in node
    assert compose["services"]["prometheus"]["extra_hosts"] == ["host.docker.internal:host-gateway"]


# --------------------------------------------------------------------------- Grafana's admin password

GRAFANA_PASSWORDS = ("first-grafana-pw-6f1ed002ab", "second-grafana-pw-1f3870be27")


def deploy_big_chat(mocks: PlanMocks, password: str) -> dict[str, dict[str, Any]]:
    """big-chat under fresh mocks with this Grafana password: the inputs of every container, by name."""
    from tests.test_components import load

    @pulumi.runtime.test
    def run() -> pulumi.Output[Any]:
        loaded, secrets = load("big-chat", {"grafana_admin_password": password})
        outputs = deploy(loaded, secrets, "rocm-inference", "big-chat")
        return pulumi.Output.all(*outputs.values())

    pulumi.runtime.set_mocks(mocks, project="rocm-inference", stack="big-chat", preview=False)
    try:
        run()
    finally:
        pulumi.runtime.set_all_config({}, [])
    return {n: i for (t, n), i in mocks.inputs.items() if t.endswith((":Container", ":Command"))}


def test_a_new_grafana_password_runs_the_reset_again_and_never_shows_in_plain_text() -> None:
    from tests.test_components import _plain_text, is_secret

    runs = [deploy_big_chat(PlanMocks(), pw) for pw in GRAFANA_PASSWORDS]
    for resources, password in zip(runs, GRAFANA_PASSWORDS, strict=True):
        reset = resources["grafana-password-reset"]
        run = reset["triggers"][0]
        # on the run's stdin, as an env file for `docker run --env-file /dev/stdin`, never on a command line
        assert is_secret(reset["stdin"]) and reset["stdin"]["value"] == f"GF_SECURITY_ADMIN_PASSWORD={password}\n"
        assert run["secretEnvs"] == ["GF_SECURITY_ADMIN_PASSWORD"] and "--env-file /dev/stdin" in reset["create"]
        # the shell pipes it from the environment: the command line names the variable, never the value
        assert run["entrypoints"] == ["sh", "-c"] and '"$GF_SECURITY_ADMIN_PASSWORD" |' in run["command"][0]
        assert "reset-admin-password --password-from-stdin" in run["command"][0]
        assert run["volumes"] == [{"volumeName": "grafana-data", "containerPath": "/var/lib/grafana"}]
        assert "update" not in reset, "a new password alone runs it again (pulumi-command reruns create)"
        assert is_secret(resources["grafana-container"]["envs"])
        for name, inputs in resources.items():
            assert password not in _plain_text(inputs), f"{name} holds Grafana's password in plain text"
    before, after = runs
    # Only its stdin changes: pulumi-command updates it, which runs the reset again.
    changed = {
        k
        for k in before["grafana-password-reset"]
        if before["grafana-password-reset"][k] != after["grafana-password-reset"][k]
    }
    assert changed == {"stdin"}
    # Grafana's own env seeds the admin on a first start (an empty volume), so it changes too (and Grafana is
    # replaced, its data kept in the volume); nothing else of Grafana moves.
    grafana = {
        k for k in before["grafana-container"] if before["grafana-container"][k] != after["grafana-container"][k]
    }
    assert grafana == {"envs"}
    others = set(before) - {"grafana-password-reset", "grafana-container"}
    assert all(before[n] == after[n] for n in others), "a Grafana password change touches no other container"


def test_the_reset_runs_on_grafanas_volume_once_grafana_is_up_and_shows_masked_in_the_plan() -> None:
    plan = shipped_plan("big-chat")
    reset = plan.by_name("grafana-password-reset")
    assert reset.parent == "monitoring" and reset.type == "command:local:Command"
    assert "grafana-container" in reset.options["depends_on"] and "host-preflight" in reset.options["depends_on"]
    assert reset.options["secret_inputs"] == ["stdin"]
    # nothing gates Grafana on the reset
    assert "grafana-password-reset" not in plan.by_name("grafana-container").options["dependencies"]
    text = render_text(plan)
    assert "GF_SECURITY_ADMIN_PASSWORD=[secret]" in text and "plan-placeholder" not in text
    compose = to_compose(plan)["services"]["grafana-password-reset"]
    assert compose["entrypoint"] == ["sh", "-c"] and compose["depends_on"] == {
        "grafana": {"condition": "service_healthy"}
    }
    assert compose["environment"]["GF_SECURITY_ADMIN_PASSWORD"].startswith("${GF_SECURITY_ADMIN_PASSWORD:?")
    assert "$$GF_SECURITY_ADMIN_PASSWORD" in compose["command"][0], "compose leaves the variable to the shell"


class FailingReset(PlanMocks):
    """The command provider as it answers a reset that exited 1: an error and no state, so the next
    `pulumi up` runs it again (pulumi-go-provider v1.3.0 infer/resource.go L1291-1292)."""

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[Any, Any]]:
        if args.name == "grafana-password-reset":
            raise RuntimeError("exit status 1: Could not find user")
        return super().new_resource(args)


def test_a_failed_reset_fails_the_deployment() -> None:
    import gc
    import logging

    asyncio_log = logging.getLogger("asyncio")
    level = asyncio_log.level
    asyncio_log.setLevel(logging.CRITICAL)
    mocks = FailingReset()
    try:
        with pytest.raises(Exception, match=r"Could not find user"):
            deploy_big_chat(mocks, GRAFANA_PASSWORDS[0])
        assert ("docker:index/container:Container", "grafana-container") in mocks.inputs, "Grafana itself still runs"
        assert not [n for (_, n) in mocks.inputs if n == "grafana-password-reset"], "nothing of it stays in state"
    finally:
        gc.collect()
        asyncio_log.setLevel(level)
