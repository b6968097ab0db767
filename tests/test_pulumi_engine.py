"""The real Pulumi engine on the suite's private Docker engines: `pulumi preview`, `up`, `refresh` and `destroy` of
the shipped stacks, and for each day-two change the engine's steps against `plan --against`'s.

Where a Pulumi CLI and the three providers at requirements.txt's pins are installed (tests/engine/pulumi_cli.py);
elsewhere the module is skipped with one line. Each stack's deployment is made once and changed step by step:
the tests run in file order and each takes the deployment as the one before left it.

The engines stand for the hosts: each dockerd in a mount namespace of its own with the stack's GPU nodes made
there, its own bridge, and the stacks' addresses on those bridges; every image the stacks pin is a stub under its
catalog name (tests/engine/dockerd.py). Where the engine and the plan disagree, the engine is right: the
difference is a defect of components/planning/steps.py.
"""

from __future__ import annotations

import contextlib
import json
import re
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from components.settings import read_stack_file
from components.tools.plan import plan_stack
from components.tools.planned import Plan
from components.tools.review import diff
from tests.conftest import ROOT, shipped_plan
from tests.engine.dockerd import Bridge, Engine, import_stub, running_engine, stub_entrypoint
from tests.engine.hostproc import HostProcess, VenvUnavailable, free_port
from tests.engine.open_webui import start_ui
from tests.engine.pulumi_cli import (
    Cli,
    EngineMissing,
    EngineStep,
    Project,
    Stack,
    engine_effects,
    find_cli,
    plan_effects,
    side_by_side,
)
from tests.stacks import set_key, values_of

pytestmark = [pytest.mark.pulumi_engine, pytest.mark.xdist_group("engine")]

try:
    CLI: Cli = find_cli()
except EngineMissing as exc:
    pytest.skip(str(exc), allow_module_level=True)

SINGLE_SECRETS = {"vllm_api_key": "vk-pe-3b1f0c9e", "embeddings_api_key": "ek-pe-77a2d4c0", "hf_token": "hf_pe_stub1"}
FLEET_SECRETS = {"gateway_api_key": "sk-pe-fleet-77b3", "hf_token": "hf_pe_stub2"}
# The engines' bridges and address pools: none that tests/test_engine*.py use (10.231.x, 10.232.x).
BRIDGES = {
    "one": Bridge("rip-br0", "10.233.0.1/24", "10.234.0.0/20"),
    "gpu-a": Bridge("rip-br1", "10.233.1.1/24", "10.234.16.0/20"),
    "gpu-b": Bridge("rip-br2", "10.233.2.1/24", "10.234.32.0/20"),
    "gpu-c": Bridge("rip-br3", "10.233.3.1/24", "10.234.48.0/20"),
}


def address(engine: str) -> str:
    return BRIDGES[engine].cidr.split("/")[0]


# --------------------------------------------------------------------------- what every test shares


@dataclass
class Record:
    """The engine's steps and the plan's for each operation, printed at the end of the module."""

    lines: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)


RECORD = Record()


@pytest.fixture(scope="module", autouse=True)
def report(pytestconfig: pytest.Config) -> Iterator[None]:
    capture = pytestconfig.pluginmanager.get_plugin("capturemanager")

    def say(lines: list[str]) -> None:
        with capture.global_and_fixture_disabled() if capture is not None else contextlib.nullcontext():
            print("\n".join(lines), flush=True)

    say([f"\nreal engine: {CLI.describe()}"])
    yield
    took = time.monotonic() - RECORD.started
    say(
        [f"\nreal engine: the engine's steps and the plan's, per operation ({took:.0f} s)", *RECORD.lines]
        + [f"   {line}" for project in PROJECTS for line in project.log]
    )


def gpu_nodes(values: dict[str, Any]) -> set[str]:
    hosts = values.get("hosts") or {"host": values["host"]}
    nodes = {"/dev/kfd"}
    for h in hosts.values():
        for g in h.get("gpus", []):
            nodes |= {f"/dev/dri/card{g['card']}", f"/dev/dri/renderD{g['render']}"}
    return nodes


def stub_images(engine: Engine, plan: Plan, host: str | None = None) -> None:
    """Every image this plan pins (on `host`'s provider, if given) as its stub."""
    for r in plan.of_type(":RemoteImage"):
        if host is None or r.options.get("provider") == f"{host}-docker":
            name = r.inputs["name"]
            if engine.docker("image", "inspect", name, check=False).returncode != 0:
                import_stub(engine, name, stub_entrypoint(name))


def distinct_stub(engine: Engine, name: str, like: str) -> None:
    """`like`'s stub as the image `name`, with an id of its own."""
    config = json.loads(engine.docker("image", "inspect", like, "--format", "{{json .Config}}").stdout)
    keep = [f"{key.upper()} {json.dumps(config[key])}" for key in ("Entrypoint", "Cmd") if config.get(key)]
    changes = [arg for change in (*keep, f"LABEL rocm-inference.stub={name}") for arg in ("--change", change)]
    engine.docker("import", *changes, str(engine.root / "stub.tar"), name)  # the tar import_stub wrote


def plan_of(stack: Stack) -> Plan:
    return plan_stack(read_stack_file(stack.file))


def containers(engine: Engine) -> dict[str, str]:
    """Name -> status (`running healthy`, `exited 0`, ...) of every container on this engine."""
    out = engine.docker("ps", "--all", "--format", "{{.Names}}").stdout.split()
    states = {}
    for name in out:
        s = json.loads(engine.docker("inspect", name, "--format", "{{json .State}}").stdout)
        health = (s.get("Health") or {}).get("Status", "")
        states[name] = f"{s['Status']} {health or s.get('ExitCode', '')}".strip()
    return states


def assert_healthy(*engines: Engine) -> None:
    for engine in engines:
        states = containers(engine)
        bad = {n: s for n, s in states.items() if s != "running healthy"}
        assert not bad, f"not running healthy on {engine.root}: {bad}"


def compare(what: str, stack: Stack, before: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """The engine's preview of the stack as it is now against `plan --against` (the plan `before`): both sides'
    effects by resource, recorded side by side."""
    steps = stack.preview()
    plan_diff = diff(before, plan_of(stack), "before").as_json()
    engine, plan = engine_effects(steps), plan_effects(plan_diff["step_ops"])
    lines = side_by_side(engine, plan)
    deletes_engine = [s.name for s in steps if s.op in ("delete", "delete-replaced")]
    deletes_plan = [s["name"] for s in plan_diff["step_ops"] if s["op"] in ("delete", "forgotten")]
    RECORD.lines += [f"-- {what} ({stack.name})", *lines]
    if deletes_engine or deletes_plan:
        RECORD.lines.append(f"   deletes, in order: engine {deletes_engine}; plan {deletes_plan}")
    return engine, plan, [f"{what}: {line}" for line in lines if line.startswith("!=")]


def creates_only(steps: list[EngineStep]) -> set[str]:
    assert {s.op for s in steps} <= {"create"}, sorted({s.op for s in steps})
    return {s.name for s in steps if not s.type.startswith("pulumi:pulumi:Stack")}


# --------------------------------------------------------------------------- single host: small-chat, big-chat


def single_values(stack: str, engine: Engine) -> dict[str, Any]:
    """The shipped stack on this engine: its address on the engine's bridge, free ports, healthchecks every
    second, no preflight (it reads the host's sysfs and /dev, which stand here for no GPU)."""
    ip = address("one")
    values = values_of(stack)
    values = set_key(values, "host.docker", f"unix://{engine.root}/docker.sock")
    values = set_key(values, "host.preflight", False)
    values = set_key(values, "host.address", ip)
    values = set_key(values, "host.bind", ip)
    for service in ("vllm", "embeddings", "chat_ui"):
        if service in values:
            values = set_key(values, f"{service}.port", free_port(ip))
            values = set_key(values, f"{service}.health_interval", 1)
    if "monitoring" in values:
        # Prometheus and Grafana publish on 127.0.0.1: never their well-known ports there
        values = set_key(values, "monitoring.prometheus_port", free_port("127.0.0.1"))
        values = set_key(values, "monitoring.grafana_port", free_port("127.0.0.1"))
        values = set_key(values, "monitoring.node_exporter_port", free_port(ip))
        values = set_key(values, "monitoring.health_interval", 1)
    return values


@pytest.fixture(scope="module")
def one() -> Iterator[Engine]:
    devices = gpu_nodes(values_of("big-chat")) | gpu_nodes(values_of("small-chat"))
    with running_engine("rip-one-", BRIDGES["one"], False, tuple(sorted(devices))) as engine:
        yield engine


PROJECTS: list[Project] = []


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    PROJECTS.append(Project(CLI, tmp_path_factory.mktemp("pulumi-engine"), ROOT))
    return PROJECTS[-1]


@pytest.fixture(scope="module")
def big_chat(project: Project, one: Engine, tmp_path_factory: pytest.TempPathFactory) -> Stack:
    values = single_values("big-chat", one)
    seed_chat_ui(one, values, tmp_path_factory.mktemp("seed-ui"))
    stack = project.stack("big-chat", values, SINGLE_SECRETS)
    stub_images(one, plan_of(stack))
    return stack


def test_preview_of_small_chat_creates_the_plans_resources(project: Project, one: Engine) -> None:
    stack = project.stack("small-chat", single_values("small-chat", one), SINGLE_SECRETS)
    plan = plan_of(stack)
    stub_images(one, plan)
    assert creates_only(stack.preview()) == {r.name for r in plan.resources}


def test_preview_of_big_chat_creates_the_plans_resources(big_chat: Stack) -> None:
    assert creates_only(big_chat.preview()) == {r.name for r in plan_of(big_chat).resources}


def test_up_of_big_chat_serves_then_a_second_up_and_a_refresh_change_nothing(big_chat: Stack, one: Engine) -> None:
    big_chat.up()
    assert_healthy(one)
    assert {s.op for s in big_chat.preview()} == {"same"}
    assert "created" not in big_chat.up().stdout.split("Resources:")[-1]
    assert big_chat.run("refresh", "--yes", "--skip-preview", "--expect-no-changes", check=False).returncode == 0
    assert_healthy(one)


DAY_TWO = [
    ("a model change", "vllm.model", "Qwen/Qwen2.5-7B-Instruct-AWQ"),
    ("an image tag", "vllm.image", "nalanzeyu/vllm-gfx906:v0.11.2-rocm6.3-b"),
    ("a health setting", "vllm.health_interval", 2),
    ("a container rename", "vllm.container_name", "vllm-main"),
]


@pytest.mark.parametrize(("what", "key", "value"), DAY_TWO, ids=[d[0] for d in DAY_TWO])
def test_a_day_two_change_takes_the_steps_the_plan_predicts(
    big_chat: Stack, one: Engine, what: str, key: str, value: Any
) -> None:
    before = plan_of(big_chat).as_json()
    values = set_key(read_values(big_chat), key, value)
    if key == "vllm.image":  # another tag is another image: its own id
        distinct_stub(one, value, values_of("big-chat")["vllm"]["image"])
    big_chat.write(values)
    stub_images(one, plan_of(big_chat))
    _, _, differences = compare(what, big_chat, before)
    big_chat.up()
    assert_healthy(one)
    assert differences == []


def test_a_token_rotation_takes_the_steps_the_plan_predicts(big_chat: Stack, one: Engine) -> None:
    before = plan_of(big_chat).as_json()
    big_chat.set_secret("hf_token", "hf_pe_rotated2")
    _, _, differences = compare("a token rotation", big_chat, before)
    big_chat.up()
    assert_healthy(one)
    assert differences == []


def wait_healthy(engine: Engine, name: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while containers(engine).get(name) != "running healthy":
        assert time.monotonic() < deadline, f"{name} is not healthy after {timeout:.0f} s: {containers(engine)}"
        time.sleep(0.5)


def server_name(stack: Stack) -> str:
    return str(read_values(stack)["vllm"].get("container_name", "vllm"))


def test_readmes_procedure_after_a_refresh_of_a_stopped_server_ends_with_no_change(
    big_chat: Stack, one: Engine
) -> None:
    """README: a refresh while a server is stopped records it stopped and with no ports; neither a later refresh
    nor `pulumi refresh --run-program` (the program plans its URLs, never reads ports back) reads them back once
    it runs healthy again, so the next `pulumi up` replaces the container, deleting it first (the server
    reloads), and only then does `pulumi preview --expect-no-changes` pass."""
    name = server_name(big_chat)
    one.docker("stop", "--time", "5", name)
    big_chat.refresh()
    one.docker("start", name)
    wait_healthy(one, name)
    big_chat.run("refresh", "--yes", "--skip-preview", "--run-program")
    steps = [(s.op, s.name) for s in big_chat.preview() if s.op != "same"]
    RECORD.lines += [f"-- README's procedure after a stopped server's refresh: {steps}"]
    assert steps == [
        ("delete-replaced", "vllm-container"),
        ("replace", "vllm-container"),
        ("create-replacement", "vllm-container"),
    ]
    big_chat.up()
    assert_healthy(one)
    assert big_chat.run("preview", "--expect-no-changes", check=False).returncode == 0


@pytest.mark.xfail(
    strict=True, reason="issue 26 defect 3: the refresh clears the initialization error and up accepts the server"
)
def test_a_health_wait_that_times_out_then_a_refresh_then_up_accepts_no_unhealthy_server(
    big_chat: Stack, one: Engine
) -> None:
    values = read_values(big_chat)
    broken = set_key(values, "vllm.environment", {"STUB_HEALTH": "503"})
    broken = set_key(broken, "vllm.startup_timeout", 60)
    big_chat.write(broken)
    try:
        failed = big_chat.up(check=False)
        assert failed.returncode != 0, "the health wait did not fail"
        big_chat.refresh()
        again = big_chat.up(check=False)
        state = containers(one).get(server_name(big_chat))
        RECORD.lines += [f"-- a health wait timed out, refresh, up: exit {again.returncode}, the server {state}"]
        assert again.returncode != 0 or state == "running healthy", "up accepted an unhealthy server"
    finally:
        big_chat.write(values)
    big_chat.up()
    assert_healthy(one)
    assert big_chat.run("preview", "--expect-no-changes", check=False).returncode == 0


# --------------------------------------------------------------------------- the chat page's admin, for real

# Where the real Open WebUI listens (an address of its own, a free port) and which address stands for the
# stack's services it would reach by container name (nothing answers there: signing in needs none).
UI_HOST, NOWHERE = "127.0.0.12", "127.0.0.13:9"
# Whether the program resets the admin's password at each deploy (issue 26 defect 4's fix).
HAS_ADMIN_RESET = any(r.name == "chat-ui-admin-reset" for r in shipped_plan("big-chat").resources)


def volume_dir(engine: Engine, volume: str) -> Path:
    """A local volume's directory on disk (the engine's data root is this machine's file system)."""
    return engine.root / "data" / "volumes" / volume / "_data"


def real_ui(env: dict[str, str], data: Path, work: Path) -> HostProcess:
    """The real Open WebUI on `data` (standing for the container on its volume): the image's environment
    (tests/test_chat_ui_browser.py LOCAL), the container's over it, the image's paths here."""
    from tests.test_chat_ui_browser import ADDRESSES, LOCAL, _moved

    port = free_port(UI_HOST)
    where = {"data": str(data), "home": str(work / "home"), "port": str(port), "chat": NOWHERE, "embeddings": NOWHERE}
    full = {name: local.value.format(**where) for name, local in LOCAL.items() if local.image}
    full |= {k: v for k, v in env.items() if k not in ("PATH", "HOME", "HOSTNAME", "DATA_DIR", "PORT")}
    for name in ADDRESSES & set(full):
        full[name] = _moved(full[name], NOWHERE)
    (work / "home").mkdir(parents=True, exist_ok=True)
    try:
        return start_ui(full, UI_HOST, port, work, None)
    except VenvUnavailable as exc:
        pytest.skip(f"the real Open WebUI cannot be installed here: {exc}")


def signs_in(ui: HostProcess, email: str, password: str) -> int:
    body = json.dumps({"email": email, "password": password}).encode()
    request = urllib.request.Request(
        f"{ui.url}/api/v1/auths/signin", body, {"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return int(r.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def seed_chat_ui(engine: Engine, values: dict[str, Any], work: Path) -> None:
    """The chat page's data volume as an earlier deployment left it: the real Open WebUI's database with the
    admin and a password of its own (what a destroy keeps). The stack's first `up` then finds an admin."""
    chat = values["chat_ui"]
    volume = chat.get("data_volume", "open-webui-data")
    engine.docker("volume", "create", volume)
    env = {
        "WEBUI_ADMIN_EMAIL": chat["admin_email"],
        "WEBUI_ADMIN_PASSWORD": "an-earlier-password-1",
        "WEBUI_SECRET_KEY": "k",
    }
    real_ui(env, volume_dir(engine, volume), work).stop()


@dataclass(frozen=True)
class Redeployed:
    """big-chat destroyed and deployed again, after the container rename above: what the engine had before and
    after."""

    cache_before: str
    cache_after: str
    new_volumes: set[str]
    outputs: dict[str, Any]


def cache_of(engine: Engine, container: str) -> str:
    mounts = json.loads(engine.docker("inspect", container, "--format", "{{json .Mounts}}").stdout)
    return str(next(m["Name"] for m in mounts if m["Destination"] == "/root/.cache/huggingface"))


@pytest.fixture(scope="module")
def redeployed(big_chat: Stack, one: Engine) -> Redeployed:
    name = server_name(big_chat)
    assert name != "vllm", "the container rename ran before"
    volumes = set(one.docker("volume", "ls", "--quiet").stdout.split())
    cache = cache_of(one, name)
    big_chat.destroy()
    big_chat.up()
    new = set(one.docker("volume", "ls", "--quiet").stdout.split()) - volumes
    RECORD.lines.append(
        f"-- rename, destroy, up: the cache before {cache}, after {cache_of(one, name)}; new volumes {new}"
    )
    return Redeployed(cache, cache_of(one, name), new, big_chat.outputs())


def test_a_rename_then_destroy_and_up_finds_the_old_cache(redeployed: Redeployed, one: Engine) -> None:
    assert redeployed.cache_after == redeployed.cache_before
    assert redeployed.new_volumes == set()
    assert_healthy(one)


@pytest.mark.xfail(
    condition=not HAS_ADMIN_RESET,
    strict=True,
    reason="issue 26 defect 4: the volume keeps the admin's old password, the output is a new one",
)
def test_destroy_then_up_and_the_output_password_signs_in_to_the_real_open_webui(
    redeployed: Redeployed, one: Engine, tmp_path: Path
) -> None:
    out = redeployed.outputs
    container = str(out["chat_ui_container"])
    inspect = json.loads(one.docker("inspect", container).stdout)[0]
    env = dict(e.split("=", 1) for e in inspect["Config"]["Env"])
    volume = next(m["Name"] for m in inspect["Mounts"] if m["Type"] == "volume")
    ui = real_ui(env, volume_dir(one, volume), tmp_path)
    try:
        status = signs_in(ui, out["chat_ui_admin_email"], out["chat_ui_admin_password"])
    finally:
        ui.stop()
    RECORD.lines.append(f"-- destroy, up: the output password signs in to the real Open WebUI: HTTP {status}")
    assert status == 200


def read_values(stack: Stack) -> dict[str, Any]:
    """The stack file's plain values (its secrets stay in the file)."""
    written = read_stack_file(stack.file)
    return {
        k: v
        for k, v in written.values.items()
        if k not in written.secure and not (isinstance(v, dict) and "secure" in v)
    }


# --------------------------------------------------------------------------- the fleet: one engine per host


FLEET_HOSTS = ("gpu-a", "gpu-b")


def fleet_values(engines: dict[str, Engine]) -> dict[str, Any]:
    """Pulumi.fleet.yaml on two engines: each host's socket, its address on its engine's bridge, free ports,
    healthchecks every second, no preflight. gpu-a gets a third GPU, so that a server can move there."""
    values = values_of("fleet")
    for name in FLEET_HOSTS:
        ip = address(name)
        values["hosts"][name].pop("ssh_host_key", None)
        values = set_key(values, f"hosts.{name}.docker", f"unix://{engines[name].root}/docker.sock")
        values = set_key(values, f"hosts.{name}.preflight", False)
        values = set_key(values, f"hosts.{name}.address", ip)
        values = set_key(values, f"hosts.{name}.bind", ip)
    values["hosts"]["gpu-a"]["gpus"].append({"index": 2, "card": 3, "render": 130, "pci": "0000:84:00.0"})
    for name, server in values["servers"].items():
        values = set_key(values, f"servers.{name}.port", free_port(address(server["host"])))
        values = set_key(values, f"servers.{name}.health_interval", 1)
    for service in ("embeddings", "gateway", "chat_ui"):
        values = set_key(values, f"{service}.port", free_port(address(values[service]["host"])))
        values = set_key(values, f"{service}.health_interval", 1)
    values = set_key(values, "monitoring.prometheus_port", free_port("127.0.0.1"))
    values = set_key(values, "monitoring.grafana_port", free_port("127.0.0.1"))
    values = set_key(values, "monitoring.node_exporter_port", free_port(address("gpu-a")))
    values = set_key(values, "monitoring.health_interval", 1)
    return values


def share_stubs(source: Engine, plan: Plan, *others: Engine) -> None:
    """The stubs of every image the plan pins on `source`, and the same images (the same ids, as a registry's
    image is the same everywhere) on the others."""
    stub_images(source, plan)
    names = sorted({r.inputs["name"] for r in plan.of_type(":RemoteImage")})
    archive = source.root / "stubs.tar"
    source.docker("image", "save", "--output", str(archive), *names)
    for engine in others:
        engine.docker("image", "load", "--input", str(archive))


@pytest.fixture(scope="module")
def fleet_engines() -> Iterator[dict[str, Engine]]:
    devices = tuple(sorted(gpu_nodes(values_of("fleet")) | {"/dev/dri/card3", "/dev/dri/renderD130"}))
    with (
        running_engine("rip-a-", BRIDGES["gpu-a"], False, devices) as a,
        running_engine("rip-b-", BRIDGES["gpu-b"], False, devices) as b,
        running_engine("rip-c-", BRIDGES["gpu-c"], False, devices) as c,
    ):
        yield {"gpu-a": a, "gpu-b": b, "gpu-c": c}


def seed_admin_row(engine: Engine, volume: str, email: str) -> None:
    """A data volume with the one table the admin reset writes (Open WebUI's `auth`: models/auths.py L27-37)
    and the admin in it, where the real Open WebUI is not run (the fleet's chat page)."""
    engine.docker("volume", "create", volume)
    with contextlib.closing(sqlite3.connect(volume_dir(engine, volume) / "webui.db")) as db:
        db.execute("CREATE TABLE auth (id TEXT PRIMARY KEY, email TEXT, password TEXT, active INTEGER)")
        db.execute("INSERT INTO auth VALUES ('admin', ?, 'an-earlier-hash', 1)", (email,))
        db.commit()


@pytest.fixture(scope="module")
def fleet(project: Project, fleet_engines: dict[str, Engine]) -> Stack:
    values = fleet_values(fleet_engines)
    if HAS_ADMIN_RESET:
        seed_admin_row(fleet_engines["gpu-a"], "open-webui-data", values["chat_ui"]["admin_email"])
    stack = project.stack("fleet", values, FLEET_SECRETS)
    share_stubs(fleet_engines["gpu-a"], plan_of(stack), fleet_engines["gpu-b"], fleet_engines["gpu-c"])
    return stack


def test_preview_of_the_fleet_creates_the_plans_resources(fleet: Stack) -> None:
    assert creates_only(fleet.preview()) == {r.name for r in plan_of(fleet).resources}


def test_up_of_the_fleet_serves_then_a_second_up_and_a_refresh_change_nothing(
    fleet: Stack, fleet_engines: dict[str, Engine]
) -> None:
    fleet.up()
    assert_healthy(fleet_engines["gpu-a"], fleet_engines["gpu-b"])
    assert {s.op for s in fleet.preview()} == {"same"}
    assert "created" not in fleet.up().stdout.split("Resources:")[-1]
    assert fleet.run("refresh", "--yes", "--skip-preview", "--expect-no-changes", check=False).returncode == 0


FLEET_CHANGES = [
    ("a server's host move", "servers.coder.host", "gpu-a"),
    ("the embeddings' host move", "embeddings.host", "gpu-a"),
    ("the monitoring's host move", "monitoring.host", "gpu-b"),
]


def change_fleet(fleet: Stack, what: str, values: dict[str, Any]) -> list[str]:
    before = plan_of(fleet).as_json()
    fleet.write(values)
    _, _, differences = compare(what, fleet, before)
    fleet.up()
    return differences


@pytest.mark.parametrize(("what", "key", "value"), FLEET_CHANGES, ids=[c[0] for c in FLEET_CHANGES])
def test_a_host_move_ends_healthy_by_the_plans_steps(
    fleet: Stack, fleet_engines: dict[str, Engine], what: str, key: str, value: Any
) -> None:
    values = set_key(read_values(fleet), key, value)
    if key.endswith(".host") and not key.startswith("monitoring"):
        service = key.rsplit(".", 1)[0]
        values = set_key(values, f"{service}.port", free_port(address(value)))
    differences = change_fleet(fleet, what, values)
    assert_healthy(fleet_engines["gpu-a"], fleet_engines["gpu-b"])
    assert differences == []


def test_a_server_removed_takes_the_steps_the_plan_predicts(fleet: Stack, fleet_engines: dict[str, Engine]) -> None:
    values = read_values(fleet)
    values["servers"].pop("chat-b")
    differences = change_fleet(fleet, "a server removed", values)
    assert "chat-b" not in containers(fleet_engines["gpu-b"])
    assert_healthy(fleet_engines["gpu-a"], fleet_engines["gpu-b"])
    assert differences == []


def rename_host(values: dict[str, Any], old: str, new: str) -> dict[str, Any]:
    text = json.dumps(values).replace(f'"{old}"', f'"{new}"')
    out: dict[str, Any] = json.loads(text)
    return out


def test_host_docker_pointed_at_another_engine_deploys_there(fleet: Stack, fleet_engines: dict[str, Engine]) -> None:
    values = read_values(fleet)
    host = next(h for h in values["hosts"] if h != "gpu-a")
    values = set_key(values, f"hosts.{host}.docker", f"unix://{fleet_engines['gpu-c'].root}/docker.sock")
    moved = sorted(n for n in containers(fleet_engines["gpu-b"]) if n != "node-exporter")
    differences = change_fleet(fleet, "host.docker pointed at another engine", values)
    now = containers(fleet_engines["gpu-c"])
    assert set(moved) <= set(now), f"not deployed on the new engine: {sorted(set(moved) - set(now))}"
    assert_healthy(fleet_engines["gpu-a"], fleet_engines["gpu-c"])
    assert differences == []


def renamed_in_plan(plan: dict[str, Any], renames: dict[str, str]) -> dict[str, Any]:
    """The plan JSON with these resources renamed, as components/tools/state_rename.py leaves the state: each
    name, and each reference to it (parent, provider, dependencies, replace_with)."""
    out: dict[str, Any] = json.loads(json.dumps(plan))
    for r in out["resources"]:
        r["name"] = renames.get(r["name"], r["name"])
        if r.get("parent"):
            r["parent"] = renames.get(r["parent"], r["parent"])
        options = r.get("options", {})
        if isinstance(options.get("provider"), str):
            options["provider"] = renames.get(options["provider"], options["provider"])
        for key in ("depends_on", "dependencies", "replace_with"):
            if key in options:
                options[key] = [renames.get(d, d) for d in options[key]]
        for key, deps in options.get("property_dependencies", {}).items():
            options["property_dependencies"][key] = [renames.get(d, d) for d in deps]
    return out


def test_a_host_renamed_in_hosts_is_refused_and_its_way_out_works(
    fleet: Stack, fleet_engines: dict[str, Engine], tmp_path: Path
) -> None:
    """plan --against refuses the rename (the new host's resources would clash on the machine with the old
    one's) and gives the way out: export the state, rename them in it (components/tools/state_rename.py, every
    reference included: `pulumi state rename` of the host's provider leaves a snapshot pulumi v3.259.0 refuses,
    its replaceWith pointing at the old provider), import it; run, that makes the rename an ordinary change."""
    before = plan_of(fleet).as_json()
    fleet.write(rename_host(read_values(fleet), "gpu-b", "gpu-b2"))
    refused = diff(before, plan_of(fleet), "before").refused
    assert len(refused) == 1 and "components.tools.state_rename state.json" in refused[0], refused
    commands = re.findall(r"'(urn:pulumi:[^'=]+)=([^']+)'", refused[0])
    assert commands, refused[0]
    state = tmp_path / "state.json"
    fleet.run("stack", "export", "--file", str(state))
    subprocess.run(
        [sys.executable, "-m", "components.tools.state_rename", str(state), *(f"{u}={n}" for u, n in commands)],
        cwd=ROOT, check=True, capture_output=True, text=True,
    )  # fmt: skip
    fleet.run("stack", "import", "--file", str(state))
    renames = {urn.rsplit("::", 1)[-1]: new for urn, new in commands}
    _, _, differences = compare(
        "a host renamed in hosts:, after the state renames", fleet, renamed_in_plan(before, renames)
    )
    fleet.up()
    assert_healthy(*fleet_engines.values())
    assert differences == []


# --------------------------------------------------------------------------- upgrading a deployed stack

# The last commit before issue 26's fixes: a deployment made by it is what an operator upgrades from.
BEFORE_ISSUE_26 = "2a01bb4"


def checkout(commit: str, where: Path) -> Path:
    """The project's files at `commit` (git archive), or a skip where this clone lacks it."""
    where.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", commit], capture_output=True)
    if archive.returncode != 0:
        pytest.skip(f"this clone has no commit {commit}: {archive.stderr.decode().strip()}")
    subprocess.run(["tar", "-x", "-C", str(where)], input=archive.stdout, check=True)
    return where


def plan_json_at(tree: Path, stack_file: Path) -> dict[str, Any]:
    """That tree's own plan of the stack file (as `plan --against` makes the old side)."""
    done = subprocess.run(
        [sys.executable, "-m", "components.plan", "--file", str(stack_file), "--format", "json"],
        cwd=tree, capture_output=True, text=True, check=True,
    )  # fmt: skip
    plan: dict[str, Any] = json.loads(done.stdout)
    return plan


def test_a_stack_deployed_before_the_fixes_upgrades_by_the_plans_steps(
    big_chat: Stack, one: Engine, tmp_path_factory: pytest.TempPathFactory
) -> None:
    big_chat.destroy()  # its containers' names are the ones this deployment takes
    old_tree = checkout(BEFORE_ISSUE_26, tmp_path_factory.mktemp("before-26") / "tree")
    old = Project(CLI, tmp_path_factory.mktemp("upgrade"), old_tree)
    PROJECTS.append(old)
    values = single_values("big-chat", one)
    values["monitoring"].pop("health_interval")  # a key the code before the fixes refuses; 15 s there and here
    stack = old.stack("big-chat", values, SINGLE_SECRETS)
    stack.up()
    assert_healthy(one)
    before = plan_json_at(old_tree, stack.file)
    old.copy_program(ROOT)  # the new code, over the deployed stack
    _, _, differences = compare("upgrading from before the fixes", stack, before)
    stack.up()
    assert_healthy(one)
    assert stack.run("preview", "--expect-no-changes", check=False).returncode == 0
    assert differences == []
