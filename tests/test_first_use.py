"""Mistakes a new user makes on day one, each with the message that says what to do."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from components.settings import read_stack_file
from components.tools.plan import main, plan_stack
from components.tools.review import diff
from rules import CONTAINER, Options, no_plain_secrets
from tests.conftest import ROOT, shipped_plan
from tests.stacks import errors, set_key, values_of

BIG = (ROOT / "Pulumi.big-chat.yaml").read_text()


def plan_file(tmp_path: Path, text: str, name: str = "Pulumi.mine.yaml") -> subprocess.CompletedProcess[str]:
    path = tmp_path / name
    path.write_text(text)
    return subprocess.run(
        [sys.executable, "-m", "components.plan", "--file", str(path)], cwd=ROOT, capture_output=True, text=True
    )


def test_1_a_misspelled_namespace_is_named_with_a_did_you_mean(tmp_path: Path) -> None:
    done = plan_file(tmp_path, BIG.replace("  rocm-inference:vllm:", "  rocm-inferance:vllm:"))
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert (
        "Pulumi.mine.yaml: rocm-inferance:vllm is not a known key (did you mean 'rocm-inference:vllm'?)"
        in done.stderr.splitlines()
    )


def test_1_other_namespaces_stay_allowed(tmp_path: Path) -> None:
    done = plan_file(tmp_path, BIG + "  docker:host: unix:///var/run/docker.sock\n")
    assert done.returncode == 0, done.stderr


def test_2_tab_indentation_is_named_with_its_line(tmp_path: Path) -> None:
    done = plan_file(tmp_path, BIG.replace("    gpu: mi60\n", "\tgpu: mi60\n"))
    assert done.returncode == 1
    line = BIG.splitlines().index("    gpu: mi60") + 1
    assert done.stderr.strip() == (
        f"Pulumi.mine.yaml: line {line} is indented with a tab: YAML allows only spaces for indentation"
    )


@pytest.mark.parametrize(
    "value", ["hf_AbCdEfGhIjKlMnOpQrStUv", "sk-proj-0123456789abcdefghij", "9f3b2c7d1e8a4f6b0c5d2e9a7b3f1c8d4e6a"]
)
def test_3_a_token_under_a_harmless_name_is_refused(value: str) -> None:
    values = set_key(values_of("big-chat"), "vllm.environment", {"HUGGING_FACE_HUB_AUTH": value})
    found = errors(values)
    assert (
        len(found) == 1
        and "rocm-inference:vllm.environment has 'HUGGING_FACE_HUB_AUTH' with a value that looks like a secret"
        in found[0]
    )
    assert value not in found[0], "the message must not print the secret"


def test_3_the_policy_flags_a_secret_value_under_a_harmless_name_even_in_a_secret_env_list() -> None:
    props = {
        "name": "vllm",
        "envs": ["HUGGING_FACE_HUB_AUTH=hf_AbCdEfGhIjKlMnOpQrStUv", "HF_TOKEN=hf_ZyXwVuTsRqPoNmLkJiHgFe"],
    }
    found = no_plain_secrets(CONTAINER, props, Options(additional_secret_outputs=("envs",)))
    assert found == [
        "environment variable HUGGING_FACE_HUB_AUTH looks like a secret in plain configuration: set it with "
        "`pulumi config set --secret --path '<service>.environment.HUGGING_FACE_HUB_AUTH'`"
    ]


def test_3_harmless_values_pass() -> None:
    values = set_key(
        values_of("big-chat"), "vllm.environment", {"NCCL_P2P_DISABLE": "1", "VLLM_LOGGING_LEVEL": "DEBUG"}
    )
    assert errors(values) == []


def test_4_an_empty_embeddings_key_is_refused_not_dropped(tmp_path: Path) -> None:
    text = BIG[: BIG.index("  rocm-inference:embeddings:")] + "  rocm-inference:embeddings:\n"
    done = plan_file(tmp_path, text)
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "Pulumi.mine.yaml: rocm-inference:embeddings is empty: give its settings (image, model, ...), "
        "or remove the key for no embeddings server"
    )


def test_5_a_key_written_twice_is_refused_with_both_lines(tmp_path: Path) -> None:
    text = BIG.replace("    port: 8080\n", "    port: 8080\n    port: 8081\n")
    done = plan_file(tmp_path, text)
    lines = text.splitlines()
    first, second = lines.index("    port: 8080") + 1, lines.index("    port: 8081") + 1
    assert done.returncode == 1
    assert done.stderr.strip() == (
        f"Pulumi.mine.yaml: key 'port' is written twice, at lines {first} and {second}: YAML would silently keep "
        "the last one; keep one"
    )


def test_5_two_blocks_of_one_key_are_refused(tmp_path: Path) -> None:
    block = BIG[BIG.index("  rocm-inference:vllm:") : BIG.index("  rocm-inference:embeddings:")]
    done = plan_file(tmp_path, BIG + block)
    assert done.returncode == 1 and "key 'rocm-inference:vllm' is written twice, at lines" in done.stderr


@pytest.mark.parametrize("address", ["http://gpu-box:8000", "gpu-box:8000", "gpu box", "gpu-box/v1"])
def test_6_an_address_is_a_host_name_or_an_ip(address: str) -> None:
    found = errors(set_key(values_of("big-chat"), "host.address", address))
    assert found == [
        f"Pulumi.test.yaml: rocm-inference:host.address must be a host name or an IP address, without scheme, "
        f"port or path (the URLs add those), got {address!r}"
    ]


@pytest.mark.parametrize("address", ["gpu-box", "gpu-box.lan", "10.0.0.5", "::1", "localhost"])
def test_6_host_names_and_ips_pass(address: str) -> None:
    assert errors(set_key(values_of("big-chat"), "host.address", address)) == []


def test_7_an_unknown_stack_is_a_usage_error_listing_the_stacks(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["nosuch"])
    assert done.value.code == 2
    assert (
        "no stack 'nosuch' here (no Pulumi.nosuch.yaml); the stacks here: big-chat, fleet, small-chat"
        in capsys.readouterr().err
    )


def test_7_a_stack_name_and_a_file_conflict(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["big-chat", "--file", "Pulumi.small-chat.yaml"])
    assert done.value.code == 2
    assert "give a stack name or --file, not both" in capsys.readouterr().err


def test_8_against_shows_the_part_of_a_long_value_that_differs(tmp_path: Path) -> None:
    old = shipped_plan("big-chat").as_json()
    path = tmp_path / "Pulumi.big-chat.yaml"
    path.write_text(BIG.replace("    shm_size: 16g\n", "    shm_size: 16g\n    health_interval: 30\n"))
    new = plan_stack(read_stack_file(path))
    change = next(c for c in diff(json.loads(json.dumps(old)), new, "HEAD").changes if c.name == "vllm-container")
    setting = next(s for s in change.settings if s.startswith("healthcheck:"))
    before, after = setting.removeprefix("healthcheck: ").split(" → ")
    assert before != after, f"the shown parts must differ: {setting}"
    assert '"15s"' in before and '"30s"' in after
    assert change.kind == "replace"


def test_9_the_readme_says_what_users_need() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "tests/data/seed-compose.yaml" in readme
    assert '`{"stack", "file", "resources", "outputs", "warnings", "capacity", "diff"}`' in readme
    assert "`--format markdown` | a pull-request comment" in readme and "with `--against REF`" in readme
    assert "make verify STACK=big-chat WAIT=1" in readme
