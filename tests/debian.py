"""Debian packages the tests run for real (promtool, node-exporter): found on PATH, or installed with apt-get.

tests/engine/dockerd.py installs its packages here too. Installing needs root and apt-get; without them the caller
skips (or fails, where the run requires the tools) with the reason. Package maintainer scripts are kept
from starting services while installing (a policy-rc.d that denies, only if the machine has none), so a
systemd machine does not get a Prometheus on :9090 or a node-exporter on :9100 as a side effect.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

POLICY_RC_D = Path("/usr/sbin/policy-rc.d")


class PackageUnavailable(Exception):
    """Why a Debian package's binary cannot be had here (no root, no apt-get, install failed)."""


LOCK = Path("/tmp/rocm-inference-apt.lock")


def install(packages: Sequence[str]) -> None:
    """apt-get install these packages, one installer at a time (the test workers run side by side)."""
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise PackageUnavailable(f"installing Debian's {', '.join(packages)} needs root and apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    with LOCK.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        guard = not POLICY_RC_D.exists()
        if guard:
            POLICY_RC_D.write_text(
                "#!/bin/sh\n# written by rocm-inference's tests while installing packages\nexit 101\n"
            )
            POLICY_RC_D.chmod(0o755)
        try:
            for cmd in (
                ["apt-get", "update", "-qq"],
                ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages],
            ):
                done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
                if done.returncode != 0:
                    raise PackageUnavailable(
                        f"{' '.join(cmd[:2])} {' '.join(packages)} failed: {done.stderr.strip()[-200:]}"
                    )
        finally:
            if guard:
                POLICY_RC_D.unlink(missing_ok=True)
            fcntl.flock(lock, fcntl.LOCK_UN)


def ensure_binary(binary: str, package: str) -> str:
    """The path of `binary`; when it is missing, install Debian's `package` first."""
    found = shutil.which(binary)
    if found is not None:
        return found
    install([package])
    found = shutil.which(binary)
    if found is None:
        raise PackageUnavailable(f"Debian's {package} installed, but {binary} is not on PATH")
    return found


def tool(binary: str, package: str) -> str:
    """`binary` for a test: installed when missing; the test is skipped with the reason when it cannot be,
    or fails where the run requires the tools (ROCM_INFERENCE_REQUIRE_ENGINE, as CI sets)."""
    import pytest

    try:
        return ensure_binary(binary, package)
    except PackageUnavailable as exc:
        if os.environ.get("ROCM_INFERENCE_REQUIRE_ENGINE"):
            pytest.fail(f"{binary} is needed and cannot be installed: {exc}")
        pytest.skip(f"{binary} cannot be installed here: {exc}")
