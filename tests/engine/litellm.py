"""The real LiteLLM proxy as a host process, for tests that put a LiteLLM gateway in front of stub backends.

LiteLLM is never installed into ./venv (that venv goes to operators' machines): the pins in
litellm-requirements.txt beside this file go into a venv of their own under the user's cache,
made once per version and requirements file. The proxy runs offline (its cost map, beta headers
and the like from the package itself), in a session of its own, and is stopped by its pid.
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
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import yaml

REQUIREMENTS = Path(__file__).resolve().parent / "litellm-requirements.txt"
PIP_TIMEOUT = 1200.0  # a cold install downloads ~300 MB of wheels; about 90 s here


class ProxyUnavailable(Exception):
    """Why the proxy cannot be installed here (no package registry, no venv module): tests skip with this line."""


class ProxyFailed(Exception):
    """The proxy was installed but did not come up: its exit or a timeout, with the tail of its log."""


def _litellm_version(requirements: Path) -> str:
    for line in requirements.read_text().splitlines():
        spec = line.split("#", 1)[0].strip()
        name, sep, version = spec.partition("==")
        if sep and name.split("[", 1)[0].strip().lower() == "litellm":
            return version.strip()
    raise ValueError(f"{requirements} pins no litellm==VERSION")


LITELLM_VERSION: str = _litellm_version(REQUIREMENTS)


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "rocm-inference"


def venv_path() -> Path:
    digest = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()[:12]
    return cache_dir() / f"litellm-{LITELLM_VERSION}-{digest}"


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


def _run(cmd: list[str], what: str) -> None:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise ProxyUnavailable(f"{what} took over {PIP_TIMEOUT:.0f} s") from None
    except OSError as exc:
        raise ProxyUnavailable(f"{what}: {exc}") from None
    if done.returncode != 0:
        lines = [line for line in (done.stderr or done.stdout).splitlines() if not line.startswith("WARNING:")]
        raise ProxyUnavailable(f"{what} failed ({done.returncode}): {' | '.join(lines[-3:])[-400:]}")


def proxy_venv() -> Path:
    """The venv with the pinned proxy, made once; a venv without its sentinel (a broken install) is made anew."""
    venv = venv_path()
    sentinel = venv / ".installed"
    if sentinel.exists():
        return venv
    with _locked(venv.with_name(venv.name + ".lock")):
        if sentinel.exists():  # another run finished it while we waited
            return venv
        shutil.rmtree(venv, ignore_errors=True)
        _run([sys.executable, "-m", "venv", str(venv)], "python -m venv")
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        _run([*pip, "-r", str(REQUIREMENTS)], f"pip install litellm[proxy]=={LITELLM_VERSION}")
        sentinel.write_text(f"{LITELLM_VERSION}\n")
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


# No internet: the proxy reads its bundled copies instead of fetching them at start or on a request.
OFFLINE_ENV = {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS": "True",
    "LITELLM_LOCAL_POLICY_TEMPLATES": "True",
    "LITELLM_LOCAL_BLOG_POSTS": "True",
    "LITELLM_LOCAL_AUTOROUTER_PRESETS": "True",
    "LITELLM_DONT_SHOW_FEEDBACK_BOX": "True",
    "LITELLM_TELEMETRY": "False",  # --telemetry is a no-op on this version; kept for older ones
    "DISABLE_SCHEMA_UPDATE": "True",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "DO_NOT_TRACK": "1",
}
PASSED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SSL_CERT_FILE", "XDG_CACHE_HOME")


@dataclass
class Proxy:
    url: str
    process: subprocess.Popen[bytes]
    log: Path
    _log_file: IO[bytes] = field(repr=False)

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
        """Whether the proxy has exited, without reaping it: its pid, and so its group id, stay ours until stop()."""
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
        """SIGTERM to the proxy and its process group, SIGKILL after grace seconds. Safe to call twice."""
        if self.process.returncode is None:
            if not self.exited():
                self._signal(signal.SIGTERM)
                if not self._wait(grace):
                    self._signal(signal.SIGKILL)
                    self._wait(grace)
            # Whatever is left in its group; the proxy is not reaped yet, so the group id is still its own.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)
            self.process.wait(timeout=grace)
        self._log_file.close()

    def __enter__(self) -> Proxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _status(url: str, timeout: float) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            status: int = response.status
            return status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (OSError, ValueError):
        return None


def start_proxy(
    config: Mapping[str, Any], env: Mapping[str, str], host: str, port: int, workdir: Path, timeout: float = 60
) -> Proxy:
    """Start `litellm --config` on host:port and wait until /health/readiness answers 200 (it needs no key)."""
    litellm = proxy_venv() / "bin" / "litellm"
    workdir.mkdir(parents=True, exist_ok=True)
    config_file = workdir / "litellm-config.yaml"
    config_file.write_text(yaml.safe_dump(dict(config), sort_keys=False))
    log = workdir / "litellm.log"
    log_file = log.open("wb")
    full_env = {key: os.environ[key] for key in PASSED_ENV if key in os.environ}
    full_env.update(OFFLINE_ENV)
    full_env.update(env)
    cmd = [str(litellm), "--config", str(config_file), "--host", host, "--port", str(port)]
    process = subprocess.Popen(
        cmd,
        cwd=workdir,
        env=full_env,
        stdin=subprocess.DEVNULL,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    proxy = Proxy(url=f"http://{host}:{port}", process=process, log=log, _log_file=log_file)
    deadline = time.monotonic() + timeout
    while True:
        if proxy.exited():
            proxy.stop()
            raise ProxyFailed(f"litellm exited with {process.returncode} before it was ready:\n{proxy.log_tail()}")
        if _status(f"{proxy.url}/health/readiness", timeout=2) == 200:
            return proxy
        if time.monotonic() > deadline:
            proxy.stop()
            raise ProxyFailed(f"litellm was not ready on {proxy.url} within {timeout:.0f} s:\n{proxy.log_tail()}")
        time.sleep(0.2)
