"""`plan --against-state`: what `pulumi up` does from an exported state, and where that state disagrees with
what runs (issue 26 defects 3 and 15).

The exports here are made from a plan the way the engine writes one (pulumi/pulumi v3.259.0
sdk/go/common/apitype/core.go L489-565): URNs, `URN::ID` provider references, dependencies by URN, secrets as
ciphertext, the provider's defaults in the inputs, and the pulled image's real id where the plan has its
stand-in. Each test then sets what only the engine records: a refresh's outputs, an initialization error.
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from components.planning.state import SECRET_SIG, disagreements
from components.tools.plan import main
from components.tools.planned import Plan, fake_image_id
from components.tools.review import diff, diff_state
from tests.conftest import shipped_plan
from tests.test_day_two import _set, day_two

CONTAINER = "docker:index/container:Container"


def _secret(value: Any) -> Any:
    """What the engine writes for a secret (the values themselves are ciphertext)."""
    if isinstance(value, str) and "[secret]" in value:
        return {SECRET_SIG: "1b47061264138c4ac30d75fd1eb44270", "ciphertext": "v1:AAAA" + str(len(value))}
    if isinstance(value, list):
        return [_secret(v) for v in value]
    if isinstance(value, dict):
        return {k: _secret(v) for k, v in value.items()}
    return value


def _real_id(name: str) -> str:
    return "sha256:" + hashlib.sha256(f"pulled {name}".encode()).hexdigest()


def export_of(plan: Plan) -> dict[str, Any]:
    """The `pulumi stack export` a `pulumi up` of this plan would leave."""
    urns = {r.name: r.urn for r in plan.resources}
    # the pulled images' real ids, where the plan has its stand-ins
    real = {fake_image_id(r.inputs["name"]): _real_id(r.inputs["name"]) for r in plan.of_type(":RemoteImage")}
    resources: list[dict[str, Any]] = []
    for r in plan.resources:
        o = r.options
        text = json.dumps(r.inputs)
        for stand_in, pulled in real.items():
            text = text.replace(stand_in, pulled)
        inputs = _secret(json.loads(text))
        outputs = copy.deepcopy(inputs)
        if r.type == CONTAINER:
            inputs |= {"attach": False, "mustRun": True}  # defaults the provider's Check writes into the state
            outputs |= {"attach": False, "mustRun": True}
        if r.type.endswith(":RemoteImage"):
            outputs["imageId"] = _real_id(r.inputs["name"])
        doc: dict[str, Any] = {"urn": r.urn, "type": r.type, "custom": r.custom, "id": f"id-{r.name}"}
        doc |= {"inputs": inputs, "outputs": outputs}
        if r.parent:
            doc["parent"] = urns[r.parent]
        if o.get("provider"):
            doc["provider"] = f"{urns[o['provider']]}::id-{o['provider']}"
        doc["dependencies"] = [urns[n] for n in o.get("dependencies", []) if n in urns]
        doc["propertyDependencies"] = {
            k: [urns[n] for n in names if n in urns] for k, names in o.get("property_dependencies", {}).items()
        }
        for key, option in (("retainOnDelete", "retain_on_delete"), ("protect", "protect")):
            if o.get(option):
                doc[key] = True
        for key, option in (("ignoreChanges", "ignore_changes"), ("replaceOnChanges", "replace_on_changes")):
            if o.get(option):
                doc[key] = list(o[option])
        if o.get("replace_with"):
            doc["replaceWith"] = [urns[n] for n in o["replace_with"]]
        if o.get("replacement_trigger"):
            doc["replacementTrigger"] = o["replacement_trigger"]
        resources.append(doc)
    return {"version": 3, "deployment": {"manifest": {}, "resources": resources}}


def _container(export: dict[str, Any], name: str) -> dict[str, Any]:
    return next(r for r in export["deployment"]["resources"] if r["urn"].endswith(f"::{name}"))


@pytest.mark.parametrize("stack", ["small-chat", "big-chat", "fleet"])
def test_the_state_a_deploy_left_is_no_change(stack: str) -> None:
    plan = shipped_plan(stack)
    d = diff_state(export_of(plan), plan, "state.json")
    assert (d.changes, d.steps, d.state, d.refused) == ([], [], [], [])


def test_a_refresh_that_read_a_stopped_server_makes_the_next_up_replace_it() -> None:
    """Defect 3: a refresh while vLLM was stopped (or in its restart backoff) recorded must_run false and no
    ports (resource_docker_container_funcs.go L797-822), and no later refresh reads them back: the next `pulumi
    up` replaces the container, and the plan now says so, and why."""
    plan = shipped_plan("big-chat")
    export = export_of(plan)
    outputs = _container(export, "vllm-container")["outputs"]
    outputs["mustRun"], outputs["ports"] = False, []
    d = diff_state(export, plan, "state.json")
    assert [s.split(":")[0] for s in d.steps] == [
        "delete    vllm-container (mustRun, ports)",
        "create    vllm-container (mustRun, ports)",
    ]
    (line,) = d.state
    assert line.startswith("vllm-container: the state records must_run false and no published ports")
    assert "The next `pulumi up` replaces the container (a server reloads its model)" in line


def test_a_health_wait_that_timed_out_is_replaced_unless_a_refresh_cleared_it() -> None:
    plan = shipped_plan("big-chat")
    export = export_of(plan)
    vllm = _container(export, "vllm-container")
    vllm["initErrors"] = ["container failed to be in healthy state"]
    d = diff_state(export, plan, "state.json")
    assert d.steps == [
        "delete    vllm-container (initErrors): replaced, the old one deleted first",
        "create    vllm-container (initErrors): the replacement",
    ]
    (line,) = d.state
    assert "Do not refresh first: a refresh clears the error" in line and "pulumi up --replace" in line
    # after a refresh (no initErrors, a healthy-looking running container) the up accepts it as it is
    del vllm["initErrors"]
    assert diff_state(export, plan, "state.json").steps == []


def test_a_change_predicts_the_same_steps_from_the_state_as_from_the_plan_it_was_made_of(tmp_path: Path) -> None:
    """A model change: against the state of the plan before it, the same steps as against that plan."""
    from tests.stacks import plan_values

    by_plan = day_two(tmp_path, "small-chat", _set("vllm.model", "Qwen/Qwen2.5-7B-Instruct-AWQ"))
    old = plan_values(_values("small-chat"), tmp_path / "b", _secure("small-chat"), "day2")
    new_values = _values("small-chat")
    new_values["vllm"]["model"] = "Qwen/Qwen2.5-7B-Instruct-AWQ"
    new = plan_values(new_values, tmp_path / "a", _secure("small-chat"), "day2")
    by_state = diff_state(export_of(old), new, "state.json")
    assert by_state.steps == by_plan.steps == diff(old.as_json(), new, "x").steps


def test_plan_reads_an_exported_state_and_says_where_it_disagrees(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    export = export_of(shipped_plan("small-chat"))
    outputs = _container(export, "vllm-container")["outputs"]
    outputs["mustRun"] = False
    state = tmp_path / "state.json"
    state.write_text(json.dumps(export))
    assert main(["small-chat", "--against-state", str(state)]) == 0
    out = capsys.readouterr().out
    assert f"Changes against {state}:" in out and "What the state records:" in out
    assert "vllm-container: the state records must_run false" in out
    (tmp_path / "bad.json").write_text("{}")
    assert main(["small-chat", "--against-state", str(tmp_path / "bad.json")]) == 2
    assert "has no deployment.resources" in capsys.readouterr().err
    assert disagreements(export) and not disagreements(export_of(shipped_plan("small-chat")))


def _values(stack: str) -> dict[str, Any]:
    from tests.conftest import stack_file

    sf = stack_file(stack)
    return {k: v for k, v in copy.deepcopy(sf.values).items() if k not in sf.secure}


def _secure(stack: str) -> dict[str, Any]:
    from tests.conftest import stack_file

    sf = stack_file(stack)
    return {k: v for k, v in copy.deepcopy(sf.values).items() if k in sf.secure}
