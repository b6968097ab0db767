"""An interrupted run leaves nothing behind (tests/engine/interrupt.py): a pytest of its own runs an engine
module (tests/engine/interrupted_run.py), is sent SIGTERM or SIGINT while its engine runs, and afterwards no
dockerd, containerd, host program or child of it is alive, and neither its bridge nor its directory is left."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.engine.dockerd import mounts_under, processes_of
from tests.engine.interrupt import alive, descendants

pytestmark = [pytest.mark.engine]

STARTED_S = 90  # the engine of the run to interrupt is up by then
ENDED_S = 90  # and the run has stopped it and ended by then


# A stop longer than xdist gives a worker (10 s after it asks it to end; execnet interrupts it after 5).
SLOW_STOP_S = 7


@pytest.mark.parametrize(
    ("workers", "how", "slow"),
    [
        # `make` passes its SIGTERM on to pytest alone; xdist's worker runs the test, its stops take a while
        ("1", "SIGTERM to pytest", SLOW_STOP_S),
        ("1", "SIGINT to the group", 0),  # Ctrl-C: the controller and its worker at once
        ("0", "SIGTERM to the group", 0),  # `timeout`, a run without workers
    ],
)
def test_an_interrupted_run_stops_its_engine_host_programs_and_children(
    tmp_path: Path, workers: str, how: str, slow: int
) -> None:
    marker = tmp_path / "started.json"
    env = {**os.environ, "INTERRUPT_MARKER": str(marker), "INTERRUPT_SLOW_STOP": str(slow)}
    env.pop("PYTEST_XDIST_WORKER", None)
    env.pop("PYTEST_XDIST_TESTRUNUID", None)
    run = subprocess.Popen(
        [sys.executable, "-m", "pytest", "tests/engine/interrupted_run.py", "-n", workers, "-p", "no:randomly"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # a group of its own: the signal to the group reaches it, not this run
    )
    try:
        deadline = time.monotonic() + STARTED_S
        while not marker.exists() and run.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        if not marker.exists():
            run.kill()
            out = run.communicate()[0].decode(errors="replace")
            if "no Docker engine can start here" in out:
                pytest.skip(out.strip().splitlines()[-1])
            pytest.fail(f"the run did not start its engine within {STARTED_S} s:\n{out[-2000:]}")
        time.sleep(0.2)  # the marker is written whole
        started = json.loads(marker.read_text())
        tree = descendants(run.pid)
        sig = signal.SIGINT if how.startswith("SIGINT") else signal.SIGTERM
        if how.endswith("the group"):
            os.killpg(run.pid, sig)
        else:
            run.send_signal(sig)
        out = run.communicate(timeout=ENDED_S)[0].decode(errors="replace")
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()
    root = Path(started["root"])
    assert run.returncode != 0, out[-2000:]
    assert processes_of(root) == [], f"the engine's processes are left:\n{out[-2000:]}"
    left = [pid for pid in (*started["engine"], *started["others"], started["runner"], *tree) if alive(pid)]
    assert left == [], f"processes of the interrupted run are alive: {left}\n{out[-2000:]}"
    assert not Path(f"/sys/class/net/{started['bridge']}").exists(), "its bridge is left"
    assert mounts_under(root) == [] and not root.exists(), f"{root} is left"
    if started["stopped"]:
        assert Path(started["stopped"]).exists(), "the worker was ended before its stops were done"
