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
from tests.fixtures.hosts import record

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


# --------------------------------------------------------------------------- what discovery cannot describe


@pytest.mark.parametrize(("make", "said"), [(None, "does not exist"), ("file", "is not a directory")])
def test_a_root_that_is_no_directory_is_a_usage_error_not_a_missing_driver(
    tmp_path: Path, make: str | None, said: str
) -> None:
    root = tmp_path / "hosts" / "dual-mi6O"  # a typo
    if make == "file":
        root.parent.mkdir()
        root.write_text("")
    result = run("--root", str(root))
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == f"discover: argument --root: {root} {said}: give the directory a host's tree is under\n"


def _one_gpu_host(root: Path, gfx: int, vram_gib: float, product: str, device: str = "0x74a1") -> Path:
    path = "pci0000:00/0000:00:01.1/0000:03:00.0"
    record.pci_device(root, path, "0x1002", device, int(vram_gib * (1 << 30)), product)
    record.drm_node(root, "card1", path)
    record.drm_node(root, "renderD128", path)
    record.kfd(root, [record.CPU_PROPS, record.gpu_props(128, 0x0300, gfx=gfx)])
    record.etc(root, 44, 992)
    return root


CATALOG_HAS = (
    "the catalog (components/planning/catalog.yaml) supports gfx906: mi50-16gb 16 GiB, mi50-32gb 32 GiB, mi60 32 GiB, "
    "radeon-vii 16 GiB, radeon-pro-vii 16 GiB; gfx908: mi100 32 GiB; gfx90a: mi210 64 GiB"
)


@pytest.mark.parametrize(
    ("gfx", "vram", "product", "why"),
    [
        (90402, 191.984375, "AMD Instinct MI300X", "is gfx942 with 191.98 GiB and the catalog has no gfx942 GPU"),
        (110000, 23.984375, "Radeon RX 7900 XTX", "is gfx1100 with 23.98 GiB and the catalog has no gfx1100 GPU"),
        (
            90006,
            8.0,
            "",
            "is gfx906 with 8 GiB and the catalog's gfx906 boards have other memory sizes (mi50-16gb 16 GiB, "
            "mi50-32gb 32 GiB, mi60 32 GiB, radeon-vii 16 GiB, radeon-pro-vii 16 GiB)",
        ),
    ],
)
def test_a_gpu_the_catalog_lacks_is_named_with_its_architecture_not_written_as_unknown(
    tmp_path: Path, gfx: int, vram: float, product: str, why: str
) -> None:
    root = _one_gpu_host(tmp_path / "host", gfx, vram, product)
    result = run("--root", str(root))
    assert result.returncode == 1 and result.stdout == "" and "unknown" not in result.stderr
    board = f"0000:03:00.0, {product}" if product else "0000:03:00.0"
    assert result.stderr == f"discover: cannot set rocm-inference:host.gpu: GPU 0 ({board}) {why}; {CATALOG_HAS}\n"


def test_a_gpu_the_catalog_lacks_is_not_written_into_the_stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    import components.tools.discover as d

    stack = tmp_path / "Pulumi.big-chat.yaml"
    shutil.copy(ROOT / "Pulumi.big-chat.yaml", stack)
    monkeypatch.setattr(d, "stack_path", lambda name: tmp_path / f"Pulumi.{name}.yaml")
    root = _one_gpu_host(tmp_path / "host", 90402, 191.984375, "AMD Instinct MI300X")
    assert d.main(["--root", str(root), "--write", "big-chat"]) == 1
    assert stack.read_text() == (ROOT / "Pulumi.big-chat.yaml").read_text()


@pytest.mark.parametrize(("gfx", "vram", "gpu"), [(90008, 31.984375, "mi100"), (90010, 63.984375, "mi210")])
def test_gpus_of_the_catalog_beyond_gfx906_are_named(tmp_path: Path, gfx: int, vram: float, gpu: str) -> None:
    result = run("--root", str(_one_gpu_host(tmp_path / "host", gfx, vram, "")))
    assert result.returncode == 0, result.stderr
    assert parse_block(result.stdout)["gpu"] == gpu


def _broken_copy(tmp_path: Path, relative: str, content: str | None) -> Path:
    import shutil

    root = tmp_path / "dual-mi60"
    shutil.copytree(HOSTS / "dual-mi60", root, symlinks=True)
    target = root / relative
    if content is None:
        target.unlink()
    else:
        target.write_text(content)
    return root


NODE1 = "sys/class/kfd/kfd/topology/nodes/1/properties"
GPU0 = "sys/devices/pci0000:00/0000:00:01.0/0000:03:00.0"


@pytest.mark.parametrize(
    ("relative", "content", "said"),
    [
        (
            NODE1,
            "\x00\x00\x7f\x01garbage\n",
            f"/{NODE1}: simd_count is missing or not a number: the file is garbled (first line '\\x00\\x00\\x7f\\x01garbage')",
        ),
        (NODE1, "", f"/{NODE1}: simd_count is missing or not a number: the file is garbled (empty)"),
        (NODE1, "simd_count two-hundred\n", f"/{NODE1}: simd_count is missing or not a number"),
        (
            NODE1,
            "simd_count 256\ngfx_target_version 90006\n",
            f"/{NODE1}: drm_render_minor is missing or not a number in a GPU node",
        ),
        (
            NODE1,
            "simd_count 256\ndrm_render_minor 128\n",
            f"/{NODE1}: gfx_target_version is missing or not a number in a GPU node",
        ),
        (NODE1, None, f"/{NODE1} cannot be read"),
        (f"{GPU0}/mem_info_vram_total", "N/A\n", f"/{GPU0}/mem_info_vram_total is 'N/A', not a number of bytes"),
    ],
    ids=["binary", "empty", "word", "no render minor", "no gfx version", "unreadable", "vram not a number"],
)
def test_garbled_kfd_properties_name_the_file_and_key(
    tmp_path: Path, relative: str, content: str | None, said: str
) -> None:
    result = run("--root", str(_broken_copy(tmp_path, relative, content)))
    assert result.returncode == 1 and result.stdout == "" and "Traceback" not in result.stderr
    assert result.stderr.startswith(f"discover: {said}"), result.stderr
    assert len(result.stderr.splitlines()) == 1


def test_a_cpu_node_with_extra_lines_is_still_a_cpu_node(tmp_path: Path) -> None:
    """The neighbour: properties with keys discovery does not know, and a non-numeric value on one of them."""
    root = _broken_copy(tmp_path, "sys/class/kfd/kfd/topology/nodes/0/properties", record.CPU_PROPS + "name AMD EPYC\n")
    assert [g.render for g in discover(DirectoryReader(root)).gpus] == [128, 129]


# --------------------------------------------------------------------------- --write --host NAME


@pytest.fixture
def fleet_stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    import shutil

    import components.tools.discover as d

    stack = tmp_path / "Pulumi.fleet.yaml"
    shutil.copy(ROOT / "Pulumi.fleet.yaml", stack)
    monkeypatch.setattr(d, "stack_path", lambda name: tmp_path / f"Pulumi.{name}.yaml")

    def no_ssh(target: str, timeout: int = 60) -> SnapshotReader:
        raise AssertionError("the host name is checked before ssh runs")

    monkeypatch.setattr(d, "ssh_snapshot", no_ssh)
    return stack


@pytest.mark.parametrize(
    ("name", "hint"), [("gpu-c", " (did you mean 'gpu-b'?)"), ("gpu-bb", " (did you mean 'gpu-b'?)"), ("box", "")]
)
def test_write_to_a_host_the_fleet_does_not_have_is_refused(
    fleet_stack: Path, capsys: pytest.CaptureFixture[str], name: str, hint: str
) -> None:
    from components.tools.discover import main

    for where in (["--root", str(HOSTS / "quad-gfx906-intel")], ["--ssh", f"ops@{name}.lan"]):
        assert main([*where, "--write", "fleet", "--host", name]) == 2
        assert capsys.readouterr().err == (
            f"discover: argument --host: Pulumi.fleet.yaml has no host {name!r} in rocm-inference:hosts{hint}; "
            "allowed: gpu-a, gpu-b; to add it as a new host, add --add-host\n"
        )
    assert fleet_stack.read_text() == (ROOT / "Pulumi.fleet.yaml").read_text()


def test_add_host_adds_a_host_and_leaves_the_others(fleet_stack: Path) -> None:
    from components.settings import read_stack_file
    from components.tools.discover import main

    before = read_stack_file(fleet_stack).values
    assert main(["--root", str(HOSTS / "dual-mi60"), "--write", "fleet", "--host", "gpu-c", "--add-host"]) == 0
    after = read_stack_file(fleet_stack).values
    assert list(after["hosts"]) == ["gpu-c", "gpu-a", "gpu-b"]
    assert after["hosts"]["gpu-a"] == before["hosts"]["gpu-a"] and after["hosts"]["gpu-b"] == before["hosts"]["gpu-b"]
    assert after["hosts"]["gpu-c"]["gpus"][1] == {"index": 1, "card": 2, "render": 129, "pci": "0000:83:00.0"}
    with pytest.raises(SystemExit) as usage:
        main(["--root", str(HOSTS / "dual-mi60"), "--write", "fleet", "--add-host"])
    assert usage.value.code == 2


def test_a_private_root_mount_is_written_so_node_exporter_binds_it_without_rslave() -> None:
    """Issue 26 defect 10: where / does not propagate (a Proxmox LXC, some VMs), Docker refuses node-exporter's
    rslave bind; discovery reads /proc/self/mountinfo and writes root_mount: private there, nothing elsewhere."""
    from components.tools.discover import root_propagation

    assert root_propagation("27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n") == "private"
    assert root_propagation("27 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw\n") == "shared"
    assert root_propagation("46 45 254:0 / / rw master:1 - ext4 /dev/vda rw\n") == "shared"
    assert root_propagation(None) is None and root_propagation("") is None
