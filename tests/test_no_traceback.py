"""No command of the project ends in a traceback on user input.

Each of `components.plan`, `components.discover`, `components.verify` and `components.model` runs as a
subprocess (as people type it) with bad input: a missing or unknown stack, bad flags, bad files, bad
values. Each must exit 1 or 2, print no traceback, and say on every line of stderr which file or
argument, and which key or value, is at fault (argparse's usage block above its error line excepted).

The commands run in a copy of the project in a temporary directory, so a case that wrongly succeeds
writes no shipped stack file. No network: the model tool runs with HF_HUB_OFFLINE=1 on a Hugging Face
cache made from the recorded config.json; the verify cases are refused before any request (their
addresses are on 127.0.0.2, never a well-known port on 127.0.0.1).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import DATA, ROOT
from tests.fixtures.hosts import record

HOSTS = ROOT / "tests" / "fixtures" / "hosts"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
CACHED_MODEL = "Qwen/Qwen3-30B-A3B"  # in the catalog, and in the test cache below


@dataclass(frozen=True)
class Case:
    id: str
    command: str  # plan, discover, verify, model
    args: tuple[str, ...]
    code: int  # 1 or 2
    names: tuple[str, ...]  # what every line of stderr names: the file or argument, and the key or value


def outputs_files(root: Path) -> None:
    """verify's bad --outputs files."""
    base = "http://127.0.0.2:9/v1"
    good = {
        "servers": {"vllm": {"base_url": base, "model": "m", "max_model_len": 8192, "api_key": "k"}},
        "openai_base_url": base,
        "gateway_container": "litellm-gateway",
        "gateway_api_key": "sk-x",
    }
    files: dict[str, str | bytes] = {
        "broken.json": "{not json",
        "list.json": "[1, 2]",
        "nonutf.json": b"\xff\xfe{",
        "masked.json": json.dumps(good | {"gateway_api_key": "[secret]"}),
        "noscheme.json": json.dumps(
            good | {"servers": {"vllm": good["servers"]["vllm"] | {"base_url": "127.0.0.2:9/v1"}}}  # type: ignore[index]
        ),
        "lacking.json": json.dumps({"servers": {"vllm": {"model": "m"}}}),
        "good.json": json.dumps(good),
    }
    for name, content in files.items():
        (root / name).write_bytes(content if isinstance(content, bytes) else content.encode())


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the project with broken stack files beside the shipped ones, bad host trees and a model cache."""
    root = tmp_path_factory.mktemp("project")
    for name in ("components", "monitoring"):
        shutil.copytree(ROOT / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    for path in [ROOT / "Pulumi.yaml", *ROOT.glob("Pulumi.*.yaml")]:
        shutil.copy(path, root / path.name)
    (root / "Pulumi.broken.yaml").write_text("config:\n  rocm-inference:vllm: [\n")
    (root / "Pulumi.unknown.yaml").write_text(
        (ROOT / "Pulumi.small-chat.yaml").read_text().replace("rocm-inference:vllm:", "rocm-inference:vlm:")
    )
    (root / "Pulumi.badvalue.yaml").write_text(
        (ROOT / "Pulumi.small-chat.yaml").read_text().replace("max_model_len: 16384", "max_model_len: lots")
    )
    (root / "Pulumi.nonutf.yaml").write_bytes(b"\xff\xfeconfig:\n")
    (root / "afile").write_text("")
    outputs_files(root)
    # discover's trees: KFD properties garbled, and a GPU outside the catalog (MI300X, gfx942).
    garbled = root / "garbled"
    shutil.copytree(HOSTS / "dual-mi60", garbled, symlinks=True)
    (garbled / "sys/class/kfd/kfd/topology/nodes/1/properties").write_text("\x00\x01garbage\n")
    mi300 = root / "mi300"
    pci = "pci0000:00/0000:00:01.1/0000:03:00.0"
    record.pci_device(mi300, pci, "0x1002", "0x74a1", 206141652992, "AMD Instinct MI300X")
    record.drm_node(mi300, "card1", pci)
    record.drm_node(mi300, "renderD128", pci)
    record.kfd(mi300, [record.CPU_PROPS, record.gpu_props(128, 0x0300, gfx=90402)])
    record.etc(mi300, 44, 992)
    # The Hub's cache as huggingface_hub lays it out, holding one recorded config.json.
    repo = root / "hf" / "hub" / f"models--{CACHED_MODEL.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    (repo / "snapshots" / COMMIT).mkdir(parents=True)
    shutil.copy(
        DATA / "configs" / f"{CACHED_MODEL.replace('/', '--')}.json", repo / "snapshots" / COMMIT / "config.json"
    )
    return root


DUAL = str(HOSTS / "dual-mi60")

CASES = [
    # plan
    Case("plan: no stack", "plan", (), 2, ("a stack name or --file",)),
    Case("plan: unknown stack", "plan", ("nope",), 2, ("'nope'", "Pulumi.nope.yaml")),
    Case("plan: stack and --file", "plan", ("fleet", "--file", "Pulumi.fleet.yaml"), 2, ("--file", "fleet")),
    Case("plan: missing file", "plan", ("--file", "{root}/missing.yaml"), 1, ("missing.yaml", "cannot read")),
    Case("plan: a directory as file", "plan", ("--file", "{root}/garbled"), 1, ("garbled", "cannot read")),
    Case("plan: broken YAML", "plan", ("broken",), 1, ("Pulumi.broken.yaml", "line 3")),
    Case("plan: not UTF-8", "plan", ("nonutf",), 1, ("Pulumi.nonutf.yaml", "UTF-8")),
    Case("plan: unknown key", "plan", ("unknown",), 1, ("Pulumi.unknown.yaml", "rocm-inference:")),
    Case("plan: bad value", "plan", ("badvalue",), 1, ("Pulumi.badvalue.yaml", "rocm-inference:vllm.max_model_len")),
    Case("plan: bad format", "plan", ("big-chat", "--format", "xml"), 2, ("argument --format", "'xml'")),
    Case("plan: --host without compose", "plan", ("big-chat", "--host", "x"), 2, ("--host", "--format compose")),
    Case("plan: compose host", "plan", ("fleet", "--format", "compose", "--host", "nope"), 2, ("'nope'", "fleet")),
    Case(
        "plan: compose output is a file",
        "plan",
        ("fleet", "--format", "compose", "--output", "{root}/afile"),
        1,
        ("argument --output", "afile"),
    ),
    Case("plan: no gateway", "plan", ("big-chat", "--format", "gateway"), 1, ("big-chat", "rocm-inference:gateway")),
    Case("plan: bad ref", "plan", ("big-chat", "--against", "no-such-ref"), 2, ("no-such-ref",)),
    # discover
    Case("discover: missing root", "discover", ("--root", "{root}/nope"), 2, ("argument --root", "nope")),
    Case("discover: garbled KFD", "discover", ("--root", "{root}/garbled"), 1, ("nodes/1/properties", "simd_count")),
    Case("discover: no ROCm", "discover", ("--root", str(HOSTS / "no-rocm")), 1, ("/sys/class/kfd/kfd/topology",)),
    Case(
        "discover: GPU not in catalog", "discover", ("--root", "{root}/mi300"), 1, ("rocm-inference:host.gpu", "gfx942")
    ),
    Case("discover: missing stack", "discover", ("--root", DUAL, "--write", "nope"), 1, ("Pulumi.nope.yaml",)),
    Case(
        "discover: broken stack", "discover", ("--root", DUAL, "--write", "broken"), 1, ("Pulumi.broken.yaml", "line 3")
    ),
    Case(
        "discover: fleet without --host",
        "discover",
        ("--root", DUAL, "--write", "fleet"),
        2,
        ("Pulumi.fleet.yaml", "--host"),
    ),
    Case(
        "discover: host not in fleet",
        "discover",
        ("--root", DUAL, "--write", "fleet", "--host", "gpu-c"),
        2,
        ("argument --host", "'gpu-c'", "Pulumi.fleet.yaml"),
    ),
    Case(
        "discover: --host on one host",
        "discover",
        ("--root", DUAL, "--write", "big-chat", "--host", "gpu-a"),
        2,
        ("Pulumi.big-chat.yaml", "--host"),
    ),
    Case("discover: --host alone", "discover", ("--host", "gpu-a"), 2, ("--host", "--write")),
    Case("discover: ssh option", "discover", ("--ssh=-oProxyCommand=x",), 2, ("argument --ssh", "-oProxyCommand")),
    Case("discover: bad format", "discover", ("--format", "xml"), 2, ("argument --format", "'xml'")),
    # verify
    Case("verify: no stack", "verify", (), 2, ("stack",)),
    Case("verify: missing outputs", "verify", ("s", "--outputs", "{root}/missing.json"), 2, ("missing.json",)),
    Case("verify: outputs not JSON", "verify", ("s", "--outputs", "{root}/broken.json"), 2, ("broken.json", "JSON")),
    Case("verify: outputs not UTF-8", "verify", ("s", "--outputs", "{root}/nonutf.json"), 2, ("nonutf.json", "UTF-8")),
    Case("verify: outputs a list", "verify", ("s", "--outputs", "{root}/list.json"), 2, ("list.json", "JSON object")),
    Case(
        "verify: masked key", "verify", ("s", "--outputs", "{root}/masked.json"), 2, ("masked.json", "gateway_api_key")
    ),
    Case(
        "verify: no scheme",
        "verify",
        ("s", "--outputs", "{root}/noscheme.json"),
        2,
        ("noscheme.json", "servers.vllm.base_url"),
    ),
    Case(
        "verify: outputs lack",
        "verify",
        ("s", "--outputs", "{root}/lacking.json"),
        2,
        ("lacking.json", "servers.vllm.base_url"),
    ),
    Case("verify: --load 0", "verify", ("s", "--outputs", "{root}/good.json", "--load", "0"), 2, ("--load",)),
    Case(
        "verify: --duration 0", "verify", ("s", "--outputs", "{root}/good.json", "--duration", "0"), 2, ("--duration",)
    ),
    Case("verify: --wait abc", "verify", ("s", "--wait", "abc"), 2, ("argument --wait", "'abc'")),
    Case(
        "verify: --write alone",
        "verify",
        ("s", "--outputs", "{root}/good.json", "--write"),
        2,
        ("--write goes with --calibrate",),
    ),
    # model
    Case("model: no model", "model", (), 2, ("model",)),
    Case("model: --tp 0", "model", (CACHED_MODEL, "--tp", "0"), 2, ("argument --tp", "0")),
    Case("model: --tp two", "model", (CACHED_MODEL, "--tp", "two"), 2, ("argument --tp", "'two'")),
    Case("model: --tp 3", "model", (CACHED_MODEL, "--tp", "3"), 2, ("argument --tp: 3 ",)),
    Case(
        "model: URL and --tp 3",
        "model",
        (f"https://huggingface.co/{CACHED_MODEL}", "--tp", "3"),
        2,
        ("model: argument ",),  # the URL's note (MODEL), then the --tp lines
    ),
    Case("model: not an id", "model", ("a//b",), 2, ("argument MODEL", "'a//b'")),
    Case("model: a dataset page", "model", ("https://huggingface.co/datasets/x/y",), 2, ("argument MODEL", "datasets")),
    Case("model: not cached offline", "model", ("nobody/nothing",), 1, ("nobody/nothing", "config.json")),
    Case("model: missing stack", "model", (CACHED_MODEL, "--write", "nope"), 1, ("Pulumi.nope.yaml",)),
    Case("model: broken stack", "model", (CACHED_MODEL, "--write", "broken"), 1, ("Pulumi.broken.yaml", "line 3")),
    Case(
        "model: fleet without --server",
        "model",
        (CACHED_MODEL, "--write", "fleet"),
        2,
        ("Pulumi.fleet.yaml", "--server"),
    ),
    Case("model: catalog model", "model", (CACHED_MODEL, "--write", "small-chat"), 2, ("argument MODEL", "catalog")),
    Case("model: --server alone", "model", (CACHED_MODEL, "--server", "x"), 2, ("--server", "--write")),
    Case(
        "model: two revisions",
        "model",
        (f"https://huggingface.co/{CACHED_MODEL}/tree/v1", "--revision", "v2"),
        2,
        ("argument", "v2"),
    ),
]

ARGPARSE_ERROR = re.compile(r"^python -m components\.\w+: error: ")


def fault_lines(stderr: str) -> list[str]:
    """stderr's lines, without argparse's usage block (`usage: ...` and its indented continuation lines)."""
    lines = stderr.splitlines()
    if not any(ARGPARSE_ERROR.match(line) for line in lines):
        return lines
    return [line for line in lines if not line.startswith("usage: ") and not line.startswith(" ")]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_ends_in_a_message_not_a_traceback(case: Case, project: Path) -> None:
    args = [a.replace("{root}", str(project)) for a in case.args]
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_HOME": str(project / "hf"),
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    env.pop("HF_TOKEN", None)
    done = subprocess.run(
        [sys.executable, "-m", f"components.{case.command}", *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == case.code, (done.returncode, done.stderr)
    lines = fault_lines(done.stderr)
    assert lines, "no message at all"
    for line in lines:
        missing = [n for n in case.names if n.replace("{root}", str(project)) not in line]
        assert not missing, f"{line!r} does not name {missing}"


def test_every_command_is_covered() -> None:
    assert {c.command for c in CASES} == {"plan", "discover", "verify", "model"}
    assert all(c.code in (1, 2) for c in CASES)
