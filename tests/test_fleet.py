"""The fleet form: several hosts and servers in one stack, behind one LiteLLM gateway."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pulumi
import pytest
import yaml

from components.planning.gateway import litellm_config
from components.program import deploy
from components.settings import read_stack_file
from components.settings.pulumi_config import load_from_pulumi
from components.tools.compose import to_compose
from components.tools.mocks import PlanMocks
from components.tools.plan import main, plan_stack
from components.tools.planned import Plan
from tests.conftest import ROOT, git_repo_with, inputs_of, shipped_plan, use_stack
from tests.stacks import errors, load, set_key, values_of


def fleet() -> Plan:
    return shipped_plan("fleet")


FLEET_SECRETS = ("gateway_api_key",)


def fleet_errors(**changes: Any) -> list[str]:
    values = values_of("fleet")
    for key, value in changes.items():
        values = set_key(values, key.replace("__", "."), value)
    return errors(values, FLEET_SECRETS)


# --------------------------------------------------------------------------- the shipped fleet


def test_fleet_plan_shows_both_hosts_each_container_under_its_hosts_provider_and_the_gateway(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["fleet"]) == 0
    out = capsys.readouterr().out
    assert "gpu-a (rocm-inference:host:RocmHost)" in out and "gpu-b (rocm-inference:host:RocmHost)" in out
    assert "gateway (rocm-inference:gateway:Gateway)" in out
    for server, host in (("chat-a", "gpu-a"), ("chat-b", "gpu-b"), ("coder", "gpu-b")):
        assert f"server {server} on host {host}: GPU memory plan (mi60" in out
    plan = fleet()
    providers = {r.name: r.options.get("provider") for r in plan.services}
    assert providers == {
        "chat-a-container": "gpu-a-docker",
        "chat-b-container": "gpu-b-docker",
        "coder-container": "gpu-b-docker",
        "embeddings-container": "gpu-b-docker",
        "gateway-container": "gpu-a-docker",
        # monitoring: node-exporter on every host, Prometheus and Grafana on gpu-a
        "gpu-a-node-exporter-container": "gpu-a-docker",
        "gpu-b-node-exporter-container": "gpu-b-docker",
        "prometheus-container": "gpu-a-docker",
        "grafana-container": "gpu-a-docker",
        # the chat UI, beside the gateway it chats through
        "chat-ui-container": "gpu-a-docker",
    }
    assert set(plan.as_json()["capacity"]) == {"chat-a", "chat-b", "coder"}
    # each host's preflight checks the GPUs its own servers own
    # (over SSH the line runs inside `timeout ... sh -c '...'`: the words are the shell's after unquoting)
    pre = {r.name: " ".join(shlex.split(r.inputs["create"])) for r in plan.of_type(":Command")}
    assert "PREFLIGHT_GPUS='0:1:128 1:2:129'" in pre["gpu-a-preflight"]
    assert "PREFLIGHT_GPUS='0:1:128 1:2:129 2:3:130'" in pre["gpu-b-preflight"]
    assert all(pre[f"{h}-preflight"].startswith("timeout -k 30 300 sh -c ") for h in ("gpu-a", "gpu-b")), (
        "it stops itself"
    )


def test_gateway_format_shows_the_two_replicas_under_one_model_name(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fleet", "--format", "gateway"]) == 0
    config = yaml.safe_load(capsys.readouterr().out)
    chat = [m for m in config["model_list"] if m["model_name"] == "llama-3.3-70b"]
    assert [m["litellm_params"]["api_base"] for m in chat] == ["http://chat-a:8000/v1", "http://gpu-b.lan:8000/v1"]
    assert {m["litellm_params"]["api_key"] for m in chat} == {
        "os.environ/BACKEND_KEY_CHAT_A",
        "os.environ/BACKEND_KEY_CHAT_B",
    }
    emb = next(m for m in config["model_list"] if m["model_info"].get("mode") == "embedding")
    assert emb["litellm_params"]["model"] == "infinity/nomic-ai/nomic-embed-text-v1.5"
    assert config["general_settings"]["master_key"] == "os.environ/LITELLM_MASTER_KEY"


def test_the_gateway_reaches_servers_of_its_own_host_over_a_network_of_their_own() -> None:
    plan = fleet()
    net = plan.by_name("gpu-a-network")
    assert net.parent == "gpu-a" and net.options["provider"] == "gpu-a-docker"
    for name in ("chat-a-container", "gateway-container", "prometheus-container"):
        assert plan.by_name(name).inputs["networksAdvanced"] == [{"name": "rocm-inference-fleet"}]
    # node-exporters are on their host's network (tests/test_monitoring_components.py)
    for name in ("chat-b-container", "coder-container", "embeddings-container", "gpu-a-node-exporter-container"):
        assert "networksAdvanced" not in plan.by_name(name).inputs
    gateway = plan.by_name("gateway-container").inputs
    assert gateway["uploads"][0]["file"] == "/app/config.yaml"
    assert yaml.safe_load(gateway["uploads"][0]["content"]) == plan.gateway_config
    env = dict(e.split("=", 1) for e in gateway["envs"])
    assert env["LITELLM_LOCAL_MODEL_COST_MAP"] == "True"
    assert {k for k, v in env.items() if v == "[secret]"} == {
        "LITELLM_MASTER_KEY",
        "BACKEND_KEY_CHAT_A",
        "BACKEND_KEY_CHAT_B",
        "BACKEND_KEY_CODER",
        "BACKEND_KEY_EMBEDDINGS",
    }
    assert "readiness" in " ".join(gateway["healthcheck"]["tests"])


def test_every_backend_behind_the_gateway_has_a_generated_key_and_no_server_is_open() -> None:
    plan = fleet()
    generated = {r.name for r in plan.of_type(":RandomPassword")}
    assert generated - {
        "node-exporter-password",
        "grafana-admin-password",
        "chat-ui-admin-password",
        "chat-ui-secret-key",
    } == {
        "chat-a-api-key",
        "chat-b-api-key",
        "coder-api-key",
        "embeddings-api-key",
    }
    for r in plan.services:
        env = dict(e.split("=", 1) for e in r.inputs["envs"])
        if r.parent in ("chat-a", "chat-b", "coder", "embeddings"):
            assert {"VLLM_API_KEY", "INFINITY_API_KEY"} & set(env), f"{r.name} would be open on {r.inputs['ports']}"
            assert r.options["secret_inputs"] == ["envs"]


@pytest.mark.parametrize("stack", ["big-chat", "small-chat"])
def test_no_key_is_generated_without_a_gateway(stack: str) -> None:
    plan = shipped_plan(stack)
    keys = [r.name for r in plan.of_type(":RandomPassword") if r.name.endswith("-api-key")]
    assert keys == [] and all(
        r.name.startswith(("node-exporter", "grafana", "chat-ui")) for r in plan.of_type(":RandomPassword")
    )


def test_each_hosts_compose_file_holds_its_own_services(tmp_path: Path) -> None:
    plan = fleet()
    a, b = to_compose(plan, "gpu-a"), to_compose(plan, "gpu-b")
    assert set(a["services"]) == {
        "chat-a-prefetch",
        "chat-a",
        "gateway",
        "gpu-a-node-exporter",
        "prometheus",
        "grafana",
        "grafana-password-reset",
        "chat-ui",
        "chat-ui-admin-reset",
    }
    assert set(b["services"]) == {
        "chat-b-prefetch",
        "chat-b",
        "coder-prefetch",
        "coder",
        "embeddings",
        "gpu-b-node-exporter",
    }
    assert a["services"]["chat-a"]["depends_on"] == {"chat-a-prefetch": {"condition": "service_completed_successfully"}}
    assert a["services"]["gateway"]["depends_on"] == {"chat-a": {"condition": "service_healthy"}}
    assert a["networks"] == {"rocm-inference-fleet": {"name": "rocm-inference-fleet"}}
    assert a["services"]["gateway"]["configs"] == [{"source": "gateway-config", "target": "/app/config.yaml"}]
    assert yaml.safe_load(a["configs"]["gateway-config"]["content"]) == plan.gateway_config
    assert a["services"]["gateway"]["environment"]["LITELLM_MASTER_KEY"].startswith("${LITELLM_MASTER_KEY:?")
    assert set(b["volumes"]) == {"chat-b-hf-cache", "coder-hf-cache", "infinity-embeddings-cache"}
    assert set(a["volumes"]) == {"chat-a-hf-cache", "prometheus-data", "grafana-data", "open-webui-data"}
    # the chat UI starts once the gateway on its host serves (the embeddings on gpu-b are not this file's)
    assert a["services"]["chat-ui"]["depends_on"] == {"gateway": {"condition": "service_healthy"}}
    assert main(["fleet", "--format", "compose", "--output", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["compose.gpu-a.yaml", "compose.gpu-b.yaml"]
    with pytest.raises(SystemExit) as usage:
        main(["fleet", "--format", "compose"])
    assert usage.value.code == 2


# --------------------------------------------------------------------------- validation across the fleet

FLEET_MISTAKES: list[tuple[str, dict[str, Any], str]] = [
    (
        "server on a host that does not exist",
        {"servers__coder__host": "gpu-c"},
        "servers.coder.host is 'gpu-c', which is not a host of rocm-inference:hosts (did you mean 'gpu-b'?); allowed: gpu-a, gpu-b",
    ),
    (
        "embeddings without a host among several",
        {"embeddings": {"image": "michaelf34/infinity:0.0.77-cpu", "model": "nomic-ai/nomic-embed-text-v1.5"}},
        "embeddings.host is required: the stack has 2 hosts (gpu-a, gpu-b)",
    ),
    (
        "a GPU given to two servers of one host",
        {"servers__coder__gpus": [1]},
        "servers.coder.gpus[0] is GPU 1 of host gpu-b, which rocm-inference:servers.chat-b already has: a GPU serves one server",
    ),
    (
        "two containers with one name on a host",
        {"servers__coder__container_name": "chat-b", "servers__coder__cache_volume": "coder-hf-cache"},
        "servers.coder.container_name is container name 'chat-b' on host gpu-b, which vLLM server chat-b already uses "
        "(rocm-inference:servers.chat-b.container_name)",
    ),
    (
        "one host port twice on a host",
        {"servers__coder__port": 7997},
        "embeddings.port is host port 7997 on host gpu-b, which vLLM server coder already uses "
        "(rocm-inference:servers.coder.port)",
    ),
    (
        "two services sharing one cache volume",
        {"servers__coder__cache_volume": "chat-b-hf-cache"},
        "servers.coder.cache_volume is cache volume 'chat-b-hf-cache' on host gpu-b, which vLLM server chat-b already uses "
        "(rocm-inference:servers.chat-b.cache_volume)",
    ),
    (
        "replicas that serve different models",
        {"servers__chat-b__model": "Qwen/Qwen2.5-14B-Instruct-AWQ", "servers__chat-b__max_model_len": 16384},
        "servers.chat-b.model is 'Qwen/Qwen2.5-14B-Instruct-AWQ', but rocm-inference:servers.chat-a serves 'casperhansen/llama-3.3-70b-instruct-awq' under the same name 'llama-3.3-70b'",
    ),
    (
        "port required when a host runs two servers",
        {"servers__coder": {k: v for k, v in values_of("fleet")["servers"]["coder"].items() if k != "port"}},
        "servers.coder.port is required: host gpu-b runs 2 servers, and each needs a host port of its own (the default is 8000)",
    ),
    (
        "a server named like a host",
        {
            "servers": {
                **{k: v for k, v in values_of("fleet")["servers"].items() if k != "coder"},
                "gpu-a": values_of("fleet")["servers"]["coder"],
            }
        },
        "servers.gpu-a has the name of a host: name hosts and servers apart ('gpu-a')",
    ),
]


@pytest.mark.parametrize(("case", "changes", "expected"), FLEET_MISTAKES, ids=[c[0] for c in FLEET_MISTAKES])
def test_fleet_mistakes_give_one_line_naming_the_full_key(case: str, changes: dict[str, Any], expected: str) -> None:
    found = fleet_errors(**changes)
    assert len(found) == 1, found
    assert found[0].startswith("Pulumi.test.yaml: rocm-inference:" + expected), found[0]


def test_all_fleet_problems_come_at_once() -> None:
    found = fleet_errors(
        servers__coder__gpus=[1], servers__coder__cache_volume="chat-b-hf-cache", embeddings__host="gpu-x"
    )
    assert len(found) == 1 and "embeddings.host is 'gpu-x'" in found[0], "a dangling host is reported before the rest"
    found = fleet_errors(servers__coder__gpus=[1], servers__coder__cache_volume="chat-b-hf-cache")
    assert len(found) == 2, found


def test_a_gateway_needs_its_key() -> None:
    found = errors(values_of("fleet"))
    assert found == [
        "Pulumi.test.yaml: rocm-inference:gateway needs rocm-inference:gateway_api_key, the key clients use: "
        'pulumi config set --secret rocm-inference:gateway_api_key "sk-$(openssl rand -hex 24)"'
    ]


def test_replicas_with_different_context_lengths_are_a_warning() -> None:
    values = set_key(values_of("fleet"), "servers.chat-b.max_model_len", 16384)
    loaded = load(values, FLEET_SECRETS)
    assert loaded.warnings == (
        "Pulumi.test.yaml: rocm-inference:servers.chat-b.max_model_len is 16384, but its replica "
        "rocm-inference:servers.chat-a has 32768: a long request succeeds on one replica and fails on the other",
    )


def test_a_file_that_mixes_the_two_forms_is_refused() -> None:
    values = {**values_of("fleet"), "vllm": values_of("big-chat")["vllm"]}
    found = errors(values, FLEET_SECRETS)
    assert len(found) == 1 and "vllm mixes the single-host form with the fleet form" in found[0]
    assert (
        "use rocm-inference:host and rocm-inference:vllm for one host and one server, or rocm-inference:hosts"
        in found[0]
    )


def test_the_single_host_form_is_the_fleet_form_with_one_of_each() -> None:
    single = load(values_of("big-chat")).settings
    as_fleet = {
        "hosts": {"host": values_of("big-chat")["host"]},
        "servers": {"vllm": values_of("big-chat")["vllm"]},
        "embeddings": values_of("big-chat")["embeddings"],
        "monitoring": values_of("big-chat")["monitoring"],
        "chat_ui": values_of("big-chat")["chat_ui"],
    }
    fleet_form = load(as_fleet).settings
    assert single.single and not fleet_form.single
    assert single.model_dump(exclude={"single"}) == fleet_form.model_dump(exclude={"single"})
    plan_a = shipped_plan("big-chat")
    assert [r.name for r in plan_a.resources][:3] == ["host", "host-docker", "host-preflight"]


def test_a_fleet_server_is_named_after_its_key() -> None:
    s = load(values_of("fleet"), FLEET_SECRETS).settings
    assert {n: (srv.container_name, srv.volume_name) for n, srv in s.servers.items()} == {
        "chat-a": ("chat-a", "chat-a-hf-cache"),
        "chat-b": ("chat-b", "chat-b-hf-cache"),
        "coder": ("coder", "coder-hf-cache"),
    }


# --------------------------------------------------------------------------- nested secrets


def test_a_servers_own_key_is_a_nested_secret(mocks: PlanMocks, tmp_path: Path) -> None:
    key = "chat-a-own-key-0123456789abcdef"

    @pulumi.runtime.test
    def run() -> pulumi.Output[Any]:
        sf = use_stack("fleet", {"gateway_api_key": "sk-master-7a6b5c"})
        config = pulumi.runtime.config.CONFIG.get()
        servers = json.loads(config["rocm-inference:servers"])
        servers["chat-a"]["api_key"] = key  # what the engine hands over for --path '...servers.chat-a.api_key'
        pulumi.runtime.set_all_config(
            {**config, "rocm-inference:servers": json.dumps(servers)},
            [*pulumi.runtime.config.get_config_secret_keys_env(), "rocm-inference:servers"],
        )
        written = tmp_path / "Pulumi.fleet.yaml"
        doc = yaml.safe_load(sf.path.read_text())
        doc["config"]["rocm-inference:servers"]["chat-a"]["api_key"] = {"secure": "v1:AAAA:BBBB"}
        written.write_text(yaml.safe_dump(doc))
        loaded, secrets = load_from_pulumi(written)
        assert loaded.settings.has_secret("servers.chat-a.api_key")
        assert "api_key" not in loaded.settings.servers["chat-a"].model_dump()
        outputs = deploy(loaded, secrets, "rocm-inference", "fleet")
        return pulumi.Output.all(*outputs.values()).apply(check)

    def check(_: Any) -> None:
        names = {n for (_, n) in mocks.inputs}
        assert "chat-a-api-key" not in names and "chat-b-api-key" in names, "the given key is used, not generated"
        chat_a = inputs_of(mocks, ":Container", "chat-a-container")
        assert dict(e.split("=", 1) for e in chat_a["envs"]["value"])["VLLM_API_KEY"] == key
        gateway = inputs_of(mocks, ":Container", "gateway-container")
        assert dict(e.split("=", 1) for e in gateway["envs"]["value"])["BACKEND_KEY_CHAT_A"] == key
        for (typ, name), inputs in mocks.inputs.items():
            assert key not in json.dumps(_unwrapped(inputs)), f"{typ} {name} holds the key in plain text"

    run()


def _unwrapped(value: Any) -> Any:
    """value without what sits inside the SDK's secret wrappers."""
    from pulumi.runtime import rpc

    if isinstance(value, dict):
        return None if rpc.is_rpc_secret(value) else {k: _unwrapped(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unwrapped(v) for v in value]
    return value


def test_a_nested_key_in_plain_text_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "Pulumi.fleet.yaml"
    path.write_text(
        (ROOT / "Pulumi.fleet.yaml")
        .read_text()
        .replace("      port: 8001\n", "      port: 8001\n      api_key: abc123\n")
    )
    done = subprocess.run(
        [sys.executable, "-m", "components.plan", "--file", str(path)], cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 1
    assert (
        "Pulumi.fleet.yaml: rocm-inference:servers.coder.api_key is written in plain text: set it with "
        "`pulumi config set --secret --path 'rocm-inference:servers.coder.api_key' ...`"
    ) in done.stderr


def test_the_plan_masks_a_nested_secret(tmp_path: Path) -> None:
    path = tmp_path / "Pulumi.fleet.yaml"
    path.write_text(
        (ROOT / "Pulumi.fleet.yaml")
        .read_text()
        .replace("      port: 8001\n", "      port: 8001\n      api_key:\n        secure: v1:AAAA:BBBB\n")
    )
    plan = plan_stack(read_stack_file(path))
    assert "coder-api-key" not in {r.name for r in plan.resources}
    env = dict(e.split("=", 1) for e in plan.by_name("coder-container").inputs["envs"])
    assert env["VLLM_API_KEY"] == "[secret]" and "placeholder" not in json.dumps(plan.as_json())


# --------------------------------------------------------------------------- blast radius


def test_a_change_to_one_server_replaces_no_container_of_another(tmp_path: Path) -> None:
    repo = git_repo_with(tmp_path, "Pulumi.fleet.yaml")
    stack = repo / "Pulumi.fleet.yaml"
    stack.write_text(stack.read_text().replace("      max_model_len: 16384\n", "      max_model_len: 8192\n"))
    done = subprocess.run(
        [sys.executable, "-m", "components.plan", "fleet", "--against", "HEAD", "--format", "json"],
        cwd=repo, capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    changes = json.loads(done.stdout)["diff"]["changes"]
    assert [(c["name"], c["change"]) for c in changes] == [("coder-container", "replace")]
    assert "the OpenAI endpoint is down about" in changes[0]["note"]
    before = json.loads(done.stdout)["diff"]["capacity_before"]
    assert set(before) == {"chat-a", "chat-b", "coder"}


def test_the_gpu_label_moves_no_other_servers_container() -> None:
    plan = fleet()
    labels = {
        r.name: {lbl["label"]: lbl["value"] for lbl in r.inputs["labels"]}.get("rocm-inference.gpus")
        for r in plan.services
    }
    assert labels["chat-b-container"] == "0,1" and labels["coder-container"] == "2"


def test_litellm_config_is_pure_data_of_the_stack() -> None:
    s = load(values_of("fleet"), FLEET_SECRETS).settings
    config = litellm_config(s)
    assert json.loads(json.dumps(config)) == config
    assert "sk-" not in json.dumps(config)


def test_a_host_the_gateway_or_prometheus_calls_on_loopback_is_warned_of() -> None:
    values = values_of("fleet")
    values["hosts"]["gpu-b"] = {k: v for k, v in values["hosts"]["gpu-b"].items() if k not in ("bind", "address")}
    warnings = load(values, FLEET_SECRETS).warnings
    assert warnings == (
        "Pulumi.test.yaml: rocm-inference:hosts.gpu-b.bind is 127.0.0.1 with address 'localhost': the gateway on host "
        "gpu-a reaches this host's services at its address and published port, which its container cannot do on "
        "loopback: publish on the host's private address (bind) and name it there (address)",
        "Pulumi.test.yaml: rocm-inference:hosts.gpu-b.bind is 127.0.0.1 with address 'localhost': the monitoring on "
        "host gpu-a reaches this host's services at its address and published port, which its container cannot do "
        "on loopback: publish on the host's private address (bind) and name it there (address)",
    )
    assert load(values_of("fleet"), FLEET_SECRETS).warnings == ()


def test_a_server_named_like_another_servers_download_is_refused() -> None:
    coder = values_of("fleet")["servers"]["coder"]
    values = set_key(values_of("fleet"), "servers.coder-prefetch", coder | {"gpus": [2], "port": 8002})
    values = set_key(
        values, "hosts.gpu-b.gpus", [*values["hosts"]["gpu-b"]["gpus"], {"index": 3, "card": 4, "render": 131}]
    )
    values = set_key(values, "servers.coder-prefetch.gpus", [3])
    found = errors(values, FLEET_SECRETS)
    assert len(found) == 1 and "container name 'coder-prefetch' on host gpu-b" in found[0], found


def test_a_secret_where_none_is_read_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "Pulumi.fleet.yaml"
    path.write_text(
        (ROOT / "Pulumi.fleet.yaml")
        .read_text()
        .replace(
            "      port: 8001\n",
            "      port: 8001\n      model_revision:\n        secure: v1:AAAA:BBBB\n",
        )
    )
    done = subprocess.run(
        [sys.executable, "-m", "components.plan", "--file", str(path)], cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 1
    assert "rocm-inference:servers.coder.model_revision is a secret where rocm-inference reads none" in done.stderr


def test_compose_keeps_the_dollars_of_alerts_and_dashboards() -> None:
    compose = to_compose(fleet(), "gpu-a")
    rules = compose["configs"]["prometheus-alerts.rules"]["content"]
    assert "$$labels" in rules and "$labels" not in rules.replace("$$labels", "")


# --------------------------------------------------------------------------- how the gateway reaches each server


def _fleet_file(tmp_path: Path, old: str, new: str) -> Path:
    text = (ROOT / "Pulumi.fleet.yaml").read_text()
    assert text.count(old) == 1, old
    path = tmp_path / "Pulumi.fleet.yaml"
    path.write_text(text.replace(old, new))
    return path


def test_a_server_on_the_gateways_host_is_reached_at_its_container_port_not_the_published_one(tmp_path: Path) -> None:
    """The shipped fleet publishes chat-a on 8000, the port vLLM listens on inside, so a route built from the
    published port would look right. Published on 8100 (and the embeddings moved onto the gateway's host on
    7998), the gateway must still call the containers' own ports; servers on other hosts, their published ones."""
    path = _fleet_file(
        tmp_path,
        "  rocm-inference:embeddings:\n    host: gpu-b\n",
        "  rocm-inference:embeddings:\n    host: gpu-a\n    port: 7998\n",
    )
    path.write_text(
        path.read_text()
        .replace(
            "      gpu_memory_utilization: 0.9\n    chat-b:",
            "      gpu_memory_utilization: 0.9\n      port: 8100\n    chat-b:",
        )
        .replace("      port: 8000\n", "      port: 8200\n")
    )
    plan = plan_stack(read_stack_file(path))
    assert plan.gateway_config is not None
    bases = {
        m["model_info"].get("id", "embeddings"): m["litellm_params"]["api_base"]
        for m in plan.gateway_config["model_list"]
    }
    ports = {
        r.parent: r.inputs["ports"][0] for r in plan.services if r.parent in ("chat-a", "chat-b", "coder", "embeddings")
    }
    assert (ports["chat-a"]["external"], ports["embeddings"]["external"]) == (8100, 7998)
    emb_name = plan.by_name("embeddings-container").inputs["name"]
    assert bases == {
        "chat-a": f"http://chat-a:{ports['chat-a']['internal']}/v1",
        "embeddings": f"http://{emb_name}:{ports['embeddings']['internal']}",
        "chat-b": "http://gpu-b.lan:8200/v1",
        "coder": "http://gpu-b.lan:8001/v1",
    }
    assert (ports["chat-a"]["internal"], ports["embeddings"]["internal"]) == (8000, 7997)


def test_the_routers_settings_come_from_the_stack() -> None:
    """Every key of router_settings, and the request timeout LiteLLM applies, with the defaults and with values
    set in the stack (a hard-coded or swapped key passes one of the two, not both)."""
    defaults = litellm_config(load(values_of("fleet"), FLEET_SECRETS).settings)
    assert defaults["router_settings"] == {
        "routing_strategy": "simple-shuffle",
        "num_retries": 2,
        "allowed_fails": 0,
        "cooldown_time": 30,
        "timeout": 600,
    }
    assert defaults["litellm_settings"]["request_timeout"] == 600
    values = values_of("fleet")
    values["gateway"] |= {
        "routing_strategy": "least-busy",
        "num_retries": 5,
        "allowed_fails": 3,
        "cooldown_time": 120,
        "request_timeout": 900,
    }
    config = litellm_config(load(values, FLEET_SECRETS).settings)
    assert config["router_settings"] == {
        "routing_strategy": "least-busy",
        "num_retries": 5,
        "allowed_fails": 3,
        "cooldown_time": 120,
        "timeout": 900,
    }
    assert config["litellm_settings"]["request_timeout"] == 900
    assert config["litellm_settings"]["telemetry"] is False


def test_the_shipped_gateway_file_carries_the_router_settings(capsys: pytest.CaptureFixture[str]) -> None:
    """What the container reads (--format gateway, the upload) has the same router_settings."""
    assert main(["fleet", "--format", "gateway"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["router_settings"]["num_retries"] == 2 and shown["router_settings"]["cooldown_time"] == 30
    upload = fleet().by_name("gateway-container").inputs["uploads"][0]["content"]
    assert yaml.safe_load(upload)["router_settings"] == shown["router_settings"]
