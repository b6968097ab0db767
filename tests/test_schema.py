"""The stack file's JSON schema, for editors: generated from the models, committed, and used by the shipped stacks."""

from __future__ import annotations

import json

import jsonschema
import pytest
import yaml

from components.settings.schema import SCHEMA_FILE, render
from components.settings.stackfile import stack_path
from tests.conftest import STACKS

MODELINE = "# yaml-language-server: $schema=./stack.schema.json"


def test_the_committed_schema_matches_the_models() -> None:
    assert SCHEMA_FILE.read_text() == render(), "run `make schema` and commit stack.schema.json"


@pytest.mark.parametrize("stack", STACKS)
def test_each_shipped_stack_names_the_schema_and_follows_it(stack: str) -> None:
    text = stack_path(stack).read_text()
    assert text.splitlines()[0] == MODELINE
    jsonschema.validate(yaml.safe_load(text), json.loads(SCHEMA_FILE.read_text()))


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("rocm-inference:vlm", {}),  # a typo of a key in our namespace
        ("rocm-inference:vllm", {"image": "x:1", "max_model_lenn": 3}),  # an unknown nested key
        ("rocm-inference:hf_token", "hf_plaintext"),  # a secret written in plain text
    ],
)
def test_the_schema_catches_what_an_editor_should_underline(key: str, value: object) -> None:
    doc = yaml.safe_load(stack_path("big-chat").read_text())
    doc["config"][key] = value
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, json.loads(SCHEMA_FILE.read_text()))
