"""The real llama.cpp `llama-server` and `rpc-server`, built once from the pinned llama-cpp-python sdist.

PyPI's llama-cpp-python sdist carries llama.cpp's source (vendor/llama.cpp, tools/server included). The build is
CMake on the CPU backend with the RPC backend (two `rpc-server`s on loopback stand for two devices), offline: the
web UI neither built with npm nor downloaded (LLAMA_BUILD_UI / LLAMA_USE_PREBUILT_UI, vendor/llama.cpp
CMakeLists.txt:137-138 and tools/ui/CMakeLists.txt), no OpenSSL (LLAMA_OPENSSL, CMakeLists.txt:144), only the two
targets (`llama-server`, and `ggml-rpc-server`: tools/rpc/CMakeLists.txt:1), at `nice` with two jobs. The binaries
and the vendored commit go to `<cache>/llama-cpp-<version>/`, made once; a directory without its sentinel (a build
cut short) is made anew. The first build takes about half an hour on two cores; it is outside the warm test time.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tests.engine.hostproc import (
    HostProcess,
    VenvUnavailable,
    _locked,
    cache_dir,
    http_status,
    pinned_version,
    start_process,
)
from tests.engine.hostproc import free_port as free_port

REQUIREMENTS = Path(__file__).resolve().parent / "llama-cpp-requirements.txt"
VERSION: str = pinned_version(REQUIREMENTS, "llama-cpp-python")
BUILD_TIMEOUT = 7200.0
CMAKE_OPTIONS = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DBUILD_SHARED_LIBS=OFF",
    "-DGGML_NATIVE=OFF",
    "-DGGML_RPC=ON",
    "-DLLAMA_BUILD_UI=OFF",
    "-DLLAMA_USE_PREBUILT_UI=OFF",
    "-DLLAMA_OPENSSL=OFF",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
)
TARGETS = ("llama-server", "ggml-rpc-server")

# Why the build cannot be had here (no registry, no cmake or compiler, the build failed): tests skip with this line.
BuildUnavailable = VenvUnavailable


class ServerFailed(Exception):
    """llama-server was built but did not come up: its exit or a timeout, with the tail of its log."""


@dataclass(frozen=True)
class Build:
    server: Path
    rpc_server: Path
    commit: str  # the vendored llama.cpp commit


def build_dir() -> Path:
    return cache_dir() / f"llama-cpp-{VERSION}"


def _run(cmd: list[str], what: str, cwd: Path | None = None, timeout: float = BUILD_TIMEOUT) -> None:
    try:
        done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise BuildUnavailable(f"{what} took over {timeout:.0f} s") from None
    except OSError as exc:
        raise BuildUnavailable(f"{what}: {exc}") from None
    if done.returncode != 0:
        tail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-3:])[-400:]
        raise BuildUnavailable(f"{what} failed ({done.returncode}): {tail}")


def vendored_commit(source: Path) -> str:
    """The commit of the sdist's vendor/llama.cpp: its .git file names a git dir whose HEAD is the commit."""
    gitfile = source / "vendor" / "llama.cpp" / ".git"
    try:
        gitdir = gitfile.read_text().split("gitdir:", 1)[1].strip()
        head = (gitfile.parent / gitdir / "HEAD").resolve().read_text().strip()
    except (OSError, IndexError):
        return "unknown"
    return head if len(head) == 40 else "unknown"


def _compile(work: Path, out: Path) -> None:
    for tool in ("cmake", "c++"):
        if shutil.which(tool) is None:
            raise BuildUnavailable(f"building llama.cpp needs {tool} on PATH")
    pip = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--no-deps"]
    _run([*pip, "--no-binary", ":all:", f"llama-cpp-python=={VERSION}", "-d", str(work)], "pip download", timeout=600)
    sdists = sorted(work.glob("llama_cpp_python-*.tar.gz"))
    if not sdists:
        raise BuildUnavailable(f"pip download left no llama-cpp-python {VERSION} sdist")
    with tarfile.open(sdists[0]) as tar:
        tar.extractall(work, filter="data")
    source = work / sdists[0].name.removesuffix(".tar.gz")
    generator = ["-G", "Ninja"] if shutil.which("ninja") else []
    build = work / "build"
    nice = ["nice", "-n", "10"] if shutil.which("nice") else []
    cmake_src = str(source / "vendor" / "llama.cpp")
    _run([*nice, "cmake", "-S", cmake_src, "-B", str(build), *generator, *CMAKE_OPTIONS], "cmake configure")
    _run([*nice, "cmake", "--build", str(build), "-j", "2", "--target", *TARGETS], "cmake --build")
    (out / "bin").mkdir(parents=True, exist_ok=True)
    shutil.copy2(build / "bin" / "llama-server", out / "bin" / "llama-server")
    shutil.copy2(build / "bin" / "ggml-rpc-server", out / "bin" / "rpc-server")
    (out / "commit").write_text(vendored_commit(source) + "\n")


def llama_cpp() -> Build:
    """The pinned build, made on first use. Raises BuildUnavailable with the reason."""
    out = build_dir()
    sentinel = out / ".installed"
    if not sentinel.exists():
        with _locked(out.with_name(out.name + ".lock")):
            if not sentinel.exists():
                shutil.rmtree(out, ignore_errors=True)
                out.mkdir(parents=True)
                started = time.monotonic()
                with tempfile.TemporaryDirectory(prefix="llama-cpp-build-") as work:
                    _compile(Path(work), out)
                sentinel.write_text(f"{VERSION} built in {time.monotonic() - started:.0f} s\n")
    return Build(out / "bin" / "llama-server", out / "bin" / "rpc-server", (out / "commit").read_text().strip())


def build_or_skip() -> Build:
    """The build for a test: skipped with the reason where it cannot be had, failed where the run requires it."""
    import pytest

    try:
        return llama_cpp()
    except BuildUnavailable as exc:
        if os.environ.get("ROCM_INFERENCE_REQUIRE_ENGINE"):
            pytest.fail(f"llama.cpp is needed and cannot be built: {exc}")
        pytest.skip(f"llama.cpp cannot be built here: {exc}")


PASSED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")


def _env() -> dict[str, str]:
    env = {key: os.environ[key] for key in PASSED_ENV if key in os.environ}
    env["LLAMA_OFFLINE"] = "1"
    return env


def start_rpc_server(build: Build, host: str, workdir: Path, name: str, timeout: float = 20) -> HostProcess:
    """An rpc-server on host:<free port>, one CPU thread: a device llama-server reaches as RPC[host:port]."""
    port = free_port(host)
    workdir.mkdir(parents=True, exist_ok=True)
    cmd = [str(build.rpc_server), "-H", host, "-p", str(port), "-t", "1"]
    proc = start_process(cmd, _env(), workdir, workdir / f"{name}.log", f"{host}:{port}")
    deadline = time.monotonic() + timeout
    import socket

    while True:
        if proc.exited():
            proc.stop()
            raise ServerFailed(f"rpc-server exited with {proc.process.returncode}:\n{proc.log_tail()}")
        try:
            with socket.create_connection((host, port), timeout=1):
                return proc
        except OSError:
            pass
        if time.monotonic() > deadline:
            proc.stop()
            raise ServerFailed(f"rpc-server did not listen on {host}:{port} within {timeout:.0f} s")
        time.sleep(0.05)


def run_server(build: Build, args: list[str], host: str, workdir: Path, timeout: float = 60) -> tuple[bool, str]:
    """Start llama-server with args on host:<free port>, wait until /health answers 200 (True) or it exits
    (False), stop it, and return the verdict with its log."""
    port = free_port(host)
    workdir.mkdir(parents=True, exist_ok=True)
    cmd = [str(build.server), *args, "--host", host, "--port", str(port), "-t", "1", "--no-warmup", "-lv", "4"]
    proc = start_process(cmd, _env(), workdir, workdir / "llama-server.log", f"http://{host}:{port}")
    deadline = time.monotonic() + timeout
    try:
        while True:
            if proc.exited():
                return False, proc.log.read_text(errors="replace")
            if http_status(f"{proc.url}/health", timeout=2) == 200:
                return True, proc.log.read_text(errors="replace")
            if time.monotonic() > deadline:
                raise ServerFailed(f"llama-server was not ready within {timeout:.0f} s:\n{proc.log_tail()}")
            time.sleep(0.1)
    finally:
        proc.stop()
