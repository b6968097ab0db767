"""The project files themselves: Pulumi.yaml against Pulumi's schema, pinned requirements."""

import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

from tests.conftest import DATA, ROOT, STACKS


def test_pulumi_yaml_validates_against_pulumis_project_schema() -> None:
    schema = json.loads((DATA / "pulumi-project.schema.json").read_text())
    project = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
    jsonschema.validate(project, schema)
    assert project["name"] == "rocm-inference"
    assert project["runtime"] == {"name": "python", "options": {"toolchain": "pip", "virtualenv": "venv"}}


def test_schema_rejects_a_broken_project_file() -> None:
    schema = json.loads((DATA / "pulumi-project.schema.json").read_text())
    try:
        jsonschema.validate({"name": "x", "runtime": {"name": "python", "bogus": 1}}, schema)
    except jsonschema.ValidationError:
        return
    raise AssertionError("the schema accepted a runtime with an unknown key")


def test_runtime_requirements_are_pinned_exactly() -> None:
    lines = [
        ln.strip()
        for ln in (ROOT / "requirements.txt").read_text().splitlines()
        if ln.strip() and not ln.startswith("#")
    ]
    names = {re.split(r"==", ln)[0].lower() for ln in lines}
    assert names == {
        "pulumi",
        "pulumi-docker",
        "pulumi-command",
        "pulumi-random",
        "pydantic",
        "pyyaml",
        "huggingface_hub",
        "gguf",
    }
    assert all(re.fullmatch(r"[A-Za-z0-9_.-]+==[0-9][0-9A-Za-z.]*", ln) for ln in lines), lines


def test_dev_requirements_are_pinned_exactly() -> None:
    for ln in (ROOT / "requirements-dev.txt").read_text().splitlines():
        ln = ln.strip()
        if ln and not ln.startswith(("#", "-r")):
            assert re.fullmatch(r"[A-Za-z0-9_.-]+==[0-9][0-9A-Za-z.]*", ln), ln


def test_both_shipped_stacks_exist() -> None:
    assert {"big-chat", "small-chat"} <= set(STACKS)


def test_collection_stays_out_of_the_fixture_trees(pytestconfig: pytest.Config) -> None:
    """The sysfs fixtures hold symlink loops; pytest must not walk into them (nor the data files)."""

    def ignored(path: Path) -> bool:
        return bool(pytestconfig.hook.pytest_ignore_collect(collection_path=path, config=pytestconfig))

    assert ignored(ROOT / "tests" / "fixtures") and ignored(ROOT / "tests" / "data")
    assert not ignored(ROOT / "tests") and not ignored(ROOT / "tests" / "engine")
    loops = [p for p in (ROOT / "tests" / "fixtures" / "hosts").rglob("device") if p.is_symlink()]
    assert loops, "the trees this guards against are gone: drop the exclusion with them"
