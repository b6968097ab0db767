"""Discovery on recorded host trees: the seed's dual-MI60 server, a quad-gfx906 box with an Intel iGPU, no ROCm."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.planning.catalog import load_catalog
from components.tools.discover import (
    SNAPSHOT_SCRIPT,
    DirectoryReader,
    DiscoveryError,
    SnapshotReader,
    discover,
    gfx_name,
    host_block,
    parse_block,
    render_yaml,
    write_block,
)
from tests.conftest import ROOT

HOSTS = Path(__file__).resolve().parent / "fixtures" / "hosts"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "components.discover", *args], cwd=ROOT, capture_output=True, text=True
    )


def test_dual_mi60_prints_exactly_the_host_block_of_big_chat() -> None:
    result = run("--root", str(HOSTS / "dual-mi60"))
    assert result.returncode == 0, result.stderr
    big_chat = yaml.safe_load((ROOT / "Pulumi.big-chat.yaml").read_text())["config"]["rocm-inference:host"]
    assert parse_block(result.stdout) == big_chat
    assert (
        '{index: 0, card: 1, render: 128, pci: "0000:03:00.0"}  # gfx906, 31.98 GiB, Radeon Instinct MI60 32GB'
        in result.stdout
    )


def test_quad_gfx906_maps_every_discrete_gpu_in_rocm_order_and_leaves_the_intel_gpu_out() -> None:
    host = discover(DirectoryReader(HOSTS / "quad-gfx906-intel"))
    assert [(g.index, g.card, g.render) for g in host.gpus] == [(0, 1, 129), (1, 2, 130), (2, 3, 131), (3, 4, 132)]
    assert {g.gfx for g in host.gpus} == {"gfx906"}
    assert [g.pci for g in host.gpus] == ["0000:03:00.0", "0000:04:00.0", "0000:83:00.0", "0000:84:00.0"]
    assert host.groups == {"video": 39, "render": 109}
    block = host_block(host, "ssh://ops@box", "box", load_catalog())
    assert block["gpu"] == "mi50-32gb"  # no FRU product name: gfx906 with 32 GiB, flagged as ambiguous
    assert "also fits: mi60" in render_yaml(host, block, load_catalog())


def test_json_format_carries_what_was_learned() -> None:
    result = run("--root", str(HOSTS / "dual-mi60"), "--format", "json")
    doc = json.loads(result.stdout)
    assert doc["rocm-inference:host"]["gpus"] == [
        {"index": 0, "card": 1, "render": 128, "pci": "0000:03:00.0"},
        {"index": 1, "card": 2, "render": 129, "pci": "0000:83:00.0"},
    ]
    assert doc["discovered"][1] == {
        "index": 1, "card": 2, "render": 129, "gfx": "gfx906", "vram_gib": 31.98, "pci": "0000:83:00.0",
        "product": "Radeon Instinct MI60 32GB",
    }  # fmt: skip


def test_a_machine_without_rocm_gets_a_clear_message() -> None:
    result = run("--root", str(HOSTS / "no-rocm"))
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.startswith("discover: no KFD topology at /sys/class/kfd/kfd/topology/nodes")
    assert "Traceback" not in result.stderr


def test_kfd_without_a_gpu_gets_a_clear_message(tmp_path: Path) -> None:
    node = tmp_path / "sys/class/kfd/kfd/topology/nodes/0"
    node.mkdir(parents=True)
    (node / "properties").write_text("cpu_cores_count 16\nsimd_count 0\n")
    with pytest.raises(DiscoveryError, match="no ROCm GPU"):
        discover(DirectoryReader(tmp_path))


def test_the_ssh_snapshot_reads_the_same_host() -> None:
    """The script --ssh sends, run here against a recorded tree: its output parses to the same discovery."""
    out = subprocess.run(
        ["sh", "-s"], input=SNAPSHOT_SCRIPT, capture_output=True, text=True, check=True,
        env={**os.environ, "ROCM_ROOT": str(HOSTS / "quad-gfx906-intel")},
    ).stdout  # fmt: skip
    assert discover(SnapshotReader(out)) == discover(DirectoryReader(HOSTS / "quad-gfx906-intel"))


def test_gfx_names() -> None:
    assert [gfx_name(v) for v in (90006, 90008, 90010, 90402, 100300)] == [
        "gfx906",
        "gfx908",
        "gfx90a",
        "gfx942",
        "gfx1030",
    ]


def test_write_replaces_only_the_host_block_and_keeps_other_keys(tmp_path: Path) -> None:
    original = (ROOT / "Pulumi.big-chat.yaml").read_text()
    edited = original.replace("    address: localhost", "    address: gpu-box\n    bind: 10.0.0.5").replace(
        'render: 129, pci: "0000:83:00.0"}', 'render: 130, pci: "0000:83:00.0"}'
    )
    path = tmp_path / "Pulumi.big-chat.yaml"
    path.write_text(edited)
    host = discover(DirectoryReader(HOSTS / "dual-mi60"))
    block = host_block(host, "unix:///var/run/docker.sock", "gpu-box", load_catalog())
    write_block(path, render_yaml(host, block, load_catalog(), {"bind": "10.0.0.5"}))
    after = path.read_text()
    config = yaml.safe_load(after)["config"]
    assert config["rocm-inference:host"]["gpus"][1] == {"index": 1, "card": 2, "render": 129, "pci": "0000:83:00.0"}
    assert config["rocm-inference:host"]["bind"] == "10.0.0.5"
    assert config["rocm-inference:host"]["address"] == "gpu-box"

    def outside(text: str) -> list[str]:
        return [ln for ln in text.splitlines() if not ln.startswith("    ")]

    assert outside(after) == outside(edited), "lines outside the host block changed"
    assert after.split("  rocm-inference:vllm:")[1] == original.split("  rocm-inference:vllm:")[1]


def test_write_host_replaces_one_host_of_a_fleet_and_keeps_the_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    import components.tools.discover as d
    from components.settings import read_stack_file

    stack = tmp_path / "Pulumi.fleet.yaml"
    shutil.copy(ROOT / "Pulumi.fleet.yaml", stack)
    before = read_stack_file(stack).values
    monkeypatch.setattr(d, "stack_path", lambda name: tmp_path / f"Pulumi.{name}.yaml")
    assert d.main(["--root", str(HOSTS / "quad-gfx906-intel"), "--write", "fleet", "--host", "gpu-b"]) == 0
    assert d.main(["--root", str(HOSTS / "quad-gfx906-intel"), "--write", "fleet"]) == 2, "a fleet needs --host"
    after = read_stack_file(stack).values
    assert after["hosts"]["gpu-a"] == before["hosts"]["gpu-a"]
    assert after["servers"] == before["servers"] and after["gateway"] == before["gateway"]
    b = after["hosts"]["gpu-b"]
    assert [g["render"] for g in b["gpus"]] == [129, 130, 131, 132] and b["groups"] == {"video": 39, "render": 109}
    # what a local reading cannot learn stays as the stack had it
    assert (b["bind"], b["ssh_host_key"], b["docker"]) == (
        before["hosts"]["gpu-b"]["bind"],
        before["hosts"]["gpu-b"]["ssh_host_key"],
        before["hosts"]["gpu-b"]["docker"],
    )


# --------------------------------------------------------------------------- ROCm's device order


def _snapshot_of(tree: Path) -> SnapshotReader:
    """The --ssh path over a recorded tree: `ls` lists the KFD nodes in string order (0 1 10 11 2 ...)."""
    out = subprocess.run(
        ["sh", "-s"], input=SNAPSHOT_SCRIPT, capture_output=True, text=True, check=True,
        env={**os.environ, "ROCM_ROOT": str(tree)},
    ).stdout  # fmt: skip
    return SnapshotReader(out)


@pytest.mark.parametrize("read", [DirectoryReader, _snapshot_of], ids=["root", "ssh"])
def test_twelve_kfd_nodes_give_the_gpus_in_numeric_node_order(read: Any) -> None:
    """Eight GPUs behind four NUMA nodes: KFD nodes 4..11. Sorted as strings, nodes 10 and 11 would
    come first and HIP_VISIBLE_DEVICES=0 would be the seventh board."""
    tree = HOSTS / "octo-gfx906-two-sockets"
    assert len(list((tree / "sys/class/kfd/kfd/topology/nodes").iterdir())) == 12
    host = discover(read(tree))
    assert [(g.index, g.card, g.render) for g in host.gpus] == [(i, i + 1, 128 + i) for i in range(8)]
    assert [g.pci for g in host.gpus][-2:] == ["0000:a3:00.0", "0000:a4:00.0"]


def test_numeric_order_holds_for_sparse_node_numbers(tmp_path: Path) -> None:
    """Node numbers 2, 9, 10, 100 (a hot-unplugged board leaves a gap): 2 < 9 < 10 < 100, not '10' < '100' < '2'."""
    for n, render in ((2, 130), (9, 131), (10, 128), (100, 129)):
        d = tmp_path / f"sys/class/kfd/kfd/topology/nodes/{n}"
        d.mkdir(parents=True)
        (d / "properties").write_text(f"simd_count 256\ngfx_target_version 90006\ndrm_render_minor {render}\n")
        pci = tmp_path / f"sys/devices/pci0000:00/0000:00:0{render - 127}.0"
        pci.mkdir(parents=True)
        (pci / "vendor").write_text("0x1002\n")
        for node in (f"card{render - 127}", f"renderD{render}"):
            (tmp_path / "sys/class/drm" / node).mkdir(parents=True)
            (tmp_path / "sys/class/drm" / node / "device").symlink_to(pci)
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/group").write_text("video:x:44:\nrender:x:992:\n")
    assert [g.render for g in discover(DirectoryReader(tmp_path)).gpus] == [130, 131, 128, 129]


def test_kfd_order_wins_over_card_order() -> None:
    """The neighbour that must keep working: two GPUs whose KFD order is not their DRM order."""
    host = discover(DirectoryReader(HOSTS / "dual-mi50-kfd-order"))
    assert [(g.index, g.card, g.render) for g in host.gpus] == [(0, 2, 129), (1, 1, 128)]
