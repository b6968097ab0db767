"""The progress healthcheck's script itself (components/planning/health.py), against a fake /metrics.

The script ends a hung server by signalling PID 1 (docker-init in the container) and then SIGKILLs
every other process it sees in /proc. Here it runs only inside a fresh PID namespace with its own
/proc (`unshare --pid --fork --mount-proc`), under a small init that records the signals it gets and
holds one `sleep` standing for vLLM: nothing outside the namespace can be signalled. The init refuses
to run the script unless it is PID 1 and /proc is the namespace's.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from components.planning.health import progress_check

HOST = "127.0.0.2"
STALL_S = 2
KILL_AFTER_S = 1

# PID 1 of the namespace: runs the check once per delay (seconds after the previous check), prints
# the exit codes, the SIGTERMs it received and how the stand-in server ended.
INIT = """
import json, os, signal, subprocess, sys, time
if os.getpid() != 1 or os.readlink('/proc/self') != '1':
    print('not PID 1 of a namespace with its own /proc', file=sys.stderr); sys.exit(3)
script, delays = sys.argv[1], json.loads(sys.argv[2])
terms = []
signal.signal(signal.SIGTERM, lambda *_: terms.append(time.time()))
server = subprocess.Popen(['sleep', '60'])
codes = []
for delay in delays:
    time.sleep(delay)
    codes.append(subprocess.run([sys.executable, '-c', script]).returncode)
try:
    ended = server.wait(timeout=1)  # a SIGKILLed stand-in is gone at once; a live one waits here
except subprocess.TimeoutExpired:
    ended = None
    server.kill(); server.wait()
print(json.dumps({'codes': codes, 'terms': len(terms), 'server': ended}))
"""


def metrics(running: int, tokens: float, kv: float) -> str:
    """vLLM 0.11.2's exposition of the series the check reads (vllm/v1/metrics/loggers.py)."""
    labels = '{engine="0",model_name="llama"}'
    return "".join(
        f"# HELP {name} x\n# TYPE {name} {kind}\n{name}{labels} {value}\n"
        for name, kind, value in (
            ("vllm:num_requests_running", "gauge", float(running)),
            ("vllm:num_requests_waiting", "gauge", 0.0),
            ("vllm:kv_cache_usage_perc", "gauge", kv),
            ("vllm:prompt_tokens_total", "counter", 512.0),
            ("vllm:generation_tokens_total", "counter", tokens),
            ("vllm:num_preemptions_total", "counter", 0.0),
        )
    )


class FakeServer:
    """An HTTP server on HOST that answers each GET with `answer(path, its Authorization header)`: (status, body)."""

    def __init__(self, answer: Callable[[str, str], tuple[int, bytes]]) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                status, body = answer(self.path, self.headers.get("Authorization", ""))
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer((HOST, 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class FakeVllm(FakeServer):
    """/health answers 200; each /metrics request gets the next page (the last one repeats)."""

    def __init__(self) -> None:
        self.pages: list[str] = []
        self.served = 0
        super().__init__(self.answer)

    def answer(self, path: str, authorization: str) -> tuple[int, bytes]:
        if path == "/metrics":
            self.served += 1
            return 200, self.pages[min(self.served - 1, len(self.pages) - 1)].encode()
        return (200, b"") if path == "/health" else (404, b"")


def _unshare() -> list[str]:
    cmd = ["unshare", "--pid", "--fork", "--mount-proc"] + (["--map-root-user"] if os.geteuid() else [])
    reason = ""
    if shutil.which("unshare") is None:
        reason = "unshare (util-linux) is not installed"
    elif subprocess.run([*cmd, "true"], capture_output=True).returncode != 0:
        reason = "this machine allows no PID namespace (unshare --pid --mount-proc)"
    if reason:
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return cmd


@pytest.fixture
def vllm() -> Iterator[FakeVllm]:
    fake = FakeVllm()
    yield fake
    fake.close()


def run_checks(fake: FakeVllm, tmp_path: Path, pages: list[str], delays: list[float]) -> dict[str, Any]:
    fake.pages = pages
    script = progress_check(
        fake.port, STALL_S, host=HOST, state_file=str(tmp_path / "progress"), kill_after_s=KILL_AFTER_S
    )
    return run_in_namespace(script, delays)


def run_in_namespace(script: str, delays: list[float]) -> dict[str, Any]:
    """INIT's report of the check `script` run once per delay in a PID namespace of its own."""
    done = subprocess.run(
        [*_unshare(), sys.executable, "-c", INIT, script, json.dumps(delays)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return report


# Four checks a second apart: the last ones come past the 2 s window.
APART = [0.0, 1.0, 1.0, 1.0]


def test_a_server_whose_tokens_move_stays_healthy(vllm: FakeVllm, tmp_path: Path) -> None:
    report = run_checks(vllm, tmp_path, [metrics(1, n, 0.3) for n in (10, 20, 30, 40)], APART)
    assert report == {"codes": [0, 0, 0, 0], "terms": 0, "server": None}


def test_an_idle_server_stays_healthy(vllm: FakeVllm, tmp_path: Path) -> None:
    report = run_checks(vllm, tmp_path, [metrics(0, 40, 0.0)], APART)
    assert report == {"codes": [0, 0, 0, 0], "terms": 0, "server": None}


def test_a_long_prefill_fills_the_kv_cache_and_counts_as_progress(vllm: FakeVllm, tmp_path: Path) -> None:
    """vLLM 0.11.2 moves no token counter until a prefill ends, but records the KV cache usage after
    every chunk: one request running, no token for longer than the window, the usage rising."""
    report = run_checks(vllm, tmp_path, [metrics(1, 40, kv) for kv in (0.10, 0.12, 0.14, 0.16)], APART)
    assert report == {"codes": [0, 0, 0, 0], "terms": 0, "server": None}


def test_a_hung_server_is_sent_sigterm_then_sigkill(vllm: FakeVllm, tmp_path: Path) -> None:
    """Requests running, no token and the KV cache usage still: past the window the check fails and
    sends SIGTERM to PID 1 once; a check more than KILL_AFTER_S later SIGKILLs what is left."""
    # checks at about 0, 0.5 (within the window), 2.5 (past it: SIGTERM), 2.8 and 4.3 (SIGKILL)
    report = run_checks(vllm, tmp_path, [metrics(1, 40, 0.3)], [0.0, 0.5, 2.0, 0.3, 1.5])
    assert report == {"codes": [0, 0, 1, 1, 1], "terms": 1, "server": -9}
