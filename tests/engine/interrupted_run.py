"""A run to interrupt: tests/test_interrupt.py runs this module in a pytest of its own (the suite never collects
it: no test_ prefix) and sends it SIGTERM or SIGINT while its engine runs.

It starts what the suite's engine tests start: a private engine (dockerd, containerd, a bridge, a temp
directory), a host program in a session of its own (as LiteLLM and Open WebUI run) with a helper that left its
parent (only the program's process group reaches it), and a plain child process (as a test's prometheus or the
browser flow). With INTERRUPT_SLOW_STOP, one more stop takes that many seconds, as an engine's with containers
does: longer than pytest-xdist waits for a worker to end. It writes where they all are to INTERRUPT_MARKER,
and waits.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from tests.engine import interrupt
from tests.engine.dockerd import Bridge, processes_of, running_engine
from tests.engine.hostproc import start_process

# Its own bridge and subnets: it may run beside the engine tests (rit-br0-2, 10.231.0-2, 10.232.0-47).
BRIDGE = Bridge("rit-br9", "10.231.9.1/24", "10.232.144.0/20")
# A program whose helper forks away from it (its parent exits): the helper stays in the program's group.
PROGRAM = """
import os, sys, time
if os.fork() == 0:
    if os.fork() == 0:
        print(os.getpid(), flush=True)
        time.sleep(600)
    os._exit(0)
os.wait()
time.sleep(600)
"""


def test_waits_with_an_engine_a_host_program_and_a_child(tmp_path: Path) -> None:
    marker = Path(os.environ["INTERRUPT_MARKER"])
    require = bool(os.environ.get("ROCM_INFERENCE_REQUIRE_ENGINE"))
    with running_engine("rit-int-", BRIDGE, require) as engine:
        program = start_process([sys.executable, "-c", PROGRAM], dict(os.environ), tmp_path, tmp_path / "p.log", "")
        child = subprocess.Popen(["sleep", "600"])
        deadline = time.monotonic() + 10
        while not program.log_tail(1).strip() and time.monotonic() < deadline:
            time.sleep(0.05)
        helper = int(program.log_tail(1))
        stopped = marker.with_suffix(".stopped")
        slow = float(os.environ.get("INTERRUPT_SLOW_STOP") or 0)
        if slow:

            def slow_stop() -> None:
                time.sleep(slow)
                stopped.write_text("done")

            interrupt.on_interrupt(slow_stop)
        marker.write_text(
            json.dumps(
                {
                    "root": str(engine.root),
                    "bridge": BRIDGE.name,
                    "engine": processes_of(engine.root),
                    "others": [program.pid, helper, child.pid],
                    "runner": os.getpid(),
                    "stopped": str(stopped) if slow else None,
                }
            )
        )
        time.sleep(600)
