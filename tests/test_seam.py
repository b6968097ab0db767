"""The engine seam: a toy engine, registered from the tests folder only, is planned like the project's own (its
container, health check, component, gateway route, scrape job and its own rules), with no other change."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from components.planning import engines
from tests.conftest import shipped_plan
from tests.stacks import errors, plan_values, set_key, values_of
from tests.toy_server import TOY, TOY_HEALTH, TOY_PORT


@pytest.fixture
def toy() -> Iterator[None]:
    engines.register(TOY)
    try:
        yield
    finally:
        del engines.ENGINES[TOY.name]


def toy_fleet() -> dict[str, object]:
    """The fleet, its coder server on the toy engine with a toy's context."""
    values = set_key(values_of("fleet"), "servers.coder.engine", "toy")
    return set_key(values, "servers.coder.max_model_len", 4096)


def test_a_registered_engine_is_planned_like_the_projects_own(toy: None, tmp_path: Path) -> None:
    plan = plan_values(toy_fleet(), tmp_path)
    c = plan.by_name("coder-container").inputs
    assert c["command"] == [
        "toy-serve",
        "--model",
        "Qwen/Qwen2.5-7B-Instruct-AWQ",
        "--port",
        "9400",
        "--context",
        "4096",
    ]
    assert c["healthcheck"]["tests"] == list(TOY_HEALTH)
    assert [(p["internal"], p["external"]) for p in c["ports"]] == [(TOY_PORT, 8001)]
    # Its GPUs and key come from the plan, as a vLLM server's do: the devices of host GPU 2, a generated key.
    assert json.loads(json.dumps(c["envs"])) == ["HIP_VISIBLE_DEVICES=0", "TOY_API_KEY=[secret]"]
    assert c["devices"] == shipped_plan("fleet").by_name("coder-container").inputs["devices"]
    assert (
        "rocm-inference:toy:ToyServer$docker:index/container:Container::coder-container"
        in plan.by_name("coder-container").urn
    )
    # No download: the toy's container plans none, and nothing of vLLM's is in it.
    assert not any(r.name == "coder-prefetch" for r in plan.resources)
    assert all("vllm" not in part for part in c["command"])
    # Callers reach it through what the engine says: the gateway's route and the scrape job.
    assert plan.gateway_config is not None and plan.prometheus_config is not None
    route = next(m for m in plan.gateway_config["model_list"] if m["model_info"].get("id") == "coder")
    assert route["litellm_params"]["model"] == "openai/qwen2.5-7b"
    gpu_b = values_of("fleet")["hosts"]["gpu-b"]["address"]
    assert route["litellm_params"]["api_base"] == f"http://{gpu_b}:8001/v1"
    jobs = {j["job_name"]: j for j in plan.prometheus_config["scrape_configs"]}
    assert [t["labels"]["server"] for t in jobs["toy"]["static_configs"]] == ["coder"]
    assert "coder" not in [t["labels"]["server"] for t in jobs["vllm"]["static_configs"]]
    # The other servers stay vLLM's, and the toy has no memory plan to show.
    assert plan.by_name("chat-a-container").inputs["command"][:3] == [
        "python",
        "-m",
        "vllm.entrypoints.openai.api_server",
    ]
    assert "coder" not in plan.servers and plan.servers["chat-a"].capacity is not None


def test_the_engines_own_rules_run(toy: None) -> None:
    values = set_key(values_of("fleet"), "servers.coder.engine", "toy")
    found = errors(values, ("gateway_api_key",))
    assert any("servers.coder.max_model_len is 16384: a toy serves at most 4096" in e for e in found), found


def test_an_engine_that_is_not_registered_is_refused_by_its_key() -> None:
    found = errors(set_key(values_of("fleet"), "servers.coder.engine", "toy"), ("gateway_api_key",))
    assert any("servers.coder.engine is 'toy': the engines are infinity, llamacpp, vllm" in e for e in found), found
