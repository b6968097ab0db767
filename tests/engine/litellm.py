"""The real LiteLLM proxy as a host process, for tests that put a LiteLLM gateway in front of stub backends.

LiteLLM is never installed into ./venv (that venv goes to operators' machines): the pins in
litellm-requirements.txt beside this file go into a venv of their own under the user's cache,
made once per version and requirements file (tests/engine/hostproc.py). The proxy runs offline (its cost map, beta headers
and the like from the package itself), in a session of its own, and is stopped by its pid.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from tests.engine.hostproc import (
    HostProcess,
    VenvUnavailable,
    cached_venv,
    http_status,
    pinned_version,
    start_process,
)
from tests.engine.hostproc import free_port as free_port  # the engine tests' ports come from here too
from tests.engine.hostproc import venv_path as _venv_path

REQUIREMENTS = Path(__file__).resolve().parent / "litellm-requirements.txt"
PIP_TIMEOUT = 1200.0  # a cold install downloads ~300 MB of wheels; about 90 s here

# Why the proxy cannot be installed here (no package registry, no venv module): tests skip with this line.
ProxyUnavailable = VenvUnavailable


class ProxyFailed(Exception):
    """The proxy was installed but did not come up: its exit or a timeout, with the tail of its log."""


LITELLM_VERSION: str = pinned_version(REQUIREMENTS, "litellm")


def venv_path() -> Path:
    return _venv_path(REQUIREMENTS, "litellm", LITELLM_VERSION)


def proxy_venv() -> Path:
    """The venv with the pinned proxy, made once; a venv without its sentinel (a broken install) is made anew."""
    return cached_venv(REQUIREMENTS, "litellm", LITELLM_VERSION, PIP_TIMEOUT)


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


# The proxy as a host process: stop() ends it and its process group.
Proxy = HostProcess


def start_proxy(
    config: Mapping[str, Any], env: Mapping[str, str], host: str, port: int, workdir: Path, timeout: float = 60
) -> Proxy:
    """Start `litellm --config` on host:port and wait until /health/readiness answers 200 (it needs no key)."""
    litellm = proxy_venv() / "bin" / "litellm"
    workdir.mkdir(parents=True, exist_ok=True)
    config_file = workdir / "litellm-config.yaml"
    config_file.write_text(yaml.safe_dump(dict(config), sort_keys=False))
    full_env = {key: os.environ[key] for key in PASSED_ENV if key in os.environ}
    full_env.update(OFFLINE_ENV)
    full_env.update(env)
    cmd = [str(litellm), "--config", str(config_file), "--host", host, "--port", str(port)]
    proxy = start_process(cmd, full_env, workdir, workdir / "litellm.log", f"http://{host}:{port}")
    deadline = time.monotonic() + timeout
    while True:
        if proxy.exited():
            proxy.stop()
            raise ProxyFailed(
                f"litellm exited with {proxy.process.returncode} before it was ready:\n{proxy.log_tail()}"
            )
        if http_status(f"{proxy.url}/health/readiness", timeout=2) == 200:
            return proxy
        if time.monotonic() > deadline:
            proxy.stop()
            raise ProxyFailed(f"litellm was not ready on {proxy.url} within {timeout:.0f} s:\n{proxy.log_tail()}")
        time.sleep(0.2)
