"""The real Open WebUI as a host process, watched by a network guard, for tests/test_chat_ui_browser.py.

Open WebUI, with the Playwright that drives the browser, is never installed into ./venv (that venv goes to
operators' machines): the pins of open-webui-requirements.txt beside this file go into a venv of their own under
the user's cache (tests/engine/hostproc.py). `open-webui serve` runs in a session of its own with the environment
the test gives (nothing of the test's own environment leaks in but PASSED_ENV), and is stopped by its pid.

The guard (netguard.c, compiled here with gcc) is an LD_PRELOAD shim: the UI and its children append one line per
connection attempt and name lookup to a log, and `Guard.outside` lists those whose destination is not the test's.
There is no internet here, so without it a connection to the outside would fail without a word.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from tests.engine.hostproc import HostProcess, cached_venv, http_status, pinned_version, start_process

HERE = Path(__file__).resolve().parent
REQUIREMENTS = HERE / "open-webui-requirements.txt"
GUARD_SOURCE = HERE / "netguard.c"
BROWSER_FLOW = HERE / "browser_flow.py"
# A cold install downloads ~4 GB of wheels (torch's CUDA build): 2 min 32 s here with a warm pip cache.
PIP_TIMEOUT = 1800.0
OPEN_WEBUI_VERSION: str = pinned_version(REQUIREMENTS, "open-webui")
# Its first start runs the database migrations: 31-58 s here.
READY_TIMEOUT = 180.0
# Of the test's own environment, only these reach the UI (HOME and the rest come from the test).
PASSED_ENV = ("PATH", "LANG", "LC_ALL", "TMPDIR")
SENDS = ("connect", "send", "sendto", "sendmsg")


class UiFailed(Exception):
    """Open WebUI was installed but did not come up: its exit or a timeout, with the tail of its log."""


class GuardUnavailable(Exception):
    """Why the network guard cannot be built here (no gcc)."""


def ui_venv() -> Path:
    """The venv with the pinned Open WebUI and Playwright, made once (VenvUnavailable when it cannot be)."""
    return cached_venv(REQUIREMENTS, "open-webui", OPEN_WEBUI_VERSION, PIP_TIMEOUT)


@dataclass(frozen=True)
class Event:
    """One line of the guard's log (netguard.c): `connect`, `send`, `sendto`, `sendmsg` with an address, port and
    transport; `lookup` of a name; `reverse` of an address."""

    pid: int
    kind: str
    target: str  # the address, or the name looked up
    port: int | None
    transport: str  # tcp, udp; "" for lookups
    line: str


@dataclass(frozen=True)
class Guard:
    library: Path
    log: Path

    def environment(self) -> dict[str, str]:
        return {"LD_PRELOAD": str(self.library), "NETGUARD_LOG": str(self.log)}

    def events(self) -> list[Event]:
        try:
            text = self.log.read_text(errors="replace")
        except FileNotFoundError:
            return []
        out = []
        for line in text.splitlines():
            fields = line.split(" ")
            pid = int(fields[0]) if fields[0].isdigit() else 0
            kind = fields[1] if len(fields) > 1 else "unreadable"
            if kind in SENDS and len(fields) == 6 and fields[2] in ("inet", "inet6") and fields[4].isdigit():
                out.append(Event(pid, kind, fields[3], int(fields[4]), fields[5], line))
            elif kind == "lookup" and len(fields) == 5:
                port = int(fields[4]) if fields[4].isdigit() else None
                out.append(Event(pid, kind, fields[3], port, "", line))
            else:  # another address family, a reverse lookup, a line cut short
                out.append(Event(pid, kind, " ".join(fields[2:]), None, "", line))
        return out

    def outside(
        self,
        endpoints: Iterable[tuple[str, int]],
        names: Mapping[str, str] = {},
        udp_probes: Mapping[tuple[str, int], str] = {},
    ) -> list[str]:
        """The log's lines whose destination is not the test's: a connection or datagram to none of `endpoints`
        (address, port), a lookup of a name other than these addresses written as numbers and `names` (name -> why
        it is allowed), a UDP connect that sends nothing to none of `udp_probes` ((address, port) -> why), and any
        reverse lookup or other address family."""
        allowed = set(endpoints)
        addresses = {address for address, _ in allowed}
        bad = []
        for event in self.events():
            if event.kind in SENDS and (event.target, event.port) in allowed:
                continue
            if event.kind == "connect" and event.transport == "udp" and (event.target, event.port) in udp_probes:
                continue
            if event.kind == "lookup" and (event.target in addresses or event.target in names):
                continue
            bad.append(event.line)
        return bad


def build_guard(workdir: Path) -> Guard:
    """Compile netguard.c into workdir; its log starts empty."""
    gcc = shutil.which("gcc")
    if gcc is None:
        raise GuardUnavailable("gcc is not installed (Debian's gcc builds the network guard)")
    workdir.mkdir(parents=True, exist_ok=True)
    library = workdir / "netguard.so"
    done = subprocess.run(
        [gcc, "-shared", "-fPIC", "-O2", "-Wall", "-Werror", "-o", str(library), str(GUARD_SOURCE), "-ldl"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode != 0:
        raise GuardUnavailable(f"gcc could not build {GUARD_SOURCE.name}: {done.stderr.strip()[-400:]}")
    return Guard(library, workdir / "netguard.log")


def launch_ui(env: Mapping[str, str], host: str, port: int, workdir: Path, guard: Guard | None) -> HostProcess:
    """Start `open-webui serve` on host:port with exactly this environment (plus PASSED_ENV and the guard's);
    not waited for."""
    venv = ui_venv()
    workdir.mkdir(parents=True, exist_ok=True)
    full_env = {key: os.environ[key] for key in PASSED_ENV if key in os.environ}
    full_env.update(env)
    if guard is not None:
        full_env.update(guard.environment())
    cmd = [str(venv / "bin" / "open-webui"), "serve", "--host", host, "--port", str(port)]
    log = workdir / f"open-webui-{port}.log"
    return start_process(cmd, full_env, workdir, log, f"http://{host}:{port}")


def wait_ready(ui: HostProcess, timeout: float = READY_TIMEOUT) -> None:
    """Until /ready answers 200 (it answers 503 until start-up is done); UiFailed, the UI stopped, otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        if ui.exited():
            ui.stop()
            raise UiFailed(f"open-webui exited with {ui.process.returncode} before it was ready:\n{ui.log_tail()}")
        if http_status(f"{ui.url}/ready", timeout=2) == 200:
            return
        if time.monotonic() > deadline:
            ui.stop()
            raise UiFailed(f"open-webui was not ready on {ui.url} within {timeout:.0f} s:\n{ui.log_tail()}")
        time.sleep(0.25)


def start_ui(env: Mapping[str, str], host: str, port: int, workdir: Path, guard: Guard | None) -> HostProcess:
    """launch_ui, then wait_ready."""
    ui = launch_ui(env, host, port, workdir, guard)
    try:
        wait_ready(ui)
    except BaseException:
        ui.stop()
        raise
    return ui
