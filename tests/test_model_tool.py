"""`python -m components.model`: recorded config.json files in, architecture blocks out; never the network."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.settings import read_stack_file, validate
from components.tools import model as tool
from tests.conftest import DATA
from tests.stacks import load

CONFIGS = DATA / "configs"
ROOT = Path(__file__).resolve().parent.parent
NAMES = sorted(p.stem for p in CONFIGS.glob("*.json"))


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> None:
    def download(repo_id: str, filename: str, revision: str | None, token: str | None) -> str:
        path = CONFIGS / f"{repo_id.replace('/', '--')}.json"
        if not path.exists():
            from huggingface_hub.errors import LocalEntryNotFoundError

            raise LocalEntryNotFoundError("offline")
        return str(path)

    monkeypatch.setattr(tool, "hf_hub_download", download)


@pytest.mark.parametrize("name", NAMES)
def test_writes_a_working_architecture_block_for_each_recorded_model(
    name: str, recorded: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    stack = tmp_path / "Pulumi.t.yaml"
    shutil.copy(ROOT / "Pulumi.small-chat.yaml", stack)
    monkeypatch.setattr(tool, "stack_path", lambda name: tmp_path / f"Pulumi.{name}.yaml")
    model = name.replace("--", "/", 1)
    assert tool.main([model, "--write", "t"]) == 0
    assert "architecture:" in capsys.readouterr().out
    written = read_stack_file(stack)
    values: dict[str, Any] = written.values
    values["vllm"]["model"] = model
    # The written block passes the stack's validation (structure; the fit depends on the stack's GPUs).
    arch = validate(values, (), "Pulumi.t.yaml").settings.servers["vllm"].architecture
    assert arch is not None and arch.num_hidden_layers > 0
    if _fits_small(model):
        assert load(values).settings.servers["vllm"].architecture == arch
    assert _without_written(stack.read_text()) == (ROOT / "Pulumi.small-chat.yaml").read_text().splitlines()


def _fits_small(model: str) -> bool:
    # One MI60 at 16384 tokens: the stacks these small models can be validated in whole.
    return model in {"Qwen/Qwen2.5-7B-Instruct-AWQ", "Qwen/Qwen2.5-14B-Instruct-AWQ"}


def test_leaves_other_lines_and_replaces_an_old_block(recorded: None, tmp_path: Path) -> None:
    stack = tmp_path / "Pulumi.t.yaml"
    shutil.copy(ROOT / "Pulumi.big-chat.yaml", stack)
    block = tool.architecture_block(yaml.safe_load((CONFIGS / "Qwen--Qwen3-30B-A3B.json").read_text()))
    tool.write_architecture(stack, block)
    tool.write_architecture(stack, block, revision="abc123")
    text = stack.read_text()
    assert text.count("architecture:") == 1 and text.count("model_revision: abc123") == 1
    assert _without_written(text) == (ROOT / "Pulumi.big-chat.yaml").read_text().splitlines()


def _without_written(text: str) -> list[str]:
    """The stack's lines without the model_revision line and the architecture block."""
    out, skipping = [], False
    for line in text.splitlines():
        if line.strip().startswith(("architecture:", "model_revision:")):
            skipping = line.strip().startswith("architecture:")
            continue
        if skipping and line.startswith("      "):
            continue
        skipping = False
        out.append(line)
    return out


def test_fleet_form_writes_under_the_named_server(tmp_path: Path) -> None:
    stack = tmp_path / "Pulumi.f.yaml"
    stack.write_text("config:\n  rocm-inference:servers:\n    chat:\n      model: a/b\n    code:\n      model: c/d\n")
    tool.write_architecture(stack, {"num_hidden_layers": 2}, server="code")
    doc = yaml.safe_load(stack.read_text())
    servers = doc["config"]["rocm-inference:servers"]
    assert servers["code"]["architecture"] == {"num_hidden_layers": 2} and "architecture" not in servers["chat"]


def test_offline_is_one_line_and_exit_1(recorded: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert tool.main(["nobody/not-recorded"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("model: cannot reach the Hugging Face Hub") and "Traceback" not in err[0]


def test_summary_names_class_weights_and_kv(recorded: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert tool.main(["Qwen/Qwen3-30B-A3B", "--tp", "2"]) == 0
    out = capsys.readouterr().out
    assert "moe, qwen3_moe, 48 layers" in out and "weights per GPU at tensor parallel 2" in out
    assert "128 experts of 768, 8 per token" in out and "parameters ~30.5B" in out
