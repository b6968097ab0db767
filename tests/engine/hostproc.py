"""Real programs run by the tests as host processes: a cached venv of pinned packages, a free port, a process in a
session of its own that is stopped by its pid.

Such programs (the LiteLLM proxy, Open WebUI) are never installed into ./venv (that venv goes to operators'
machines): the pins of a requirements file go into a venv of their own under the user's cache, made once per
version and requirements file, one installer at a time, and made anew when an install was cut short.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from tests.engine import interrupt


class VenvUnavailable(Exception):
    """Why a pinned program cannot be installed here (no package registry, no venv module): tests skip with this
    line, or fail where the run requires the program."""


def pinned_version(requirements: Path, package: str) -> str:
    """The version `requirements` pins `package` to (`package==VERSION`, extras allowed)."""
    for line in requirements.read_text().splitlines():
        spec = line.split("#", 1)[0].strip()
        name, sep, version = spec.partition("==")
        if sep and name.split("[", 1)[0].strip().lower() == package:
            return version.strip()
    raise ValueError(f"{requirements} pins no {package}==VERSION")


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "rocm-inference"


def venv_path(requirements: Path, name: str, version: str) -> Path:
    """`<cache>/<name>-<version>-<sha of the requirements file>`: a changed pin is another venv."""
    digest = hashlib.sha256(requirements.read_bytes()).hexdigest()[:12]
    return cache_dir() / f"{name}-{version}-{digest}"


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One installer at a time (two test runs may start together)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _run(cmd: list[str], what: str, timeout: float) -> None:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise VenvUnavailable(f"{what} took over {timeout:.0f} s") from None
    except OSError as exc:
        raise VenvUnavailable(f"{what}: {exc}") from None
    if done.returncode != 0:
        lines = [line for line in (done.stderr or done.stdout).splitlines() if not line.startswith("WARNING:")]
        raise VenvUnavailable(f"{what} failed ({done.returncode}): {' | '.join(lines[-3:])[-400:]}")


def cached_venv(requirements: Path, name: str, version: str, timeout: float) -> Path:
    """The venv with `requirements` installed, made once; a venv without its sentinel (a broken install) is made
    anew. `timeout` bounds the pip install."""
    venv = venv_path(requirements, name, version)
    sentinel = venv / ".installed"
    if sentinel.exists():
        return venv
    with _locked(venv.with_name(venv.name + ".lock")):
        if sentinel.exists():  # another run finished it while we waited
            return venv
        shutil.rmtree(venv, ignore_errors=True)
        _run([sys.executable, "-m", "venv", str(venv)], "python -m venv", timeout)
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        _run([*pip, "-r", str(requirements)], f"pip install -r {requirements.name} ({name} {version})", timeout)
        sentinel.write_text(f"{version}\n")
    return venv


_HANDED_OUT: set[tuple[str, int]] = set()


def free_port(host: str) -> int:
    """A port free on host now (the kernel's pick for port 0), and never one this process was given before:
    the kernel may pick a just-released port again, and two services of one stack would then share it."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            port: int = s.getsockname()[1]
        if (host, port) not in _HANDED_OUT:
            _HANDED_OUT.add((host, port))
            return port


@dataclass
class HostProcess:
    """A program started in a session of its own, its output in `log`; stopped by its pid and its group."""

    url: str
    process: subprocess.Popen[bytes]
    log: Path
    _log_file: IO[bytes] = field(repr=False)
    _interrupt: int | None = field(default=None, repr=False)  # its stop, should the run be interrupted

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:]) if lines > 0 else ""

    def exited(self) -> bool:
        """Whether it has exited, without reaping it: its pid, and so its group id, stay ours until stop()."""
        if self.process.returncode is not None:
            return True
        try:
            return os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
        except ChildProcessError:
            return True

    def _signal(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(self.pid, sig)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)  # its own session: the group id is its pid

    def _wait(self, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while not self.exited():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM to the process and its process group, SIGKILL after grace seconds. Safe to call twice."""
        if self.process.returncode is None:
            if not self.exited():
                self._signal(signal.SIGTERM)
                if not self._wait(grace):
                    self._signal(signal.SIGKILL)
                    self._wait(grace)
            # Whatever is left in its group; it is not reaped yet, so the group id is still its own.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)
            self.process.wait(timeout=grace)
        self._log_file.close()
        if self._interrupt is not None:
            interrupt.done(self._interrupt)

    def __enter__(self) -> HostProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_process(cmd: list[str], env: dict[str, str], cwd: Path, log: Path, url: str) -> HostProcess:
    """Start cmd in a session of its own (so its group can be stopped whole), its output to log."""
    log_file = log.open("wb")
    try:
        process = subprocess.Popen(
            cmd,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    except BaseException:
        log_file.close()
        raise
    started = HostProcess(url=url, process=process, log=log, _log_file=log_file)
    started._interrupt = interrupt.on_interrupt(started.stop)
    return started


def http_status(url: str, timeout: float) -> int | None:
    """The status a GET of url answers with, None when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            status: int = response.status
            return status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (OSError, ValueError):
        return None
