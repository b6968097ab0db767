"""The provider facts table against what extract_provider_facts.py read from the providers' source.

No network and no checkout: the extraction is committed (components/planning/provider_facts.extracted.json);
regenerate it with the command in extract_provider_facts.py's docstring when a pin moves.
"""

from __future__ import annotations

import ast
import json
import re
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from components.planning import provider_facts as pf
from components.planning.provider_facts import Fact
from tests.conftest import ROOT, STACKS, shipped_plan

EXTRACTED = ROOT / "components" / "planning" / "provider_facts.extracted.json"
SDK = Path(pytest.importorskip("pulumi_docker").__file__).parent

# The Terraform resource each bridged type is (pulumi-docker's resources.go says RemoteImage is docker_image).
TF_RESOURCE = {
    pf.CONTAINER: "docker_container",
    pf.REMOTE_IMAGE: "docker_image",
    pf.VOLUME: "docker_volume",
    pf.NETWORK: "docker_network",
    pf.RANDOM_PASSWORD: "random_password",
}
SDK_ARGS = {
    pf.CONTAINER: ("container.py", "ContainerArgs"),
    pf.REMOTE_IMAGE: ("remote_image.py", "RemoteImageArgs"),
    pf.VOLUME: ("volume.py", "VolumeArgs"),
    pf.NETWORK: ("network.py", "NetworkArgs"),
}
# Inputs of the installed pulumi-docker 5.2.0 SDK that upstream v4.5.0 does not have: 5.2.0 bridges a
# newer upstream than any snapshot held. A new entry here means the pin moved: re-extract.
SDK_ONLY = {pf.CONTAINER: {"deviceCgroupRules"}}
COMMAND_STRUCTS = {
    pf.LOCAL_COMMAND: ("local", ("common.ResourceInputs", "local.BaseInputs")),
    pf.REMOTE_COMMAND: ("remote", ("common.ResourceInputs", "remote.CommandInputs")),
}


@cache
def extracted() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(EXTRACTED.read_text())
    return data


def resource(type_token: str) -> dict[str, Any]:
    out: dict[str, Any] = extracted()["resources"][TF_RESOURCE[type_token]]
    return out


def pulumi_name(tf: str, attr: dict[str, Any], renames: dict[str, Any]) -> str:
    """The bridge's default naming: camelCase, a list or set of more than one item pluralized; then renames."""
    if tf in renames:
        return str(renames[tf]["name"])
    head, *rest = tf.split("_")
    name = head + "".join(p.title() for p in rest)
    if attr.get("type") in ("schema.TypeList", "schema.TypeSet") and attr.get("maxitems") != "1":
        if name.endswith(("sh", "ch")):
            name += "es"
        elif not name.endswith("s"):
            name += "s"
    return name


def renames(type_token: str) -> dict[str, Any]:
    tf = TF_RESOURCE[type_token]
    out: dict[str, Any] = extracted()["pulumi_docker"]["resources"].get(tf, {}).get("renames", {})
    return out


def sdk_inputs(type_token: str) -> set[str]:
    """The Pulumi names of the installed SDK's Args properties (the getter's name= or the Python name)."""
    file, cls = SDK_ARGS[type_token]
    text = (SDK / file).read_text()
    start = text.index(f"class {cls}:")
    end = text.find("\nclass ", start + 1)
    body = text[start : end if end > 0 else None]
    return {
        m.group(1) or m.group(2) for m in re.finditer(r'@pulumi\.getter(?:\(name="(\w+)"\))?\s*\n\s*def (\w+)\(', body)
    }


def where(source: str) -> tuple[str, str]:
    """`repo@version path#Lnn` -> (`repo@version`, `path#Lnn`)."""
    repo, loc = source.split(" ")
    return repo, loc


def all_facts() -> list[tuple[str, str]]:
    return [(t, f) for t, fields in pf.FACTS.items() for f in fields]


# --- the table against the extraction -----------------------------------------------------------


@pytest.mark.parametrize(("type_token", "field"), [k for k in all_facts() if k[0] in TF_RESOURCE])
def test_each_terraform_fact_agrees_with_the_extracted_schema(type_token: str, field: str) -> None:
    f = pf.FACTS[type_token][field]
    r = resource(type_token)
    attr = r["attributes"][f.tf_name]
    assert f.replaces == attr["force_new"], "replaces is ForceNew / RequiresReplace"
    assert f.sensitive == attr["sensitive"], "sensitive is Sensitive"
    assert f.applied == (attr["force_new"] or f.tf_name in r["update_fields"]), "applied: replaced or updated"
    if f.read_back:
        assert f.tf_name in r["read_sets"], "read back only where Read sets it"
    elif f.tf_name in r["read_sets"]:
        assert "Read" in f.note, "a field Read sets but the table calls not read back says why in its note"
    # The source line is the attribute's, its ForceNew/Sensitive line, or where update or Read names it.
    repo, loc = where(f.source)
    places = {f"{r['file']}#L{attr[k]}" for k in ("line", "force_new_line", "sensitive_line") if k in attr}
    places |= {r["update_fields"].get(f.tf_name), r["read_sets"].get(f.tf_name)} - {None}
    assert loc in places, f"{field}: {loc} is none of {sorted(places)}"
    which = "random" if type_token == pf.RANDOM_PASSWORD else "docker"
    assert extracted()["_source"][which].startswith(repo + " ")


@pytest.mark.parametrize(("type_token", "field"), [k for k in all_facts() if k[0] in COMMAND_STRUCTS])
def test_each_command_fact_agrees_with_the_extracted_tags(type_token: str, field: str) -> None:
    f = pf.FACTS[type_token][field]
    sub, structs = COMMAND_STRUCTS[type_token]
    cmd = extracted()["command"]
    inputs = {k: v for s in structs for k, v in cmd["inputs"][s].items()}
    tag = inputs[f.tf_name]
    ctl = cmd["controllers"][sub]
    assert f.tf_name == field, "pulumi-command's names are Pulumi's"
    assert f.replaces == tag["replace_on_changes"]
    assert f.sensitive == tag["secret"]
    assert f.applied == (tag["replace_on_changes"] or ctl["CustomUpdate"] is not None)
    assert f.read_back == (ctl["CustomRead"] is not None)
    repo, loc = where(f.source)
    assert loc in {f"{tag['file']}#L{tag['line']}", ctl["CustomUpdate"]}
    assert extracted()["_source"]["command"].startswith(repo + " ")


@pytest.mark.parametrize("field", sorted(pf.FACTS[pf.DOCKER_PROVIDER]))
def test_each_provider_config_fact_agrees_with_the_provider_schema(field: str) -> None:
    f = pf.FACTS[pf.DOCKER_PROVIDER][field]
    config = extracted()["docker_provider_config"]
    attr = config["attributes"][f.tf_name]
    assert f.replaces == attr["force_new"]
    assert f.sensitive == attr["sensitive"]
    assert where(f.source)[1] == f"{config['file']}#L{attr['line']}"
    assert field == pulumi_name(f.tf_name, attr, {})


def test_no_force_new_field_is_marked_in_place() -> None:
    for type_token in TF_RESOURCE:
        r = resource(type_token)
        force_new = {name for name, f in pf.FACTS[type_token].items() if r["attributes"][f.tf_name]["force_new"]}
        assert pf.replace_fields(type_token) == force_new, type_token
        for name in force_new:
            assert pf.FACTS[type_token][name].applied, (type_token, name)


def test_docker_provider_config_forces_no_replacement() -> None:
    attrs = extracted()["docker_provider_config"]["attributes"]
    assert [k for k, a in attrs.items() if a["force_new"]] == []
    assert pf.provider_config_replaces("docker") == frozenset()


def test_delete_before_replace_is_the_bridges_own() -> None:
    bridged = extracted()["pulumi_docker"]["resources"]
    for type_token, tf in TF_RESOURCE.items():
        if not tf.startswith("docker_"):
            continue
        info = bridged[tf]
        assert pf.delete_before_replace(type_token) == info["delete_before_replace"], type_token
        if info["delete_before_replace"]:
            assert where(pf.DELETE_BEFORE_REPLACE[type_token].source)[1] == (
                f"{extracted()['pulumi_docker']['file']}#L{info['delete_before_replace_line']}"
            )
    assert [tf for tf, info in bridged.items() if info["delete_before_replace"]] == ["docker_container"]


# --- the names: the table's keys are the installed SDK's inputs ----------------------------------


@pytest.mark.parametrize("type_token", sorted(SDK_ARGS))
def test_fact_names_follow_the_bridge_and_exist_in_the_sdk(type_token: str) -> None:
    r, sdk = resource(type_token), sdk_inputs(type_token)
    assert extracted()["pulumi_docker"]["resources"][TF_RESOURCE[type_token]]["tok"].endswith(
        '"' + type_token.rsplit(":", 1)[1] + '")'
    )
    for name, f in pf.FACTS[type_token].items():
        assert name == pulumi_name(f.tf_name, r["attributes"][f.tf_name], renames(type_token))
        assert name in sdk, name


@pytest.mark.parametrize("type_token", sorted(SDK_ARGS))
def test_the_sdk_has_the_extracted_inputs_and_no_others(type_token: str) -> None:
    """Catches a pin that moved: the installed SDK's inputs are the extracted schema's, but SDK_ONLY."""
    r = resource(type_token)
    inputs = {
        pulumi_name(tf, a, renames(type_token))
        for tf, a in r["attributes"].items()
        if a.get("optional") == "true" or a.get("required") == "true"
    }
    assert sdk_inputs(type_token) - inputs == SDK_ONLY.get(type_token, set())
    assert inputs - sdk_inputs(type_token) == set()


# --- the project: every field its programs set has a fact ----------------------------------------


@pytest.mark.parametrize("stack", STACKS)
def test_every_input_the_shipped_stacks_set_has_a_fact(stack: str) -> None:
    plan = shipped_plan(stack)
    missing = sorted(
        f"{r.type} {key}" for r in plan.resources if r.custom for key in r.inputs if pf.fact(r.type, key) is None
    )
    assert missing == []


def test_the_shipped_containers_are_replaced_delete_first_by_the_provider_too() -> None:
    for stack in STACKS:
        for r in shipped_plan(stack).of_type(":Container"):
            assert pf.delete_before_replace(r.type)


def test_the_extractor_uses_only_the_standard_library() -> None:
    path = ROOT / "components" / "planning" / "extract_provider_facts.py"
    tree = ast.parse(path.read_text())
    modules = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    modules |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert modules <= set(sys.stdlib_module_names) | {"__future__"}


def test_api() -> None:
    assert pf.fact(pf.CONTAINER, "healthcheck") == pf.FACTS[pf.CONTAINER]["healthcheck"]
    assert pf.fact(pf.CONTAINER, "nope") is None and pf.fact("nope", "name") is None
    assert isinstance(pf.fact(pf.VOLUME, "labels"), Fact)
    assert "labels" in pf.replace_fields(pf.CONTAINER) and "healthcheck" not in pf.replace_fields(pf.CONTAINER)
    assert pf.replace_fields(pf.LOCAL_COMMAND) == {"triggers"} == pf.replace_fields(pf.REMOTE_COMMAND)
    assert pf.delete_before_replace(pf.CONTAINER) and not pf.delete_before_replace(pf.VOLUME)
