"""components/tools/state_rename.py: a resource renamed in an exported state, every reference with it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from components.tools.state_rename import main

STACK = "urn:pulumi:fleet::rocm-inference::"
HOST = f"{STACK}rocm-inference:host:RocmHost::gpu-b"
PROVIDER = f"{STACK}rocm-inference:host:RocmHost$pulumi:providers:docker::gpu-b-docker"
NETWORK = f"{STACK}rocm-inference:host:RocmHost$docker:index/network:Network::gpu-b-network"
OTHER = f"{STACK}rocm-inference:host:RocmHost$pulumi:providers:docker::gpu-b-dockerish"


def exported() -> dict[str, Any]:
    return {
        "version": 3,
        "deployment": {
            "resources": [
                {"urn": HOST, "type": "rocm-inference:host:RocmHost"},
                {"urn": PROVIDER, "parent": HOST, "id": "p1"},
                {"urn": OTHER, "parent": HOST, "id": "p2"},
                {
                    "urn": NETWORK,
                    "parent": HOST,
                    "provider": f"{PROVIDER}::p1",
                    "dependencies": [PROVIDER],
                    "propertyDependencies": {"name": [PROVIDER]},
                    "replaceWith": [PROVIDER],
                    "outputs": {"name": "rocm-inference-gpu-b"},
                },
            ]
        },
    }


def test_every_reference_follows_the_renamed_urn_and_nothing_else(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    state.write_text(json.dumps(exported()))
    assert main([str(state), f"{HOST}=gpu-b2", f"{PROVIDER}=gpu-b2-docker"]) == 0
    host, provider, other, network = json.loads(state.read_text())["deployment"]["resources"]
    new_provider = PROVIDER.replace("::gpu-b-docker", "::gpu-b2-docker")
    assert host["urn"] == HOST.replace("::gpu-b", "::gpu-b2")
    assert provider == {"urn": new_provider, "parent": host["urn"], "id": "p1"}
    assert other["urn"] == OTHER, "a longer name that starts the same is another resource"
    assert network["urn"] == NETWORK and network["parent"] == host["urn"]
    assert network["provider"] == f"{new_provider}::p1"
    assert network["dependencies"] == network["replaceWith"] == [new_provider]
    assert network["propertyDependencies"] == {"name": [new_provider]}
    assert network["outputs"] == {"name": "rocm-inference-gpu-b"}, "values are not references"


def test_an_unknown_urn_a_taken_name_or_a_bad_pair_changes_nothing(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    text = json.dumps(exported())
    state.write_text(text)
    assert main([str(state), f"{HOST}x=gpu-c"]) == 1
    assert main([str(state), f"{PROVIDER}=gpu-b-dockerish"]) == 1
    assert main([str(state), "gpu-b=gpu-c"]) == 2
    assert main([str(state), f"{HOST}=a::b"]) == 2
    assert state.read_text() == text
