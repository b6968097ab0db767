"""The real-engine harness's own logic, without an engine: how the engine's steps and the plan's are put in one
vocabulary (tests/engine/pulumi_cli.py), where a mistake would make the real-engine tests agree wrongly."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from components.tools.review import diff
from tests.conftest import shipped_plan
from tests.engine.pulumi_cli import (
    Effect,
    EngineMissing,
    EngineStep,
    engine_effects,
    events_steps,
    find_cli,
    pinned_plugins,
    plan_effects,
)
from tests.stacks import plan_values, set_key, values_of

URN = "urn:pulumi:big-chat::rocm-inference::rocm-inference:vllm:VllmServer$docker:index/container:Container::"


def test_the_pins_are_requirements_txts() -> None:
    assert pinned_plugins() == {"docker": "5.2.0", "command": "1.2.1", "random": "4.21.4"}


def test_a_step_is_named_and_typed_by_its_urn() -> None:
    step = EngineStep.of({"op": "create", "urn": URN + "vllm-container"})
    assert step == EngineStep("create", "vllm-container", "docker:index/container:Container")


def test_the_engines_stream_gives_each_step_in_order() -> None:
    stream = "\n".join(
        json.dumps(e)
        for e in (
            {"sequence": 1, "preludeEvent": {}},
            {"resourcePreEvent": {"metadata": {"op": "delete-replaced", "urn": URN + "vllm-container"}}},
            {"resourcePreEvent": {"metadata": {"op": "replace", "urn": URN + "vllm-container"}}},
            {"resOutputsEvent": {"metadata": {"op": "replace", "urn": URN + "vllm-container"}}},
            {"resourcePreEvent": {"metadata": {"op": "create-replacement", "urn": URN + "vllm-container"}}},
        )
    )
    assert [s.op for s in events_steps("a line of text\n" + stream)] == [
        "delete-replaced",
        "replace",
        "create-replacement",
    ]


def test_a_replacement_says_which_goes_first_on_both_sides() -> None:
    dbr = [
        EngineStep(op, "c", "docker:index/container:Container")
        for op in ("delete-replaced", "replace", "create-replacement")
    ]
    cbd = [
        EngineStep(op, "c", "docker:index/container:Container")
        for op in ("create-replacement", "replace", "delete-replaced")
    ]
    assert engine_effects(dbr) == {"c": Effect("replace", True)}
    assert engine_effects(cbd) == {"c": Effect("replace", False)}
    assert plan_effects([{"op": "delete", "name": "c"}, {"op": "create", "name": "c"}]) == {
        "c": Effect("replace", True)
    }
    assert plan_effects([{"op": "create", "name": "c"}, {"op": "delete", "name": "c"}]) == {
        "c": Effect("replace", False)
    }
    assert plan_effects([{"op": "create", "name": "v"}, {"op": "forgotten", "name": "v"}]) == {"v": Effect("replace")}


def test_components_and_unchanged_resources_are_no_effect() -> None:
    steps = [
        EngineStep("same", "vllm-image", "docker:index/remoteImage:RemoteImage"),
        EngineStep("delete", "chat-b", "rocm-inference:vllm:VllmServer"),
        EngineStep("update", "rocm-inference-big-chat", "pulumi:pulumi:Stack"),
        EngineStep("update", "vllm-prefetch", "command:local:Command"),
    ]
    assert engine_effects(steps) == {"vllm-prefetch": Effect("update")}
    assert plan_effects([{"op": "unapplied", "name": "x"}]) == {"x": Effect("update")}


def test_the_reviews_step_ops_are_its_steps(tmp_path: Path) -> None:
    before = shipped_plan("big-chat").as_json()
    after = plan_values(set_key(values_of("big-chat"), "vllm.health_interval", 5), tmp_path, stack="big-chat")
    change = diff(before, after, "before").as_json()
    assert len(change["step_ops"]) == len(change["steps"]) >= 2
    for op, line in zip(change["step_ops"], change["steps"], strict=True):
        assert line.split()[:2] == [op["op"], op["name"]]
    assert {"op": "delete", "name": "vllm-container", "type": "docker:index/container:Container"} in change["step_ops"]


def test_without_the_pinned_plugins_the_reason_names_each(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A CLI whose plugin list lacks the pins: one line naming what is missing and what is installed."""
    cli = tmp_path / "pulumi"
    listed = [{"name": "docker", "kind": "resource", "version": "4.5.0"}]
    cli.write_text(f"#!/bin/sh\n[ \"$1\" = version ] && echo v3.259.0 && exit 0\necho '{json.dumps(listed)}'\n")
    cli.chmod(cli.stat().st_mode | stat.S_IXUSR)
    (tmp_path / "pulumi-language-python").write_text("")
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    with pytest.raises(EngineMissing) as err:
        find_cli()
    assert "docker 5.2.0 (installed: 4.5.0)" in str(err.value)
    assert "command 1.2.1 (installed: none)" in str(err.value)
