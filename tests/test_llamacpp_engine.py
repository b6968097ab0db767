"""llama.cpp's llama-server as an engine (components/planning/engines/llamacpp.py): its settings, the plan, the
compose export, the gateway, the chat page, the scrape, and each refusal and warning, on the test stacks
tests/stacks/Pulumi.llamacpp-moe.yaml (one server on two GPUs, part of its experts on the host) and
Pulumi.mixed-fleet.yaml (a vLLM and a llama.cpp server behind the gateway)."""

from __future__ import annotations

import copy
import functools
import json
import shlex
from pathlib import Path
from typing import Any

import pytest

from components.planning.chat_ui import contradictions as chat_ui_contradictions
from components.planning.engines import ENGINES, check_stack
from components.planning.engines.llamacpp_monitoring import progress_check
from components.planning.health import STALL_MIN_S
from components.settings import StackConfigError, read_stack_file, validate
from components.tools.compose import to_compose
from components.tools.plan import plan_stack, render_text
from components.tools.planned import Plan, fake_image_id
from components.tools.review import render_markdown
from tests.published_gguf import qwen3_30b_a3b_q4_k_m

STACKS = Path(__file__).parent / "stacks"
MOE = STACKS / "Pulumi.llamacpp-moe.yaml"
MIXED = STACKS / "Pulumi.mixed-fleet.yaml"
MODEL = (
    "/root/.cache/huggingface/hub/models--unsloth--Qwen3-30B-A3B-GGUF/snapshots/"
    "0000000000000000000000000000000000000000/Qwen3-30B-A3B-Q4_K_M.gguf"
)


@functools.cache
def planned(path: Path) -> Plan:
    return plan_stack(read_stack_file(path))


def values(path: Path) -> dict[str, Any]:
    return copy.deepcopy(read_stack_file(path).values)


def problems(v: dict[str, Any], warnings: bool = False) -> list[str]:
    try:
        loaded = validate(v, (), "Pulumi.t.yaml", (check_stack, chat_ui_contradictions))
    except StackConfigError as exc:
        assert not warnings, exc.lines
        return exc.lines
    return list(loaded.warnings) if warnings else []


def moe(**changes: Any) -> dict[str, Any]:
    v = values(MOE)
    v["servers"]["moe"].update(changes)
    return v


def test_the_engine_is_registered() -> None:
    assert ENGINES["llamacpp"].component_type == "rocm-inference:llamacpp:LlamacppServer"


@pytest.mark.parametrize("path", [MOE, MIXED])
def test_the_stacks_gguf_block_is_the_derivation(path: Path) -> None:
    """The committed block is tests/published_gguf.py's, which is about the 18.6 GB published."""
    facts = qwen3_30b_a3b_q4_k_m()
    assert values(path)["servers"]["moe"]["gguf"] == json.loads(json.dumps(facts.to_block()))
    assert 18.4e9 < sum(t.nbytes for t in facts.tensors) < 18.7e9


def test_command_sets_every_sizing_argument() -> None:
    container = planned(MOE).by_name("moe-container").inputs
    assert " ".join(container["command"]) == (
        f"--server -m {MODEL} -c 32768 -np 2 --fit off -no-kvu -fa on -b 2048 -ub 512 -ctk q8_0 -ctv q8_0 "
        "--cache-ram 8192 -lm mmap -ngl all -sm layer -mg 0 -ts 15856,15856 --n-cpu-moe 12 --host 0.0.0.0 "
        "--port 8080 --metrics --offline --no-webui --alias qwen3-30b-a3b --jinja"
    )
    assert "entrypoints" not in container  # the image's /app/tools.sh runs llama-server on --server
    env = container["envs"]
    assert "HF_HUB_OFFLINE=1" in env and "HIP_VISIBLE_DEVICES=0,1" in env
    # loading (503) runs no clock; a slot's whole prefill at the band's slow end is under the floor here
    assert container["healthcheck"]["tests"] == ["CMD", "python3", "-c", progress_check(8080, STALL_MIN_S)]
    assert container["ports"] == [{"ip": "127.0.0.1", "internal": 8080, "external": 8081}]


def test_the_key_is_never_on_the_command_line() -> None:
    container = planned(MIXED).by_name("moe-container").inputs
    assert "--api-key" not in container["command"]
    assert any(e.startswith("LLAMA_API_KEY=") for e in container["envs"])


def test_download_fetches_only_the_chosen_file_at_the_pinned_revision() -> None:
    argv = shlex.split(planned(MOE).by_name("moe-prefetch").inputs["create"].split("; exec ", 1)[1])
    image = argv.index(fake_image_id("docker.io/mixa3607/llama.cpp-gfx906:b10288-rocm-7.14-20260808180342"))
    # the image's entrypoint would take the command as tools.sh's arguments: the download names its own
    assert argv[argv.index("--entrypoint") + 1] == "timeout"
    assert argv[image + 1 :] == [
        "-k",
        "30",
        "7200",
        "python3",
        "-c",
        "from huggingface_hub import snapshot_download;print(snapshot_download(repo_id='unsloth/Qwen3-30B-A3B-GGUF', "
        "revision='0000000000000000000000000000000000000000',allow_patterns=['Qwen3-30B-A3B-Q4_K_M.gguf']))",
    ]


def test_plan_json_reports_each_device_the_host_the_context_and_speed() -> None:
    doc = planned(MOE).as_json()["capacity"]["moe"]
    assert [d["device"] for d in doc["devices"]] == ["ROCm0", "ROCm1"]
    for d in doc["devices"]:
        assert d["model_mib"] > 0 and d["kv_mib"] > 0 and d["compute_mib"] > 0
        assert d["total_mib"] <= d["memory_mib"]
    assert doc["host"]["model_mib"] > 4000  # twelve layers' experts kept on the host
    assert (doc["context"], doc["context_per_slot"], doc["slots"]) == (32768, 16384, 2)
    speed = doc["speed"]["decode_tokens_per_s"]
    assert speed["low"] < speed["estimate"] < speed["high"]


def test_text_plan_and_pr_comment_show_the_same_plan() -> None:
    plan = planned(MOE)
    lines = plan.llamacpp["moe"].lines()
    text = render_text(plan)
    markdown = render_markdown(plan, [])
    for line in lines[1:]:
        assert line in text and line in markdown
    assert "GPU 0 (ROCm0): model" in text and "Host memory: model" in text


def test_compose_export_runs_the_download_then_the_server() -> None:
    services = to_compose(planned(MOE))["services"]
    server, fetch = services["moe"], services["moe-prefetch"]
    assert server["command"][:3] == ["--server", "-m", MODEL]
    assert fetch["entrypoint"] == ["timeout"]
    assert server["depends_on"]["moe-prefetch"] == {"condition": "service_completed_successfully"}


def test_gateway_routes_both_engines() -> None:
    models = {m["model_name"]: m["litellm_params"] for m in planned(MIXED).gateway_config["model_list"]}  # type: ignore[index]
    assert models["qwen3-30b-a3b"]["model"] == "openai/qwen3-30b-a3b"
    assert models["qwen3-30b-a3b"]["api_base"] == "http://moe:8080/v1"
    assert models["qwen2.5-7b"]["model"] == "hosted_vllm/qwen2.5-7b"


def test_chat_page_lists_both_models() -> None:
    env = planned(MIXED).by_name("chat-ui-container").inputs["envs"]
    configs = next(e for e in env if e.startswith("OPENAI_API_CONFIGS="))
    assert json.loads(configs.split("=", 1)[1])["0"]["model_ids"] == ["qwen2.5-7b", "qwen3-30b-a3b"]


def test_prometheus_sends_the_servers_key_from_a_file() -> None:
    plan = planned(MIXED)
    assert plan.prometheus_config is not None
    job = next(j for j in plan.prometheus_config["scrape_configs"] if j["job_name"] == "llamacpp-moe")
    assert job["authorization"] == {"type": "Bearer", "credentials_file": "/etc/prometheus/secrets/llamacpp-moe-key"}
    assert job["static_configs"] == [{"targets": ["moe:8080"], "labels": {"host": "box", "server": "moe"}}]
    assert job["relabel_configs"] == [{"target_label": "job", "replacement": "llamacpp"}]
    uploads = plan.by_name("prometheus-container").inputs["uploads"]
    key = next(u for u in uploads if u["file"] == "/etc/prometheus/secrets/llamacpp-moe-key")
    assert key["content"] == "[secret]"


@pytest.mark.parametrize(
    ("changes", "key", "words"),
    [
        ({"flash_attn": False}, "servers.moe.cache_type_v", "needs flash attention"),
        ({"tensor_split": [1.0]}, "servers.moe.tensor_split", "1 shares for the server's 2 GPUs"),
        ({"main_gpu": 2}, "servers.moe.main_gpu", "not an index among the server's 2 GPUs"),
        ({"ubatch_size": 4096}, "servers.moe.ubatch_size", "larger than batch_size 2048"),
        ({"model_revision": "main"}, "servers.moe.model_revision", "must match"),
        ({"n_cpu_moe": 0, "ctx_size": 262144}, "servers.moe.ctx_size", "does not fit: GPU"),
        ({"image": "ghcr.io/ggml-org/llama.cpp:server-rocm"}, "servers.moe.image", "no llama.cpp facts"),
        ({"gguf": None}, "servers.moe.gguf", "is required: the GGUF's facts"),
        ({"file": "Q8_0"}, "servers.moe.file", "the gguf block's file"),
        ({"cache_type_k": "q3_k"}, "servers.moe.cache_type_k", "must be one of"),
        ({"tensor_parallel_size": 2}, "servers.moe.tensor_parallel_size", "is not a known key"),
    ],
)
def test_refusals_name_the_key(changes: dict[str, Any], key: str, words: str) -> None:
    found = problems(moe(**changes))
    assert any(f"rocm-inference:{key} " in line and words in line for line in found), found


def test_a_context_that_does_not_fit_gives_the_largest_that_does() -> None:
    found = problems(moe(n_cpu_moe=0, ctx_size=262144))
    line = next(x for x in found if "ctx_size" in x)
    largest = int(line.rsplit("the largest context that fits is ", 1)[1])
    assert 0 < largest < 262144 and largest % 512 == 0
    assert problems(moe(n_cpu_moe=0, ctx_size=largest)) == []


@pytest.mark.parametrize(
    ("changes", "key", "words"),
    [
        ({"ctx_size": 131072}, "servers.moe.ctx_size", "beyond the 40960 tokens"),
        ({"cache_ram": -1}, "servers.moe.cache_ram", "no limit"),
        ({"ctx_size": 32000}, "servers.moe.ctx_size", "not a multiple of 256 per slot"),
    ],
)
def test_warnings_name_the_key(changes: dict[str, Any], key: str, words: str) -> None:
    found = problems(moe(**changes), warnings=True)
    assert any(f"rocm-inference:{key} " in line and words in line for line in found), found


def test_two_servers_cannot_share_a_gpu_across_engines() -> None:
    v = values(MIXED)
    v["servers"]["moe"]["gpus"] = [0, 1]
    assert any("servers.moe.gpus[0] is GPU 0 of host box" in line for line in problems(v))


def test_llamacpp_rules_and_dashboard_hang_off_the_engine() -> None:
    """llama.cpp's static and planned alert rules and its dashboard, where a stack has a llama.cpp server; the
    planned rules hold its slot's context (kv_unified: the whole 40960) and its decode band's low edge."""
    plan = planned(MIXED)
    assert plan.prometheus_config is not None
    assert plan.prometheus_config["rule_files"][1:] == [
        "/etc/prometheus/llamacpp.rules.yml",
        "/etc/prometheus/llamacpp-planned.rules.yml",
    ]
    uploads = {u["file"]: u["content"] for u in plan.by_name("prometheus-container").inputs["uploads"]}
    assert "LlamaCppDown" in uploads["/etc/prometheus/llamacpp.rules.yml"]
    planned_rules = uploads["/etc/prometheus/llamacpp-planned.rules.yml"]
    assert 'server="moe"} >= 36864' in planned_rules and "LlamaCppSlowDecode" in planned_rules
    grafana = [u["file"] for u in plan.by_name("grafana-container").inputs["uploads"]]
    assert "/etc/grafana/dashboards/llamacpp.json" in grafana
