"""Reviewable changes: the compose export, the PR comment, and the plan against a git ref."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.settings import read_stack_file, size_bytes
from components.tools.compose import to_compose
from components.tools.plan import main, plan_stack
from components.tools.review import diff
from tests.conftest import DATA, ROOT, git_repo_with, shipped_plan


def compose_of(stack: str) -> dict[str, Any]:
    return to_compose(shipped_plan(stack))


def _devices(values: list[str]) -> list[tuple[str, str]]:
    return [(v.split(":")[0], v.split(":")[1]) for v in values]


def _env(value: list[str] | dict[str, str]) -> dict[str, str]:
    return dict(e.split("=", 1) for e in value) if isinstance(value, list) else dict(value)


def _ports(values: list[str]) -> list[tuple[str, str]]:
    return [tuple(v.split(":")[-2:]) for v in values]  # type: ignore[misc]


def test_big_chat_compose_covers_the_seed_compose_file() -> None:
    seed = yaml.safe_load((DATA / "seed-compose.yaml").read_text())["services"]
    ours = compose_of("big-chat")["services"]
    for name, service in seed.items():
        mine = ours[name]
        for key, value in service.items():
            if key == "image":
                if value.endswith(":latest"):  # the one deliberate difference: pinned, same repository
                    assert mine["image"].rsplit(":", 1)[0] == value.rsplit(":", 1)[0] and not mine["image"].endswith(
                        ":latest"
                    )
                else:
                    assert mine["image"] == value
            elif key == "devices":
                assert _devices(mine["devices"]) == _devices(value)
            elif key == "shm_size":
                assert size_bytes(mine["shm_size"]) == size_bytes(value)
            elif key == "environment":
                assert _env(value).items() <= _env(mine["environment"]).items()
            elif key == "ports":
                assert _ports(mine["ports"]) == _ports(value)
            elif key == "command":
                assert mine["command"][: len(value)] == value
            else:
                assert mine[key] == value, key


def test_compose_turns_secrets_into_interpolations(tmp_path: Path) -> None:
    path = tmp_path / "Pulumi.keyed.yaml"
    path.write_text(
        (ROOT / "Pulumi.big-chat.yaml").read_text() + "  rocm-inference:vllm_api_key:\n    secure: v1:AAAA:BBBB\n"
    )
    vllm = to_compose(plan_stack(read_stack_file(path)))["services"]["vllm"]
    assert vllm["environment"]["VLLM_API_KEY"] == "${VLLM_API_KEY:?set VLLM_API_KEY (a secret of the stack)}"


def test_compose_format_is_yaml_with_the_hardening(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["small-chat", "--format", "compose"]) == 0
    doc = yaml.safe_load(capsys.readouterr().out)
    vllm = doc["services"]["vllm"]
    assert vllm["restart"] == "unless-stopped" and vllm["ipc"] == "private" and vllm["privileged"] is False
    assert vllm["devices"] == [
        "/dev/kfd:/dev/kfd:rwm",
        "/dev/dri/card2:/dev/dri/card2:rwm",
        "/dev/dri/renderD129:/dev/dri/renderD129:rwm",
    ]
    assert vllm["healthcheck"]["start_period"] == "30m0s"
    assert doc["volumes"] == {
        "vllm-hf-cache": {"name": "vllm-hf-cache"},
        "infinity-embeddings-cache": {"name": "infinity-embeddings-cache"},
    }


def test_markdown_has_table_mermaid_and_memory_plan(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["big-chat", "--format", "markdown"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("### rocm-inference plan: `big-chat` (Pulumi.big-chat.yaml)")
    assert "```mermaid\nflowchart LR" in out and "host_preflight -. before .-> vllm_container" in out
    assert "| `vllm-container` | `docker:index/container:Container` | vllm |" in out
    assert "**GPU memory plan**" in out and "| KV cache (tokens) | 58176 |" in out


def test_diff_of_a_plan_against_itself_is_empty() -> None:
    plan = plan_stack(read_stack_file(ROOT / "Pulumi.big-chat.yaml"))
    assert diff(json.loads(json.dumps(plan.as_json())), plan, "HEAD").changes == []


def _repo_with_big_chat(tmp_path: Path) -> Path:
    """A git repository holding this project's code and stacks, one commit."""
    return git_repo_with(tmp_path, "Pulumi.big-chat.yaml", "Pulumi.small-chat.yaml")


def test_a_pr_changing_gpu_memory_utilization(tmp_path: Path) -> None:
    """What the plan workflow posts for such a PR: the change, the vLLM replacement, the new memory plan."""
    repo = _repo_with_big_chat(tmp_path)
    stack = repo / "Pulumi.big-chat.yaml"
    stack.write_text(stack.read_text().replace("gpu_memory_utilization: 0.9", "gpu_memory_utilization: 0.85"))
    done = subprocess.run(
        [sys.executable, "-m", "components.plan", "big-chat", "--against", "HEAD", "--format", "markdown"],
        cwd=repo, capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "**Changes against `HEAD`:** 1 to replace" in out
    assert "| `vllm-container` | **replace** | `command: 0.9 → 0.85`<br/>⚠️ the OpenAI endpoint is down about" in out
    assert "| usable (GiB) | 28.786 | 27.187 **(changed)** |" in out
    assert "| KV cache (tokens) | 58176 | 47696 **(changed)** |" in out
    assert "embeddings-container" not in out.split("**GPU memory plan**")[0], "only the vLLM container changes"
    worktrees = repo / ".git" / "worktrees"
    assert not worktrees.exists() or not any(worktrees.iterdir()), "the temporary worktree was left behind"


def test_against_a_ref_without_the_stack_shows_everything_created(tmp_path: Path) -> None:
    repo = _repo_with_big_chat(tmp_path)
    shutil.copy(repo / "Pulumi.small-chat.yaml", repo / "Pulumi.new-box.yaml")
    done = subprocess.run(
        [sys.executable, "-m", "components.plan", "new-box", "--against", "HEAD", "--format", "json"],
        cwd=repo, capture_output=True, text=True,
    )  # fmt: skip
    doc = json.loads(done.stdout)["diff"]
    assert doc["note"] == "Pulumi.new-box.yaml does not exist at HEAD: a new stack"
    assert {c["change"] for c in doc["changes"]} == {"create"}


def test_an_unknown_ref_is_a_usage_error(tmp_path: Path) -> None:
    repo = _repo_with_big_chat(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "components.plan", "big-chat", "--against", "no-such-ref"],
        cwd=repo,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2, done.stderr
    assert "plan: cannot check out no-such-ref" in done.stderr and "Traceback" not in done.stderr, done.stderr
