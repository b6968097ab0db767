"""`python -m components.plan`: the offline plan of the real stack files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.settings import read_stack_file
from components.settings.stackfile import stack_path
from components.tools.plan import main, plan_stack
from components.tools.planned import SECRET_MASK, Plan
from tests.conftest import DATA, ROOT, STACKS, shipped_plan


def plan_of(stack: str) -> Plan:
    return shipped_plan(stack)


def container(plan: Plan, name: str) -> dict[str, Any]:
    return plan.by_name(name).inputs


def env(inputs: dict[str, Any]) -> dict[str, str]:
    return dict(e.split("=", 1) for e in inputs["envs"])


def test_big_chat_plan_carries_every_value_of_the_seed_compose_file() -> None:
    seed = yaml.safe_load((DATA / "seed-compose.yaml").read_text())["services"]
    plan = plan_of("big-chat")
    vllm, emb = container(plan, "vllm-container"), container(plan, "embeddings-container")

    s = seed["vllm"]
    assert plan.by_name("vllm-image").inputs["name"] == s["image"]
    assert vllm["name"] == s["container_name"]
    assert [f"{d['hostPath']}:{d['containerPath']}" for d in vllm["devices"]] == s["devices"]
    assert vllm["groupAdds"] == s["group_add"]
    assert vllm["shmSize"] == 16 * 1024 and s["shm_size"] == "16g"
    for entry in s["environment"]:
        key, value = entry.split("=", 1)
        assert env(vllm)[key] == value
    # The seed's command, and the served name (offline, vLLM would name the model by its snapshot path).
    assert vllm["command"] == [*s["command"], "--served-model-name", s["command"][s["command"].index("--model") + 1]]

    s = seed["embeddings"]
    assert emb["name"] == s["container_name"]
    assert emb["command"][: len(s["command"])] == s["command"]
    host, internal = s["ports"][0].split(":")
    assert [(p["external"], p["internal"]) for p in emb["ports"]] == [(int(host), int(internal))]
    # The one deliberate difference: the seed's `latest` is pinned to a released CPU tag of the same image.
    seed_repo = s["image"].rsplit(":", 1)[0]
    assert plan.by_name("embeddings-image").inputs["name"].startswith(seed_repo + ":")
    assert not plan.by_name("embeddings-image").inputs["name"].endswith(":latest")


def test_small_chat_maps_only_host_gpu_1_as_device_0() -> None:
    plan = plan_of("small-chat")
    vllm = container(plan, "vllm-container")
    assert [d["hostPath"] for d in vllm["devices"]] == ["/dev/kfd", "/dev/dri/card2", "/dev/dri/renderD129"]
    assert env(vllm)["HIP_VISIBLE_DEVICES"] == "0"
    assert "--tensor-parallel-size" in vllm["command"]
    assert vllm["command"][vllm["command"].index("--tensor-parallel-size") + 1] == "1"
    assert vllm["command"][vllm["command"].index("--gpu-memory-utilization") + 1] == "0.85"
    big = container(plan_of("big-chat"), "vllm-container")
    assert vllm["command"][vllm["command"].index("--model") + 1] != big["command"][big["command"].index("--model") + 1]


@pytest.mark.parametrize("stack", STACKS)
def test_every_gpu_or_named_container_is_replaced_delete_first_and_caches_are_kept(stack: str) -> None:
    plan = plan_of(stack)
    containers = plan.services
    assert containers
    for r in containers:
        assert r.options["delete_before_replace"], r.name
        assert "envs" in r.options["additional_secret_outputs"], r.name
        # Each container under its own host's Docker provider: the host its server names.
        host = read_stack_file(stack_path(stack)).values.get("hosts", {"host": None})
        providers = {f"{h}-docker" for h in host}
        assert r.options["provider"] in providers, r.name
        assert r.inputs["image"].startswith("sha256:"), "the container must run the RemoteImage's id, not a tag"
    for r in plan.of_type(":Volume"):
        # Never deleted by Pulumi, and never protected: protect would refuse removing a server or moving it.
        assert r.options["retain_on_delete"] and not r.options["protect"], r.name
    for r in plan.of_type(":RemoteImage"):
        assert r.inputs["keepLocally"] is True


def test_parents_form_the_component_tree() -> None:
    parents = {r.name: r.parent for r in plan_of("big-chat").resources}
    assert parents == {
        "host": None,
        "host-docker": "host",
        "host-preflight": "host",
        "vllm-gpus": "host",
        "vllm": None,
        "host-network": "host",
        "vllm-image": "vllm",
        "vllm-cache": "vllm",
        "vllm-prefetch": "vllm",
        "vllm-container": "vllm",
        "embeddings": None,
        "embeddings-image": "embeddings",
        "embeddings-cache": "embeddings",
        "embeddings-container": "embeddings",
        "node-exporter-password": None,
        "grafana-admin-password": None,
        "monitoring": None,
        "host-node-exporter-image": "monitoring",
        "host-node-exporter-container": "monitoring",
        "prometheus-image": "monitoring",
        "prometheus-cache": "monitoring",
        "prometheus-container": "monitoring",
        "grafana-image": "monitoring",
        "grafana-cache": "monitoring",
        "grafana-container": "monitoring",
        "grafana-password-reset": "monitoring",
        "chat-ui-secret-key": None,
        "chat-ui-admin-password": None,
        "chat-ui": None,
        "chat-ui-image": "chat-ui",
        "chat-ui-cache": "chat-ui",
        "chat-ui-container": "chat-ui",
        "chat-ui-admin-reset": "chat-ui",
    }


def test_secure_values_are_masked_in_the_plan(tmp_path: Path) -> None:
    text = (ROOT / "Pulumi.big-chat.yaml").read_text() + (
        "  rocm-inference:vllm_api_key:\n    secure: v1:AAAAAAAAAAAAAAAA:BBBBBBBBBBBBBBBBBBBBBBBB\n"
    )
    path = tmp_path / "Pulumi.keyed.yaml"
    path.write_text(text)
    plan = plan_stack(read_stack_file(path))
    vllm = plan.by_name("vllm-container")
    assert env(vllm.inputs)["VLLM_API_KEY"] == SECRET_MASK
    assert vllm.options["secret_inputs"] == ["envs"]
    assert "placeholder" not in json.dumps(plan.as_json())


def test_json_format(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["big-chat", "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["stack"] == "big-chat"
    assert set(doc) >= {"stack", "file", "resources", "outputs", "warnings", "capacity"}
    assert all(set(r) >= {"type", "name", "parent", "inputs"} for r in doc["resources"])
    assert doc["outputs"]["openai_base_url"] == "http://localhost:8000/v1"
    assert set(doc["capacity"]) == {"vllm"}, "one memory plan per server, keyed by server name"
    capacity = doc["capacity"]["vllm"]
    assert set(capacity) >= {
        "gpu_memory_gib", "usable_gib", "weights_gib_per_gpu", "reserve_gib_per_gpu", "kv_cache_gib_per_gpu",
        "kv_bytes_per_token_per_gpu", "kv_cache_tokens", "max_concurrency", "fits",
    }  # fmt: skip
    assert capacity["fits"] is True and capacity["kv_bytes_per_token_per_gpu"] == 163840
    assert capacity["kv_cache_tokens"] >= 32768
    speed = capacity["performance"]
    assert set(speed) == {
        "workload", "decode_tokens_per_s", "output_tokens_per_s", "prefill_tokens_per_s", "ttft_s", "longest_prefill_s",
    }  # fmt: skip
    assert speed["workload"] == {"prompt_tokens": 1000, "output_tokens": 300, "concurrency": 4}
    assert set(speed["decode_tokens_per_s"]) == {"estimate", "low", "high", "bound"}
    assert set(speed["ttft_s"]) == {"estimate", "low", "high"}


def test_text_format_draws_the_memory_plan_per_gpu(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["big-chat"]) == 0
    out = capsys.readouterr().out
    bars = [line for line in out.splitlines() if line.startswith(("  GPU 0 |", "  GPU 1 |"))]
    assert len(bars) == 2 and all("█" in b and "░" in b and b.endswith("|") for b in bars)
    assert "tokens" in out and "fits" in out
    assert (
        len(
            [
                line
                for line in out.splitlines()
                if line.startswith("  Speed (fitted on published gfx906 runs) at 4 requests")
            ]
        )
        == 1
    )


def test_text_format_shows_tree_and_container_settings(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["small-chat"]) == 0
    out = capsys.readouterr().out
    assert (
        "└─ vllm-container (docker:index/container:Container)  [delete_before_replace; depends on host-preflight, "
        "vllm-prefetch; timeouts create 35m0s update 35m0s delete 3m0s]" in out
    )
    assert (
        "devices: /dev/kfd:/dev/kfd:rwm, /dev/dri/card2:/dev/dri/card2:rwm, /dev/dri/renderD129:/dev/dri/renderD129:rwm"
        in out
    )
    assert "HIP_VISIBLE_DEVICES=0" in out


def test_file_option_plans_an_arbitrary_stack_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "other.yaml"
    path.write_text((ROOT / "Pulumi.small-chat.yaml").read_text())
    assert main(["--file", str(path), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["stack"] == "other"


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "components.plan", *args], cwd=ROOT, capture_output=True, text=True)


def test_invalid_stack_exits_1_with_one_line_naming_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "Pulumi.bad.yaml"
    path.write_text(
        (ROOT / "Pulumi.big-chat.yaml")
        .read_text()
        .replace("gpu_memory_utilization: 0.9", "gpu_memory_utilization: 1.3")
    )
    result = run_cli("--file", str(path))
    assert result.returncode == 1
    assert (
        result.stderr.strip()
        == "Pulumi.bad.yaml: rocm-inference:vllm.gpu_memory_utilization must be in (0, 1], got 1.3"
    )
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_missing_file_and_usage_errors() -> None:
    missing = run_cli("no-such-stack")
    assert missing.returncode == 2 and "Pulumi.no-such-stack.yaml" in missing.stderr
    assert "the stacks here: big-chat, fleet, small-chat" in missing.stderr and "Traceback" not in missing.stderr
    unreadable = run_cli("--file", "no-such-file.yaml")
    assert unreadable.returncode == 1 and "no-such-file.yaml: cannot read the stack file" in unreadable.stderr
    assert run_cli().returncode == 2
    assert run_cli("big-chat", "--format", "xml").returncode == 2
