"""`python -m components.model`: recorded config.json files in, architecture blocks out; never the network."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.planning.catalog import load_catalog
from components.settings import read_stack_file, validate
from components.tools import model as tool
from tests.conftest import DATA
from tests.stacks import errors, load, values_of

CONFIGS = DATA / "configs"
ROOT = Path(__file__).resolve().parent.parent
NAMES = sorted(p.stem for p in CONFIGS.glob("*.json"))
CATALOG = load_catalog()


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str | None]]:
    """The recorded config.json files as the Hub; the list collects each download's (repo_id, revision)."""
    calls: list[tuple[str, str | None]] = []

    def download(repo_id: str, filename: str, revision: str | None, token: str | None) -> str:
        calls.append((repo_id, revision))
        path = CONFIGS / f"{repo_id.replace('/', '--')}.json"
        if not path.exists():
            from huggingface_hub.errors import LocalEntryNotFoundError

            raise LocalEntryNotFoundError("offline")
        return str(path)

    monkeypatch.setattr(tool, "hf_hub_download", download)
    return calls


@pytest.mark.parametrize("name", NAMES)
def test_writes_a_working_architecture_block_for_each_recorded_model(
    name: str,
    recorded: list[tuple[str, str | None]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    stack = tmp_path / "Pulumi.t.yaml"
    shutil.copy(ROOT / "Pulumi.small-chat.yaml", stack)
    monkeypatch.setattr(tool, "stack_path", lambda name: tmp_path / f"Pulumi.{name}.yaml")
    model = name.replace("--", "/", 1)
    override = ["--override-catalog"] if model in CATALOG.models else []
    assert tool.main([model, "--write", "t", *override]) == 0
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


def test_leaves_other_lines_and_replaces_an_old_block(recorded: list[tuple[str, str | None]], tmp_path: Path) -> None:
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


def test_offline_is_one_line_and_exit_1(
    recorded: list[tuple[str, str | None]], capsys: pytest.CaptureFixture[str]
) -> None:
    assert tool.main(["nobody/not-recorded"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("model: cannot reach the Hugging Face Hub") and "Traceback" not in err[0]


def test_summary_names_class_weights_and_kv(
    recorded: list[tuple[str, str | None]], capsys: pytest.CaptureFixture[str]
) -> None:
    assert tool.main(["Qwen/Qwen3-30B-A3B", "--tp", "2"]) == 0
    out = capsys.readouterr().out
    assert "moe, qwen3_moe, 48 layers" in out and "weights per GPU at tensor parallel 2" in out
    assert "128 experts of 768, 8 per token" in out and "parameters ~30.5B" in out


# --------------------------------------------------------------------------- what people type as MODEL


@pytest.mark.parametrize(
    ("given", "revision"),
    [
        ("https://huggingface.co/Qwen/Qwen3-30B-A3B", None),
        ("https://huggingface.co/Qwen/Qwen3-30B-A3B/", None),
        ("huggingface.co/Qwen/Qwen3-30B-A3B", None),
        ("https://hf.co/Qwen/Qwen3-30B-A3B", None),
        ("https://huggingface.co/Qwen/Qwen3-30B-A3B?library=transformers", None),
        ("https://huggingface.co/Qwen/Qwen3-30B-A3B/tree/main", "main"),
        ("https://huggingface.co/Qwen/Qwen3-30B-A3B/blob/0123abc/config.json", "0123abc"),
        ("Qwen/Qwen3-30B-A3B", None),
    ],
)
def test_a_hub_page_url_is_taken_as_the_model_id(
    given: str, revision: str | None, recorded: list[tuple[str, str | None]], capsys: pytest.CaptureFixture[str]
) -> None:
    assert tool.main([given]) == 0
    assert recorded == [("Qwen/Qwen3-30B-A3B", revision)]
    captured = capsys.readouterr()
    assert "# Qwen/Qwen3-30B-A3B: moe" in captured.out and "Traceback" not in captured.err


@pytest.mark.parametrize(
    ("given", "said"),
    [
        ("a//b", "'a//b' is not a Hugging Face model id: give it as ORG/NAME"),
        ("Qwen/Qwen3 30B", "'Qwen/Qwen3 30B' is not a Hugging Face model id"),
        ("org/name/extra", "'org/name/extra' is not a Hugging Face model id"),
        ("", "'' is not a Hugging Face model id"),
        ("https://huggingface.co/datasets/org/data", "is a Hub datasets page, not a model's"),
        ("https://github.com/QwenLM/Qwen3", "is not a Hugging Face Hub address"),
        ("https://huggingface.co/", "is not a Hugging Face model id"),
    ],
)
def test_what_is_not_a_model_id_is_refused_before_any_download(
    given: str, said: str, recorded: list[tuple[str, str | None]], capsys: pytest.CaptureFixture[str]
) -> None:
    assert tool.main([given]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("model: argument MODEL: ") and said in err[0], err
    assert recorded == []


def test_a_revision_in_the_url_and_another_in_revision_is_refused(
    recorded: list[tuple[str, str | None]], capsys: pytest.CaptureFixture[str]
) -> None:
    url = "https://huggingface.co/Qwen/Qwen3-30B-A3B/tree/v1"
    assert tool.main([url, "--revision", "v2"]) == 2
    assert "argument --revision: v2 differs from the revision v1 in the URL" in capsys.readouterr().err
    assert recorded == []
    assert tool.main([url, "--revision", "v1"]) == 0 and recorded == [("Qwen/Qwen3-30B-A3B", "v1")]


@pytest.mark.parametrize("tp", ["0", "-2", "two", "1.5"])
def test_tp_that_is_no_number_of_gpus_is_a_usage_error(
    tp: str, recorded: list[tuple[str, str | None]], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as done:
        tool.main(["Qwen/Qwen3-30B-A3B", "--tp", tp])
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert "error: argument --tp: is a number of GPUs" in err and "Traceback" not in err
    assert recorded == []


# --------------------------------------------------------------------------- --tp under the plan's rules

TP_CASES = [
    # (model, tp, what the refusal names, or None when vLLM runs it)
    ("Qwen/Qwen3-30B-A3B", 3, "must divide the model's 32 attention heads"),
    ("Qwen/Qwen3-30B-A3B", 2, None),
    ("Qwen/Qwen3-30B-A3B", 8, None),
    ("Qwen/Qwen2.5-7B-Instruct-AWQ", 3, "must divide the model's 28 attention heads"),
    ("Qwen/Qwen2.5-7B-Instruct-AWQ", 8, "must divide the model's 28 attention heads"),
    ("Qwen/Qwen2.5-7B-Instruct-AWQ", 4, None),
    # heads (40) and KV heads (8) split by 8; the AWQ groups of 128 do not: 13824 / 8 = 1728
    ("Qwen/Qwen2.5-14B-Instruct-AWQ", 8, "splits intermediate_size 13824 into 1728 per GPU"),
    ("Qwen/Qwen2.5-14B-Instruct-AWQ", 4, None),
]


@pytest.mark.parametrize(("model", "tp", "refusal"), TP_CASES)
def test_tp_is_checked_with_the_plans_rules(
    model: str, tp: int, refusal: str | None, recorded: list[tuple[str, str | None]], capsys: pytest.CaptureFixture[str]
) -> None:
    code = tool.main([model, "--tp", str(tp)])
    captured = capsys.readouterr()
    if refusal is None:
        assert code == 0 and f"weights per GPU at tensor parallel {tp}" in captured.out, captured.err
        return
    assert code == 2 and captured.out == ""
    lines = captured.err.strip().splitlines()
    assert all(line.startswith("model: argument --tp: ") for line in lines), lines
    assert any(f"--tp: {tp} {refusal}" in line for line in lines), lines
    assert lines[-1].startswith(f"model: argument --tp: {tp} is not a size {model} allows: 1, 2")


def test_the_tool_refuses_what_the_plan_refuses_in_the_same_words(
    recorded: list[tuple[str, str | None]], capsys: pytest.CaptureFixture[str]
) -> None:
    """One implementation: the plan's error for tensor_parallel_size 8 carries the tool's --tp 8 sentence."""
    model = "Qwen/Qwen2.5-14B-Instruct-AWQ"
    assert tool.main([model, "--tp", "8"]) == 2
    said = capsys.readouterr().err.splitlines()[0].removeprefix("model: argument --tp: 8 ")
    values = load_values_with(model, 8)
    planned = [e for e in errors(values) if "tensor_parallel_size" in e]
    assert any(said.replace(f"{model}'s config.json", "the model catalog") in e for e in planned), (said, planned)


def load_values_with(model: str, tp: int) -> dict[str, Any]:
    """big-chat's values serving `model` at tensor parallel `tp` on that many GPUs."""
    values = values_of("big-chat")
    gpus = [{"index": i, "card": i + 1, "render": 128 + i} for i in range(tp)]
    values["host"]["gpus"] = gpus
    values["vllm"] |= {"model": model, "tensor_parallel_size": tp, "max_model_len": 8192}
    values["vllm"]["gpus"] = list(range(tp))
    return values


# --------------------------------------------------------------------------- where --write goes


@pytest.fixture
def stacks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("small-chat", "fleet"):
        shutil.copy(ROOT / f"Pulumi.{name}.yaml", tmp_path / f"Pulumi.{name}.yaml")
    monkeypatch.setattr(tool, "stack_path", lambda name: tmp_path / f"Pulumi.{name}.yaml")
    return tmp_path


NOT_IN_CATALOG = "Qwen/Qwen1.5-MoE-A2.7B-Chat"


def test_a_model_the_catalog_has_is_said_to_need_no_block(
    recorded: list[tuple[str, str | None]], capsys: pytest.CaptureFixture[str]
) -> None:
    assert "Qwen/Qwen2.5-7B-Instruct-AWQ" in CATALOG.models
    assert tool.main(["Qwen/Qwen2.5-7B-Instruct-AWQ"]) == 0
    err = capsys.readouterr().err
    assert "Qwen/Qwen2.5-7B-Instruct-AWQ is in the model catalog already: a stack that serves it needs no" in err
    assert tool.main([NOT_IN_CATALOG]) == 0
    assert "catalog" not in capsys.readouterr().err


def test_write_refuses_a_catalog_model_unless_told_to_override(
    stacks: Path, recorded: list[tuple[str, str | None]], capsys: pytest.CaptureFixture[str]
) -> None:
    before = (stacks / "Pulumi.small-chat.yaml").read_text()
    assert tool.main(["Qwen/Qwen2.5-7B-Instruct-AWQ", "--write", "small-chat"]) == 2
    err = capsys.readouterr().err
    assert "argument MODEL: Qwen/Qwen2.5-7B-Instruct-AWQ is in the model catalog" in err
    assert "nothing written to Pulumi.small-chat.yaml" in err
    assert (stacks / "Pulumi.small-chat.yaml").read_text() == before and recorded == []
    assert tool.main(["Qwen/Qwen2.5-7B-Instruct-AWQ", "--write", "small-chat", "--override-catalog"]) == 0
    assert "architecture:" in (stacks / "Pulumi.small-chat.yaml").read_text()
    with pytest.raises(SystemExit):
        tool.main(["Qwen/Qwen2.5-7B-Instruct-AWQ", "--override-catalog"])


def test_write_to_a_fleet_names_its_servers(
    stacks: Path, recorded: list[tuple[str, str | None]], capsys: pytest.CaptureFixture[str]
) -> None:
    before = (stacks / "Pulumi.fleet.yaml").read_text()
    assert tool.main([NOT_IN_CATALOG, "--write", "fleet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "model: Pulumi.fleet.yaml is a fleet: say which server's architecture with --server NAME (chat-a, chat-b, coder)"
    ]
    assert tool.main([NOT_IN_CATALOG, "--write", "fleet", "--server", "coders"]) == 2
    assert (
        "argument --server: Pulumi.fleet.yaml has no server 'coders' (did you mean 'coder'?); allowed: chat-a, "
        "chat-b, coder"
    ) in capsys.readouterr().err
    assert (stacks / "Pulumi.fleet.yaml").read_text() == before and recorded == []
    assert tool.main([NOT_IN_CATALOG, "--write", "fleet", "--server", "coder"]) == 0
    servers = yaml.safe_load((stacks / "Pulumi.fleet.yaml").read_text())["config"]["rocm-inference:servers"]
    assert "architecture" in servers["coder"] and "architecture" not in servers["chat-a"]


def test_server_on_a_single_host_stack_and_a_missing_stack(
    stacks: Path, recorded: list[tuple[str, str | None]], capsys: pytest.CaptureFixture[str]
) -> None:
    assert tool.main([NOT_IN_CATALOG, "--write", "small-chat", "--server", "vllm"]) == 2
    assert "Pulumi.small-chat.yaml has one server (rocm-inference:vllm): drop --server vllm" in capsys.readouterr().err
    assert tool.main([NOT_IN_CATALOG, "--write", "nope"]) == 1
    assert capsys.readouterr().err.strip() == "model: Pulumi.nope.yaml does not exist"
    assert recorded == []


# --------------------------------------------------------------------------- revisions written another way (issue 27)

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["Qwen/Qwen3-30B-A3B@abc1234"], ["argument MODEL: ", "pip's way", "--revision", "40 hex digits"]),
        ([f"Qwen/Qwen3-30B-A3B@{COMMIT}"], ["argument MODEL: ", "pip's way", f"--revision ({COMMIT})"]),
        (["Qwen/Qwen3-30B-A3B", "--revision", f"Qwen/Qwen3-30B-A3B@{COMMIT}"], ["argument --revision: ", "pip's way"]),
        (
            ["Qwen/Qwen3-30B-A3B", "--revision", f"https://huggingface.co/Qwen/Qwen3-8B/commit/{COMMIT}"],
            ["argument --revision: ", "is a revision of Qwen/Qwen3-8B, not of Qwen/Qwen3-30B-A3B"],
        ),
        (
            ["Qwen/Qwen3-30B-A3B", "--revision", "https://huggingface.co/Qwen/Qwen3-30B-A3B"],
            ["argument --revision: ", "names no revision", "40 hex digits"],
        ),
    ],
)
def test_a_revision_written_pip_style_or_as_another_models_page_is_refused(
    argv: list[str], said: list[str], recorded: list[tuple[str, str | None]], capsys: pytest.CaptureFixture[str]
) -> None:
    assert tool.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and all(s in err[0] for s in said), err
    assert recorded == []


@pytest.mark.parametrize(
    "argv",
    [
        [f"https://huggingface.co/Qwen/Qwen3-30B-A3B/commit/{COMMIT}"],
        ["Qwen/Qwen3-30B-A3B", "--revision", f"https://huggingface.co/Qwen/Qwen3-30B-A3B/commit/{COMMIT}"],
        ["Qwen/Qwen3-30B-A3B", "--revision", f"https://huggingface.co/Qwen/Qwen3-30B-A3B/tree/{COMMIT}"],
        ["Qwen/Qwen3-30B-A3B", "--revision", COMMIT],
    ],
)
def test_a_commit_page_of_the_model_is_taken_as_its_revision(
    argv: list[str], recorded: list[tuple[str, str | None]]
) -> None:
    assert tool.main(argv) == 0
    assert recorded == [("Qwen/Qwen3-30B-A3B", COMMIT)]


# --------------------------------------------------------------------------- GGUF and MLX repositories (issue 27)

# An MLX conversion's config.json: the checkpoint's keys with mlx-lm's own quantization block.
MLX_CONFIG = {
    **json.loads((CONFIGS / "Qwen--Qwen2.5-7B-Instruct.json").read_text()),
    "quantization": {"group_size": 64, "bits": 4},
}


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, Any]:
    """A Hub of repositories by id: a dict config.json, or a list of file names (no config.json)."""
    import httpx2
    from huggingface_hub.errors import RemoteEntryNotFoundError

    repos: dict[str, Any] = {}

    def download(repo_id: str, filename: str, revision: str | None, token: str | None) -> str:
        held = repos[repo_id]
        if isinstance(held, list):
            url = f"https://huggingface.co/{repo_id}/resolve/main/{filename}"
            raise RemoteEntryNotFoundError("404", response=httpx2.Response(404, request=httpx2.Request("GET", url)))
        path = tmp_path / "config.json"
        path.write_text(json.dumps(held))
        return str(path)

    def files(repo_id: str, revision: str | None, token: str | None) -> list[str]:
        held = repos[repo_id]
        return held if isinstance(held, list) else ["config.json", "model.safetensors"]

    monkeypatch.setattr(tool, "hf_hub_download", download)
    monkeypatch.setattr(tool, "list_repo_files", files)
    return repos


@pytest.mark.parametrize(
    ("repo", "held", "said"),
    [
        ("TheBloke/Qwen2.5-7B-Instruct-GGUF", None, "a GGUF repository (its name says GGUF)"),
        ("someone/qwen-small", ["README.md", "qwen-q4_k_m.gguf", "qwen-q8_0.gguf"], "a GGUF repository (its files are"),
        ("mlx-community/Qwen2.5-7B-Instruct-4bit", None, "an MLX repository (it is published by mlx-community)"),
        ("lmstudio-community/Qwen2.5-7B-Instruct-MLX-4bit", None, "an MLX repository (its name says MLX)"),
        ("someone/qwen-4bit", MLX_CONFIG, "an MLX repository (its config.json has MLX's top-level quantization"),
    ],
)
def test_a_gguf_or_mlx_repository_is_named_for_what_it_is(
    repo: str, held: Any, said: str, hub: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    if held is not None:
        hub[repo] = held
    assert tool.main([repo]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"model: {repo} is {said}" in err[0], err
    assert "vLLM does not load here" in err[0] and "AWQ or GPTQ" in err[0] and "architecture" not in err[0]


def test_a_repository_without_config_json_or_gguf_files_says_so(
    hub: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    hub["someone/notes"] = ["README.md", "notes.txt"]
    assert tool.main(["someone/notes"]) == 1
    assert "model: someone/notes has no config.json: it is not a Hugging Face checkpoint" in capsys.readouterr().err


def test_a_checkpoint_whose_name_only_resembles_mlx_is_read(
    hub: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    hub["someone/mlxtend-7b"] = json.loads((CONFIGS / "Qwen--Qwen2.5-7B-Instruct.json").read_text())
    assert tool.main(["someone/mlxtend-7b"]) == 0
    assert "architecture:" in capsys.readouterr().out
