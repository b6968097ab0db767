"""Every resource's URN, built as the engine builds it, is unique: in every shipped stack and in any placement.

The SDK's mocks accept a URN registered twice; `pulumi preview` refuses it (components/planning/urns.py).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from components.planning.urns import duplicates, qualified_type, type_chain, urn
from components.settings import StackConfigError, read_stack_file
from components.tools.plan import plan_stack
from tests.conftest import STACKS, shipped_plan
from tests.stacks import plan_values, values_of


def test_urns_are_built_as_the_engine_builds_them() -> None:
    # pulumi/pulumi v3.259.0 pkg/engine/lifecycletest/testdata/output/TestDuplicateURN: a child of the stack.
    assert (
        urn("test", "test", qualified_type(None, "pkgA:m:typA"), "resA") == "urn:pulumi:test::test::pkgA:m:typA::resA"
    )
    assert qualified_type("pulumi:pulumi:Stack", "pkgA:m:typA") == "pkgA:m:typA"
    chain = type_chain(["rocm-inference:host:RocmHost", "docker:index/network:Network"])
    assert urn("fleet", "rocm-inference", chain, "gpu-a-network") == (
        "urn:pulumi:fleet::rocm-inference::rocm-inference:host:RocmHost$docker:index/network:Network::gpu-a-network"
    )
    assert duplicates(["a", "b", "a", "c", "b"]) == ["a", "b"]


@pytest.mark.parametrize("stack", STACKS)
def test_each_shipped_stack_registers_every_urn_once(stack: str) -> None:
    plan = shipped_plan(stack)
    urns = [r.urn for r in plan.resources]
    assert all(u.startswith(f"urn:pulumi:{stack}::rocm-inference::") for u in urns)
    assert duplicates(urns) == []
    # The parent's type chain is in the URN: a host's network and a server's container.
    container = next(r for r in plan.resources if r.type == "docker:index/container:Container")
    assert "$docker:index/container:Container::" in container.urn


def _plan(tmp_path: Path, values: dict[str, Any], secure: dict[str, str]) -> list[str]:
    plan = plan_values(values, tmp_path, {k: {"secure": v} for k, v in secure.items()})
    return [r.urn for r in plan.resources]


def _fleet() -> dict[str, Any]:
    values = values_of("fleet")
    values.pop("gateway_api_key")
    return values


def _on(values: dict[str, Any], gateway: str, monitoring: str, embeddings: str) -> dict[str, Any]:
    out = copy.deepcopy(values)
    out["gateway"]["host"], out["monitoring"]["host"], out["embeddings"]["host"] = gateway, monitoring, embeddings
    return out


PLACEMENTS = [
    ("gpu-a", "gpu-a", "gpu-a"),  # everything beside the gateway on one host (the shipped fleet shares gpu-a)
    ("gpu-a", "gpu-b", "gpu-b"),  # spread over both
    ("gpu-b", "gpu-a", "gpu-a"),
    ("gpu-b", "gpu-b", "gpu-a"),
]


@pytest.mark.parametrize(("gateway", "monitoring", "embeddings"), PLACEMENTS)
def test_any_placement_of_gateway_monitoring_and_embeddings_registers_every_urn_once(
    tmp_path: Path, gateway: str, monitoring: str, embeddings: str
) -> None:
    urns = _plan(tmp_path, _on(_fleet(), gateway, monitoring, embeddings), {"gateway_api_key": "v1:AAAA:BBBB"})
    assert duplicates(urns) == []
    networks = [u for u in urns if "docker:index/network:Network::" in u]
    assert len(networks) == len({gateway, monitoring})


def test_several_hosts_with_the_same_service_names_register_every_urn_once(tmp_path: Path) -> None:
    # A third host that is a copy of gpu-b under another name, with a server of its own: the node-exporters,
    # GPU components and networks of hosts of one type must be told apart by name.
    values = _fleet()
    values["hosts"]["gpu-c"] = {**copy.deepcopy(values["hosts"]["gpu-b"]), "docker": "ssh://ops@gpu-c.lan"}
    values["hosts"]["gpu-c"]["address"] = "gpu-c.lan"
    values["hosts"]["gpu-c"]["bind"] = "10.0.0.7"
    values["servers"]["chat-c"] = {**copy.deepcopy(values["servers"]["chat-b"]), "host": "gpu-c"}
    values["servers"]["chat-c"]["container_name"] = "chat-c"
    urns = _plan(tmp_path, values, {"gateway_api_key": "v1:AAAA:BBBB"})
    assert duplicates(urns) == []
    assert sum("node-exporter-container" in u for u in urns) == 3


def test_the_plan_refuses_a_urn_registered_twice_as_the_engine_does(monkeypatch: pytest.MonkeyPatch) -> None:
    import pulumi
    import pulumi_docker as docker

    import components.tools.plan as plan_tool

    original = plan_tool.deploy_plan  # type: ignore[attr-defined]

    def twice(*args: Any, **kwargs: Any) -> dict[str, pulumi.Input[Any]]:
        out = original(*args, **kwargs)
        for _ in range(2):
            docker.Network("extra-network", name="extra")
        return out

    monkeypatch.setattr(plan_tool, "deploy_plan", twice)
    with pytest.raises(StackConfigError) as caught:
        plan_stack(read_stack_file(Path(__file__).resolve().parent.parent / "Pulumi.small-chat.yaml"))
    assert (
        "Duplicate resource URN 'urn:pulumi:small-chat::rocm-inference::docker:index/network:Network::extra-network'"
        in str(caught.value)
    )
