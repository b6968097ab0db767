"""`python -m components.discover`: read a ROCm host and print the `rocm-inference:host` block for its stack.

Sources (ROCm documentation and the kernel's sysfs ABI):
- KFD topology, `/sys/class/kfd/kfd/topology/nodes/<n>/properties`: GPU nodes have a non-zero
  `simd_count`; they carry `gfx_target_version` (90006 = gfx906), `drm_render_minor`,
  `location_id` and `domain` (the PCI address) and `vendor_id` (4098 = 0x1002). The ROCm device
  order (HIP_VISIBLE_DEVICES, rocm-smi) is the order of the GPU nodes.
- DRM class: `/sys/class/drm/cardN/device` and `/sys/class/drm/renderDN/device` link to the same PCI
  device; its `vendor` (0x1002 for AMD), `mem_info_vram_total` (bytes) and, on boards with FRU
  data, `product_name`. Server boards often have a BMC VGA as card0, so cards do not start at 0.
- `/etc/group` for the numeric ids of `video` and `render`.

`--root DIR` reads all of it under DIR (recorded trees); `--ssh USER@HOST` runs one ssh command that
prints the same files (no agent to install). A GPU the catalog does not have is refused with what was
found and what the catalog supports; `--write STACK --host NAME` refuses a host the fleet does not have
unless `--add-host`. Exit codes: 0 ok, 1 no ROCm GPU or unreadable host, 2 usage.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

import yaml

from components.planning.catalog import Catalog, load_catalog
from components.settings import NAMESPACE, StackConfigError, read_stack_file, suggestion
from components.settings.stackfile import stack_path

KFD_NODES = "/sys/class/kfd/kfd/topology/nodes"
DRM = "/sys/class/drm"
AMD_VENDOR = "0x1002"


class DiscoveryError(Exception):
    """The host cannot be described: no KFD, no AMD GPU, or unreadable files. The message says why."""


class HostReader(Protocol):
    def read(self, path: str) -> str | None: ...
    def resolve(self, path: str) -> str | None: ...
    def list(self, directory: str) -> list[str]: ...


class DirectoryReader:
    """A host's files under a root directory: `/` for this machine, or a recorded tree."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def _path(self, path: str) -> Path:
        return self.root / path.lstrip("/")

    def read(self, path: str) -> str | None:
        try:
            return self._path(path).read_text()
        except OSError:
            return None

    def resolve(self, path: str) -> str | None:
        real = Path(os.path.realpath(self._path(path)))
        if not real.exists():
            return None
        try:
            return "/" + str(real.relative_to(self.root))
        except ValueError:
            return str(real)

    def list(self, directory: str) -> list[str]:
        try:
            return sorted(p.name for p in self._path(directory).iterdir())
        except OSError:
            return []


# The remote half of --ssh: print every file discovery reads, framed, in one ssh command.
SNAPSHOT_SCRIPT = r"""
R="${ROCM_ROOT:-}"
show() { [ -r "$R$1" ] && { echo "@@FILE $1"; cat "$R$1"; echo; }; }
echo "@@LIST /sys/class/kfd/kfd/topology/nodes $(ls "$R/sys/class/kfd/kfd/topology/nodes" 2>/dev/null | tr '\n' ' ')"
for n in $(ls "$R/sys/class/kfd/kfd/topology/nodes" 2>/dev/null); do show "/sys/class/kfd/kfd/topology/nodes/$n/properties"; done
echo "@@LIST /sys/class/drm $(ls "$R/sys/class/drm" 2>/dev/null | tr '\n' ' ')"
for d in $(ls "$R/sys/class/drm" 2>/dev/null); do
  p=$(readlink -f "$R/sys/class/drm/$d/device" 2>/dev/null) || continue
  [ -n "$p" ] && [ -e "$p" ] || continue
  p=${p#"$R"}
  echo "@@LINK /sys/class/drm/$d/device $p"
  for a in vendor device mem_info_vram_total product_name; do show "$p/$a"; done
done
show /etc/group
show /etc/ssh/ssh_host_ed25519_key.pub
show /proc/self/mountinfo
exit 0
"""


class SnapshotReader:
    """The files that SNAPSHOT_SCRIPT printed (from a remote host over ssh)."""

    def __init__(self, text: str) -> None:
        self.links: dict[str, str] = {}
        self.lists: dict[str, list[str]] = {}
        buffers: dict[str, list[str]] = {}
        current: list[str] | None = None
        for line in text.splitlines():
            tag, _, rest = line.partition(" ")
            if tag == "@@FILE":
                current = buffers[rest] = []  # a card and its render node print the same device files
            elif tag == "@@LINK":
                link, _, target = rest.partition(" ")
                self.links[link] = target
                current = None
            elif tag == "@@LIST":
                directory, _, names = rest.partition(" ")
                self.lists[directory] = sorted(names.split())
                current = None
            elif current is not None:
                current.append(line)
        self.files = {path: "\n".join(lines).rstrip("\n") + "\n" for path, lines in buffers.items()}

    def read(self, path: str) -> str | None:
        return self.files.get(path)

    def resolve(self, path: str) -> str | None:
        return self.links.get(path)

    def list(self, directory: str) -> list[str]:
        return self.lists.get(directory, [])


def ssh_snapshot(target: str, timeout: int = 60) -> SnapshotReader:
    """Run SNAPSHOT_SCRIPT on USER@HOST with one ssh command."""
    try:
        done = subprocess.run(
            ["ssh", "-o", "BatchMode=yes", target, "sh", "-s"],
            input=SNAPSHOT_SCRIPT,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except FileNotFoundError:
        raise DiscoveryError("ssh is not installed on this machine") from None
    except subprocess.TimeoutExpired:
        raise DiscoveryError(f"ssh {target} did not answer within {timeout} s") from None
    if done.returncode != 0:
        raise DiscoveryError(f"ssh {target} failed (exit {done.returncode}): {done.stderr.strip()[-300:]}")
    return SnapshotReader(done.stdout)


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class DiscoveredGpu:
    index: int
    card: int
    render: int
    gfx: str
    vram_gib: float
    pci: str
    product: str


@dataclass(frozen=True)
class DiscoveredHost:
    gpus: tuple[DiscoveredGpu, ...]
    groups: dict[str, int]
    # The host's ed25519 public key as `type base64`, read over the ssh connection that OpenSSH has
    # verified against known_hosts: what the preflight's SSH client pins (it reads no known_hosts).
    ssh_host_key: str | None = None
    # How / is mounted ("shared" or "private"; None: not read): node-exporter's rslave bind needs it shared.
    root_mount: str | None = None


def root_propagation(mountinfo: str | None) -> str | None:
    """From /proc/self/mountinfo: "shared" where the / mount propagates (its optional fields, before " - ",
    hold shared:N or master:N: a slave receives the host's mounts too), "private" where it does not."""
    lines = [line.split() for line in (mountinfo or "").splitlines()]
    roots = [fields for fields in lines if len(fields) > 6 and fields[4] == "/"]
    if not roots:
        return None
    optional = roots[-1][6 : roots[-1].index("-")] if "-" in roots[-1] else []
    return "shared" if any(f.startswith(("shared:", "master:")) for f in optional) else "private"


def _properties(text: str) -> dict[str, int]:
    out = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and re.fullmatch(r"-?\d+", parts[1]):
            out[parts[0]] = int(parts[1])
    return out


def _excerpt(text: str) -> str:
    first = text.strip().splitlines()[0] if text.strip() else ""
    return f"first line {first[:60]!r}" if first else "empty"


def gfx_name(version: int) -> str:
    """KFD's gfx_target_version (major*10000 + minor*100 + stepping) as an LLVM target: 90006 -> gfx906."""
    major, minor, step = version // 10000, version // 100 % 100, version % 100
    return f"gfx{major}{minor:x}{step:x}"


def _drm_devices(reader: HostReader) -> tuple[dict[str, int], dict[str, int]]:
    """PCI device path -> card number, and -> render minor, for AMD DRM nodes."""
    cards: dict[str, int] = {}
    renders: dict[str, int] = {}
    for name in reader.list(DRM):
        match = re.fullmatch(r"(card|renderD)(\d+)", name)
        if not match:
            continue
        device = reader.resolve(f"{DRM}/{name}/device")
        if device is None or (reader.read(f"{device}/vendor") or "").strip() != AMD_VENDOR:
            continue
        (cards if match.group(1) == "card" else renders)[device] = int(match.group(2))
    return cards, renders


def discover(reader: HostReader) -> DiscoveredHost:
    nodes = reader.list(KFD_NODES)
    if not nodes:
        raise DiscoveryError(
            f"no KFD topology at {KFD_NODES}: the amdgpu kernel driver with ROCm (KFD) is not loaded on this host; "
            "install the ROCm kernel driver (amdgpu-dkms) and reboot"
        )
    cards, renders = _drm_devices(reader)
    device_by_render = {minor: device for device, minor in renders.items()}
    gpus: list[DiscoveredGpu] = []
    for node in sorted(nodes, key=lambda n: int(n) if n.isdigit() else 1 << 30):
        where = f"{KFD_NODES}/{node}/properties"
        text = reader.read(where)
        if text is None:
            raise DiscoveryError(f"{where} cannot be read: is the amdgpu driver fully loaded? (dmesg | grep -i kfd)")
        props = _properties(text)
        if "simd_count" not in props:
            raise DiscoveryError(
                f"{where}: simd_count is missing or not a number: the file is garbled ({_excerpt(text)})"
            )
        if props["simd_count"] <= 0:
            continue  # a CPU node
        for needed in ("gfx_target_version", "drm_render_minor"):
            if needed not in props:
                raise DiscoveryError(
                    f"{where}: {needed} is missing or not a number in a GPU node: the file is garbled ({_excerpt(text)})"
                )
        minor = props["drm_render_minor"]
        device = device_by_render.get(minor)
        if device is None or device not in cards:
            raise DiscoveryError(
                f"KFD node {node} is a GPU with render minor {minor}, but /sys/class/drm has no AMD "
                f"renderD{minor} and card node for it"
            )
        vram_text = (reader.read(f"{device}/mem_info_vram_total") or "0").strip() or "0"
        if not vram_text.isdigit():
            raise DiscoveryError(f"{device}/mem_info_vram_total is {vram_text[:40]!r}, not a number of bytes")
        vram = int(vram_text)
        gpus.append(
            DiscoveredGpu(
                index=len(gpus),
                card=cards[device],
                render=minor,
                gfx=gfx_name(props.get("gfx_target_version", 0)),
                vram_gib=round(vram / (1 << 30), 2),
                pci=device.rsplit("/", 1)[-1],  # the PCI device's directory is its address
                product=(reader.read(f"{device}/product_name") or "").strip(),
            )
        )
    if not gpus:
        raise DiscoveryError("the KFD topology lists no GPU (no node with simd_count > 0): this host has no ROCm GPU")
    groups = {}
    for line in (reader.read("/etc/group") or "").splitlines():
        fields = line.split(":")
        if len(fields) >= 3 and fields[0] in ("video", "render") and fields[2].isdigit():
            groups[fields[0]] = int(fields[2])
    missing = [g for g in ("video", "render") if g not in groups]
    if missing:
        raise DiscoveryError(f"/etc/group has no {' and no '.join(missing)} group: the ROCm device nodes need them")
    key = (reader.read("/etc/ssh/ssh_host_ed25519_key.pub") or "").split()
    return DiscoveredHost(
        tuple(gpus),
        groups,
        " ".join(key[:2]) if len(key) >= 2 else None,
        root_propagation(reader.read("/proc/self/mountinfo")),
    )


# --------------------------------------------------------------------------- the stack file's block


def _model_token(key: str) -> str:
    return key.split("-")[0] if key.startswith("mi") else key.replace("-", " ")


def match_gpu(gpu: DiscoveredGpu, catalog: Catalog) -> tuple[str, list[str]]:
    """The catalog name for a discovered GPU, and the other names it could be."""
    candidates = [
        name for name, g in catalog.gpus.items() if g.gfx == gpu.gfx and abs(g.memory_gib - gpu.vram_gib) < 0.5
    ]
    product = re.sub(r"[^a-z0-9]+", " ", gpu.product.lower())
    named = [n for n in candidates if _model_token(n) in product]
    pick = named or candidates
    if not pick:
        return "unknown", []
    return pick[0], pick[1:]


def unknown_gpus(host: DiscoveredHost, catalog: Catalog, key: str) -> list[str]:
    """One line per discovered GPU the catalog has no entry for: which architecture and memory were found,
    and which the catalog supports (the stack's `gpu` must name one of them)."""
    supported: dict[str, list[str]] = {}
    for name, entry in catalog.gpus.items():
        supported.setdefault(entry.gfx, []).append(f"{name} {entry.memory_gib:.0f} GiB")
    has = "; ".join(f"{gfx}: {', '.join(names)}" for gfx, names in supported.items())
    lines = []
    for g in host.gpus:
        if match_gpu(g, catalog)[0] != "unknown":
            continue
        board = f"{g.pci}, {g.product}" if g.product else g.pci
        family = supported.get(g.gfx, [])
        why = (
            f"the catalog's {g.gfx} boards have other memory sizes ({', '.join(family)})"
            if family
            else f"the catalog has no {g.gfx} GPU"
        )
        lines.append(
            f"cannot set {key}.gpu: GPU {g.index} ({board}) is {g.gfx} with {g.vram_gib:g} GiB and {why}; "
            f"the catalog (components/planning/catalog.yaml) supports {has}"
        )
    return lines


def host_block(host: DiscoveredHost, docker: str, address: str, catalog: Catalog) -> dict[str, object]:
    names = {match_gpu(g, catalog)[0] for g in host.gpus}
    block: dict[str, object] = {
        "docker": docker,
        "address": address,
        "gpu": sorted(names)[0] if len(names) == 1 else "mixed",
        "gpus": [{"index": g.index, "card": g.card, "render": g.render, "pci": g.pci} for g in host.gpus],
        "groups": {"video": host.groups["video"], "render": host.groups["render"]},
    }
    if host.ssh_host_key and docker.startswith("ssh://"):
        block["ssh_host_key"] = host.ssh_host_key
    if host.root_mount == "private":
        block["root_mount"] = "private"
    return block


def block_header(fleet_host: str | None) -> str:
    """The line a host block starts with: `rocm-inference:host:`, or a host's name under `rocm-inference:hosts:`."""
    return f"    {fleet_host}:" if fleet_host else f"  {NAMESPACE}:host:"


def render_yaml(
    host: DiscoveredHost,
    block: dict[str, object],
    catalog: Catalog,
    kept: dict[str, object] | None = None,
    fleet_host: str | None = None,
) -> str:
    """The block as it stands in a stack file, with what was learned per GPU as comments."""
    _, others = match_gpu(host.gpus[0], catalog)
    gpu_note = f"  # also fits: {', '.join(others)} (same gfx and memory): check the board" if others else ""
    if block["gpu"] == "mixed":
        gpu_note = "  # the GPUs differ: give each server GPUs of one model"
    pad = " " * (len(block_header(fleet_host)) - len(block_header(fleet_host).lstrip()) + 2)
    lines = [
        block_header(fleet_host),
        f"{pad}docker: {block['docker']}",
        f"{pad}address: {block['address']}",
        f"{pad}gpu: {block['gpu']}{gpu_note}",
        f"{pad}gpus:",
    ]
    for g in host.gpus:
        learned = ", ".join(x for x in (g.gfx, f"{g.vram_gib:g} GiB", g.product) if x)
        lines.append(f'{pad}  - {{index: {g.index}, card: {g.card}, render: {g.render}, pci: "{g.pci}"}}  # {learned}')
    lines.append(f"{pad}groups: {{video: {host.groups['video']}, render: {host.groups['render']}}}")
    if "ssh_host_key" in block:
        lines.append(f"{pad}ssh_host_key: {block['ssh_host_key']}  # pinned for the preflight's SSH client")
    if "root_mount" in block:
        lines.append(f"{pad}root_mount: private  # / does not propagate: node-exporter binds it without rslave")
    for key, value in (kept or {}).items():
        lines.append(f"{pad}{key}: {json.dumps(value)}")
    return "\n".join(lines) + "\n"


def existing_block(stack_path: Path, fleet_host: str | None = None) -> dict[str, object]:
    values = read_stack_file(stack_path).values
    hosts = values.get("hosts") if fleet_host else {None: values.get("host")}
    block = hosts.get(fleet_host) if isinstance(hosts, dict) else None
    return dict(block) if isinstance(block, dict) else {}


def write_block(stack_path: Path, block_text: str, fleet_host: str | None = None) -> None:
    """Replace one host's block of a stack file (`rocm-inference:host:`, or `NAME:` under
    `rocm-inference:hosts:`), leaving every other line as it was."""
    lines = stack_path.read_text().splitlines(keepends=True)
    header = block_header(fleet_host)
    indent = len(header) - len(header.lstrip())
    start = next((i for i, ln in enumerate(lines) if ln.rstrip() == header), None)
    if start is None:
        parent = f"  {NAMESPACE}:hosts:" if fleet_host else "config:"
        at = next((i + 1 for i, ln in enumerate(lines) if ln.rstrip() == parent), None)
        if at is None:
            if fleet_host and not any(ln.rstrip() == "config:" for ln in lines):
                lines += ["config:\n"]
            at = next((i + 1 for i, ln in enumerate(lines) if ln.rstrip() == "config:"), len(lines))
            if fleet_host:
                lines[at:at] = [parent + "\n"]
                at += 1
        lines[at:at] = [block_text]
    else:
        end = start + 1
        while end < len(lines) and (lines[end].startswith(" " * (indent + 2)) or not lines[end].strip()):
            end += 1
        while end > start + 1 and not lines[end - 1].strip():
            end -= 1  # keep blank lines that separate the next key
        lines[start:end] = [block_text]
    stack_path.write_text("".join(lines))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m components.discover", description=__doc__.splitlines()[0])
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--ssh", metavar="USER@HOST", help="read this host over one ssh command")
    where.add_argument("--root", metavar="DIR", help="read a recorded tree under DIR instead of /")
    parser.add_argument("--format", choices=["yaml", "json"], default="yaml")
    parser.add_argument("--write", metavar="STACK", help="update the host block of Pulumi.STACK.yaml")
    parser.add_argument("--host", metavar="NAME", help="with --write: the block of this host of a fleet stack")
    parser.add_argument(
        "--add-host", action="store_true", help="with --host: add NAME to the fleet when the stack has no such host"
    )
    args = parser.parse_args(argv)
    if args.host and not args.write:
        parser.error("--host goes with --write STACK")
    if args.ssh is not None and (args.ssh.startswith("-") or not args.ssh.strip()):
        parser.error(f"argument --ssh: {args.ssh!r} is not USER@HOST")  # ssh would take it as an option
    if args.add_host and not args.host:
        parser.error("--add-host goes with --write STACK --host NAME")
    if args.root is not None and not Path(args.root).is_dir():
        why = "is not a directory" if Path(args.root).exists() else "does not exist"
        print(
            f"discover: argument --root: {args.root} {why}: give the directory a host's tree is under", file=sys.stderr
        )
        return 2
    catalog = load_catalog()
    # The stack first: a wrong stack or host name is said before ssh runs.
    path = stack_path(args.write) if args.write else None
    if path is not None and not path.exists():
        print(f"discover: {path.name} does not exist", file=sys.stderr)
        return 1
    try:
        values = read_stack_file(path).values if path else {}
        existing = existing_block(path, args.host) if path else {}
    except StackConfigError as exc:
        print("\n".join(exc.lines), file=sys.stderr)
        return 1
    if path is not None and "hosts" in values and not args.host:
        names = ", ".join(values["hosts"]) if isinstance(values["hosts"], dict) else ""
        print(f"discover: {path.name} is a fleet: say which host with --host NAME ({names})", file=sys.stderr)
        return 2
    if path is not None and args.host and "host" in values:
        print(f"discover: {path.name} has one host (rocm-inference:host): drop --host", file=sys.stderr)
        return 2
    hosts: dict[str, object] = values["hosts"] if isinstance(values.get("hosts"), dict) else {}
    if path is not None and args.host and args.host not in hosts and not args.add_host:
        print(
            f"discover: argument --host: {path.name} has no host {args.host!r} in {NAMESPACE}:hosts"
            f"{suggestion(args.host, hosts) if hosts else ''}; to add it as a new host, add --add-host",
            file=sys.stderr,
        )
        return 2
    try:
        reader: HostReader = ssh_snapshot(args.ssh) if args.ssh else DirectoryReader(Path(args.root or "/"))
        host = discover(reader)
    except DiscoveryError as exc:
        print(f"discover: {exc}", file=sys.stderr)
        return 1
    key = f"{NAMESPACE}:hosts.{args.host}" if args.host else f"{NAMESPACE}:host"
    unknown = unknown_gpus(host, catalog, key)
    if unknown:
        print("\n".join(f"discover: {line}" for line in unknown), file=sys.stderr)
        return 1
    if args.ssh:
        docker, address = f"ssh://{args.ssh}", args.ssh.rsplit("@", 1)[-1]
    else:
        # A local reading does not know how the stack reaches the host: keep what the stack says.
        docker = str(existing.get("docker", "unix:///var/run/docker.sock"))
        address = str(existing.get("address", "localhost"))
    block = host_block(host, docker, address, catalog)
    # Keep what discovery did not learn this time (bind, preflight, a host key a local reading cannot see).
    kept = {k: v for k, v in existing.items() if k not in block}
    text = render_yaml(host, block, catalog, kept, args.host)
    if path is not None:
        write_block(path, text, args.host)
        print(f"updated {key} in {path.name}", file=sys.stderr)
    if args.format == "json":
        print(json.dumps({f"{NAMESPACE}:host": block, "discovered": [asdict(g) for g in host.gpus]}, indent=2))
    else:
        print(text, end="")
    return 0


def parse_block(text: str) -> dict[str, object]:
    """The host block printed by this command, as data (for tests and --write round trips)."""
    doc = yaml.safe_load("config:\n" + text)
    return dict(doc["config"][f"{NAMESPACE}:host"])


def cli() -> None:
    """The command line."""
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `... | head` ends quietly
    sys.exit(main())


if __name__ == "__main__":
    cli()
