"""An interrupted test run stops what it started: private Docker engines (dockerd, containerd, their bridges and
directories), host programs (LiteLLM, Open WebUI, Chromium), any child process.

A run ends early by SIGTERM (`timeout`, a CI limit, `make` passing on its own SIGTERM to its child) or SIGINT
(Ctrl-C, to the terminal's whole process group). Python's default for SIGTERM ends the process at once: no
`finally`, no fixture teardown, no atexit. And under pytest-xdist the tests run in worker processes, which
the controller gives at most 10 s to end before it kills them (xdist's NodeManager.EXIT_TIMEOUT, execnet's
Group.terminate), too short for an engine to stop.

So each process of the run (tests/conftest.py installs this in the controller and in every worker) handles
both signals the same way, once:
- the controller passes SIGTERM on to its workers and waits for them to end;
- every process stops what it registered (`on_interrupt`: each engine and host program, most recent first),
  then ends its other child processes;
- a worker then exits at once (its controller is going down too); the controller, or a run without workers,
  raises KeyboardInterrupt, so pytest reports the run as interrupted and exits 2.
A second signal meanwhile (the group's and the controller's, or an impatient Ctrl-C) is ignored until this
is done: a stop cut short is what leaves things behind. The same stops run atexit, for a run that ends
otherwise.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType

# How long the controller waits for its workers to stop their engines, and a child process to end on SIGTERM.
WORKERS_GRACE_S = 120.0
CHILD_GRACE_S = 5.0

_stops: dict[int, Callable[[], None]] = {}
_tokens = itertools.count()
_lock = threading.RLock()  # a signal may arrive while this thread holds it
_role = "single"  # "controller", "worker" or "single" (no xdist workers)


def on_interrupt(stop: Callable[[], None]) -> int:
    """Run `stop` if the run is interrupted before `done(token)`; it may run twice with the normal teardown."""
    with _lock:
        token = next(_tokens)
        _stops[token] = stop
    return token


def done(token: int) -> None:
    with _lock:
        _stops.pop(token, None)


@contextlib.contextmanager
def stopped_on_interrupt(stop: Callable[[], None]) -> Iterator[None]:
    token = on_interrupt(stop)
    try:
        yield
    finally:
        done(token)


def stop_all() -> None:
    """Every registered stop, most recent first; one that fails does not keep the others from running."""
    while True:
        with _lock:
            if not _stops:
                return
            stop = _stops.pop(max(_stops))
        with contextlib.suppress(Exception):
            stop()


def _parents() -> dict[int, int]:
    """Every live process's parent (from /proc: no process library in the project's venv)."""
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may hold spaces and parentheses, so split after its last ')'
        state, ppid = stat.rsplit(")", 1)[1].split()[:2]
        if state != "Z":
            out[int(entry.name)] = int(ppid)
    return out


def children(pid: int) -> list[int]:
    return [child for child, parent in _parents().items() if parent == pid]


def descendants(pid: int) -> list[int]:
    """Its children, theirs, and so on (a browser under the flow's python under a worker)."""
    parents = _parents()
    found: list[int] = []
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier and child not in found}
        found += sorted(frontier)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def wait_gone(pids: list[int], seconds: float) -> list[int]:
    deadline = time.monotonic() + seconds
    while True:
        left = [p for p in pids if alive(p)]
        if not left or time.monotonic() > deadline:
            return left
        with contextlib.suppress(ChildProcessError):
            while os.waitpid(-1, os.WNOHANG)[0] > 0:  # reap our own, so that they do not linger as zombies
                pass
        time.sleep(0.05)


def end(pids: list[int], grace: float) -> None:
    """SIGTERM to each, SIGKILL to those still there after `grace` seconds."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
    for pid in wait_gone(pids, grace):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    wait_gone(pids, grace)


def _handle(signum: int, frame: FrameType | None) -> None:
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)
    if _role == "controller":
        workers = children(os.getpid())
        for pid in workers:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGTERM)
        wait_gone(workers, WORKERS_GRACE_S)
    stop_all()
    # whatever else a test started and had not stopped yet, with what it started in turn
    end(descendants(os.getpid()), CHILD_GRACE_S)
    if _role == "worker":
        os._exit(128 + signum)
    raise KeyboardInterrupt(f"stopped by {signal.Signals(signum).name}")


def install(role: str) -> None:
    """Handle SIGTERM and SIGINT in this process (the main thread's: where pytest runs the tests)."""
    global _role
    _role = role
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _handle)
    atexit.register(stop_all)
