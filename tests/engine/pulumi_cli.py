"""A real Pulumi engine for the suite, as an operator's workstation has one: the CLI (with its Python language
host) on PATH, and the three providers at exactly requirements.txt's pins among its plugins ($PULUMI_HOME, else
~/.pulumi). Nothing here installs or downloads any of it; where it is missing, the tests say so in one line.

Each project is a copy of the program in a temporary directory (its venv linked to ./venv, which Pulumi.yaml
names), with a file backend and a passphrase there: the stacks, their state and their secrets never touch the
operator's own.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REQUIREMENTS = Path(__file__).resolve().parents[2] / "requirements.txt"
PROVIDERS = ("docker", "command", "random")
# What the program needs of the project, copied (the venv is linked, never copied).
PROGRAM = ("__main__.py", "Pulumi.yaml", "requirements.txt", "components", "monitoring", "data", "policy")
PASSPHRASE = "rocm-inference-engine-tests"
NAMESPACE = "rocm-inference"


class EngineMissing(Exception):
    """Why the real engine cannot run here: the one line the pulumi_engine tests are skipped with."""


def pinned_plugins(requirements: Path = REQUIREMENTS) -> dict[str, str]:
    """The provider versions the Python SDKs in requirements.txt pin (pulumi-docker==5.2.0 -> docker: 5.2.0)."""
    pins = {}
    for line in requirements.read_text().splitlines():
        m = re.match(r"pulumi-(\w+)==([\w.]+)", line.strip())
        if m and m.group(1) in PROVIDERS:
            pins[m.group(1)] = m.group(2)
    return pins


@dataclass(frozen=True)
class Cli:
    binary: Path
    version: str
    plugins: dict[str, str]  # resource provider -> version

    def describe(self) -> str:
        return f"pulumi {self.version} ({self.binary}); " + ", ".join(
            f"{n} {v}" for n, v in sorted(self.plugins.items())
        )


def find_cli(pins: Mapping[str, str] | None = None) -> Cli:
    """The CLI on PATH and its resource plugins, when they are exactly the pins; else EngineMissing."""
    pins = dict(pins or pinned_plugins())
    binary = shutil.which("pulumi")
    if binary is None:
        raise EngineMissing("no Pulumi CLI on PATH (the real-engine tests need pulumi and its plugins installed)")
    host = shutil.which("pulumi-language-python") or (
        str(Path(binary).parent / "pulumi-language-python")
        if (Path(binary).parent / "pulumi-language-python").exists()
        else None
    )
    if host is None:
        raise EngineMissing(f"{binary} has no pulumi-language-python beside it or on PATH")
    env = {**os.environ, "PULUMI_SKIP_UPDATE_CHECK": "true"}
    version = subprocess.run([binary, "version"], capture_output=True, text=True, env=env, timeout=60)
    listed = subprocess.run([binary, "plugin", "ls", "--json"], capture_output=True, text=True, env=env, timeout=60)
    if version.returncode != 0 or listed.returncode != 0:
        raise EngineMissing(f"{binary} does not run: {(version.stderr or listed.stderr).strip()[:200]}")
    have: dict[str, set[str]] = {}
    for p in json.loads(listed.stdout or "[]") or []:
        if p.get("kind") == "resource":
            have.setdefault(p["name"], set()).add(str(p.get("version", "")).lstrip("v"))
    wrong = [
        f"{name} {want} (installed: {', '.join(sorted(have.get(name, ()))) or 'none'})"
        for name, want in sorted(pins.items())
        if want not in have.get(name, set())
    ]
    if wrong:
        home = os.environ.get("PULUMI_HOME", "~/.pulumi")
        raise EngineMissing(
            f"the Pulumi plugins in {home} are not requirements.txt's pins: {'; '.join(wrong)} "
            "(offline, the engine would try to download them)"
        )
    return Cli(Path(binary), version.stdout.strip().lstrip("v"), {n: pins[n] for n in pins})


@dataclass(frozen=True)
class EngineStep:
    """One step of `pulumi preview --json`: its op and the resource's name and type (from its URN)."""

    op: str
    name: str
    type: str

    @staticmethod
    def of(step: Mapping[str, Any]) -> EngineStep:
        urn = str(step["urn"])
        name = urn.rsplit("::", 1)[-1]
        kind = urn.rsplit("::", 2)[-2].rsplit("$", 1)[-1]
        return EngineStep(str(step["op"]), name, kind)


def events_steps(stream: str) -> list[EngineStep]:
    """The steps of a stream of engine events, in its order (one `resourcePreEvent` per step)."""
    steps = []
    for line in stream.splitlines():
        event = json.loads(line) if line.startswith("{") else {}
        pre = event.get("resourcePreEvent")
        if pre:
            steps.append(EngineStep.of(pre["metadata"]))
    return steps


class PulumiFailed(Exception):
    pass


@dataclass
class Project:
    """The program copied into `root`/program, its state under `root`/state."""

    cli: Cli
    root: Path
    source: Path
    log: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.program = self.root / "program"
        self.copy_program(self.source)
        (self.root / "state").mkdir(parents=True, exist_ok=True)

    def copy_program(self, source: Path) -> None:
        """The program of `source` (a checkout), replacing any before it; stack files stay."""
        self.program.mkdir(parents=True, exist_ok=True)
        for name in PROGRAM:
            src, dst = source / name, self.program / name
            if dst.is_dir():
                shutil.rmtree(dst)
            if src.is_dir():
                shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            elif src.exists():
                shutil.copy2(src, dst)
        venv = self.program / "venv"
        if not venv.exists():
            venv.symlink_to(self.source_venv())

    def source_venv(self) -> Path:
        return REQUIREMENTS.parent / "venv"

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PULUMI_", "DOCKER_")) and k != "SSH_AUTH_SOCK"}
        if "PULUMI_HOME" in os.environ:
            env["PULUMI_HOME"] = os.environ["PULUMI_HOME"]
        env["PATH"] = f"{self.cli.binary.parent}{os.pathsep}{env.get('PATH', '')}"
        return env | {
            "PULUMI_BACKEND_URL": f"file://{self.root / 'state'}",
            "PULUMI_CONFIG_PASSPHRASE": PASSPHRASE,
            "PULUMI_SKIP_UPDATE_CHECK": "true",
            "PULUMI_DIY_BACKEND_NO_LEGACY_WARNING": "true",
            "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
            "PULUMI_IGNORE_AMBIENT_PLUGINS": "true",
            "PULUMI_SKIP_CONFIRMATIONS": "true",
            "NO_COLOR": "1",
        }

    def pulumi(
        self,
        *args: str,
        stack: str | None = None,
        check: bool = True,
        timeout: float = 600,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.cli.binary), *args, "--non-interactive", *(["--stack", stack] if stack else [])]
        started = time.monotonic()
        done = subprocess.run(
            cmd, cwd=self.program, capture_output=True, text=True, env=self.env | dict(env or {}), timeout=timeout
        )
        self.log.append(f"pulumi {' '.join(args)} [{stack}] -> {done.returncode} in {time.monotonic() - started:.1f} s")
        if check and done.returncode != 0:
            raise PulumiFailed(
                f"pulumi {' '.join(args)} (stack {stack}) exited {done.returncode}:\n"
                f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
            )
        return done

    def stack(self, name: str, values: Mapping[str, Any], secrets: Mapping[str, str]) -> Stack:
        self.pulumi("stack", "init", name, "--secrets-provider", "passphrase")
        s = Stack(self, name)
        s.write(values)
        for key, value in secrets.items():
            s.set_secret(key, value)
        return s


@dataclass
class Stack:
    project: Project
    name: str

    @property
    def file(self) -> Path:
        return self.project.program / f"Pulumi.{self.name}.yaml"

    def write(self, values: Mapping[str, Any]) -> None:
        """The stack file's plain values as given; its secrets and encryption salt stay."""
        doc = yaml.safe_load(self.file.read_text()) if self.file.exists() else {}
        doc = doc or {}
        config = {k: v for k, v in (doc.get("config") or {}).items() if isinstance(v, dict) and "secure" in v}
        doc["config"] = {f"rocm-inference:{k}": v for k, v in values.items()} | config
        self.file.write_text(yaml.safe_dump(doc, sort_keys=False))

    def set_secret(self, key: str, value: str) -> None:
        self.project.pulumi("config", "set", "--secret", f"rocm-inference:{key}", value, stack=self.name)

    def run(
        self, *args: str, check: bool = True, timeout: float = 600, env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return self.project.pulumi(*args, stack=self.name, check=check, timeout=timeout, env=env)

    def preview(self) -> list[EngineStep]:
        """The engine's steps for the stack as it is now, in the order the engine takes them: each step's
        event, as `pulumi preview --json` streams them with PULUMI_ENABLE_STREAMING_JSON_PREVIEW (its summary
        folds a replacement's delete and create into one `replace`, which hides whether the old one goes first)."""
        done = self.run("preview", "--json", check=False, env={"PULUMI_ENABLE_STREAMING_JSON_PREVIEW": "true"})
        if done.returncode != 0:
            raise PulumiFailed(
                f"pulumi preview exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-2000:]}"
            )
        return events_steps(done.stdout)

    def up(self, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return self.run("up", "--yes", "--skip-preview", check=check, timeout=timeout)

    def refresh(self) -> subprocess.CompletedProcess[str]:
        return self.run("refresh", "--yes", "--skip-preview")

    def destroy(self) -> subprocess.CompletedProcess[str]:
        return self.run("destroy", "--yes", "--skip-preview")

    def outputs(self) -> dict[str, Any]:
        out: dict[str, Any] = json.loads(self.run("stack", "output", "--json", "--show-secrets").stdout)
        return out

    def export(self) -> dict[str, Any]:
        out: dict[str, Any] = json.loads(self.run("stack", "export").stdout)
        return out

    def resources(self) -> list[dict[str, Any]]:
        deployment = self.export().get("deployment", {})
        return list(deployment.get("resources") or [])


# --------------------------------------------------------------------------- the engine's steps and the plan's


@dataclass(frozen=True)
class Effect:
    """What a change does to one resource, in the words both sides share: create, update, replace (delete
    first or not), delete, refused, moved (a provider change alone)."""

    kind: str
    delete_first: bool = False

    def __str__(self) -> str:
        return self.kind + (" (delete first)" if self.kind == "replace" and self.delete_first else "")


ENGINE_REPLACE = {"replace", "create-replacement", "delete-replaced", "discard-replaced"}


def engine_effects(steps: Sequence[EngineStep]) -> dict[str, Effect]:
    """By resource name: the effect of the engine's steps (`same`, `read` and `refresh` are none)."""
    ops: dict[str, list[str]] = {}
    for s in steps:
        # the plan's steps are the custom resources': a component's (its type in the project's namespace) and
        # the stack's own are the engine's bookkeeping
        if s.op in ("same", "read", "refresh") or s.type.startswith(("pulumi:pulumi:Stack", f"{NAMESPACE}:")):
            continue
        ops.setdefault(s.name, []).append(s.op)
    out = {}
    for name, seen in ops.items():
        if ENGINE_REPLACE & set(seen):
            first = "delete-replaced" in seen and (
                "create-replacement" not in seen or seen.index("delete-replaced") < seen.index("create-replacement")
            )
            out[name] = Effect("replace", first)
        else:
            out[name] = Effect(seen[0])
    return out


def plan_effects(steps: Sequence[Mapping[str, str]]) -> dict[str, Effect]:
    """By resource name: the effect of `plan --against`'s steps (the review's step_ops)."""
    ops: dict[str, list[str]] = {}
    for s in steps:
        ops.setdefault(s["name"], []).append(s["op"])
    out = {}
    for name, seen in ops.items():
        gone = [o for o in seen if o in ("delete", "forgotten")]
        if gone and "create" in seen:
            out[name] = Effect("replace", seen.index(gone[0]) < seen.index("create"))
        elif gone:
            out[name] = Effect("delete")
        elif "unapplied" in seen or "update" in seen:
            out[name] = Effect("update")
        else:
            out[name] = Effect(seen[0])
    return out


def delete_order(names: Sequence[str], deletes: set[str]) -> list[str]:
    return [n for n in names if n in deletes]


def side_by_side(engine: Mapping[str, Effect], plan: Mapping[str, Effect]) -> list[str]:
    """One line per resource either side touches: the engine's effect, the plan's, and `!=` where they differ."""
    lines = []
    for name in sorted(set(engine) | set(plan)):
        e, p = engine.get(name), plan.get(name)
        mark = "   " if e == p else "!= "
        lines.append(f"{mark}{name:34} engine: {str(e) if e else '-':24} plan: {str(p) if p else '-'}")
    return lines
