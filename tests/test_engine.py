"""Each shipped stack, deployed from its own compose export on a real Docker engine, then verified.

Pulumi's mocks prove what we ask Docker for; this proves Docker accepts it and that the result
serves: device mappings, /dev/shm in the right unit, healthchecks that run in the image, URLs that
point somewhere. The images are stubs tagged with the stacks' real image names; they answer like
vLLM and Infinity and report what they were given (argv, environment, /dev/shm, devices, groups).
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.planning.catalog import load_catalog
from components.settings import read_stack_file, size_bytes
from components.tools.compose import to_compose
from components.tools.plan import plan_stack
from components.tools.planned import Plan
from components.tools.verify import run as verify
from tests.conftest import ROOT
from tests.engine.dockerd import Bridge, Engine, import_stub, running_engine
from tests.engine.litellm import free_port
from tests.stacks import load, set_key, values_of

pytestmark = [pytest.mark.engine, pytest.mark.xdist_group("engine")]
# The single-host stacks; the fleet deploys on two engines (tests/test_engine_fleet.py).
STACKS = ["big-chat", "small-chat"]

SECRETS = {"vllm_api_key": "vk-3b1f0c9e", "embeddings_api_key": "ek-77a2d4c0", "hf_token": "hf_stubtoken1234567890"}
# big-chat's chat UI: its generated admin password and session key, as `pulumi stack output --show-secrets` gives them
UI_PASSWORD, UI_SESSION_KEY = "ui-pass-4c1e9b", "ui-session-0d7f2a91"
COMPOSE_ENV = {
    "VLLM_API_KEY": SECRETS["vllm_api_key"],
    "INFINITY_API_KEY": SECRETS["embeddings_api_key"],
    "HF_TOKEN": SECRETS["hf_token"],
    "WEBUI_ADMIN_PASSWORD": UI_PASSWORD,
    "WEBUI_SECRET_KEY": UI_SESSION_KEY,
    "OPENAI_API_KEYS": SECRETS["vllm_api_key"],  # one connection: the vLLM server, with its key
    "RAG_OPENAI_API_KEY": SECRETS["embeddings_api_key"],  # the embeddings, with theirs
}


@pytest.fixture(scope="session")
def engine() -> Iterator[Engine]:
    require = bool(os.environ.get("ROCM_INFERENCE_REQUIRE_ENGINE"))
    with running_engine("rocm-engine-", Bridge("rit-br0", "10.231.0.1/24", "10.232.0.0/20"), require) as engine:
        for stack in STACKS:
            for r in keyed_plan(stack, engine.root).of_type(":RemoteImage"):
                # The real Infinity image's entrypoint is infinity_emb; the vLLM image takes a full command.
                import_stub(engine, r.inputs["name"], "infinity_emb" if r.parent == "embeddings" else None)
        yield engine


# The suite binds no well-known port on 127.0.0.1 (a user's own vLLM may serve there): the deployed
# stacks publish on an address of their own, on free ports, through the stack files they deploy. Not one
# the fleet's engines use (127.0.0.2-.4): the two engine modules may run at the same time on two workers.
BIND = "127.0.0.5"


def keyed_plan(stack: str, where: Path) -> Plan:
    """The shipped stack with its three secrets set (as `pulumi config set --secret` would), published on
    BIND at free ports, with healthchecks every second (the stack file's own health_interval)."""
    values = values_of(stack)
    values = set_key(values, "host.bind", BIND)
    values = set_key(values, "host.address", BIND)
    for service in ("vllm", "embeddings", "chat_ui"):
        if service in values:
            values = set_key(values, f"{service}.port", free_port(BIND))
            values = set_key(values, f"{service}.health_interval", 1)
    config: dict[str, Any] = {f"rocm-inference:{k}": v for k, v in values.items()}
    config |= {f"rocm-inference:{key}": {"secure": "v1:AAAAAAAAAAAAAAAA:BBBBBBBBBBBBBBBBBBBB"} for key in SECRETS}
    path = where / f"Pulumi.{stack}.yaml"
    path.write_text(yaml.safe_dump({"config": config}, sort_keys=False))
    return plan_stack(read_stack_file(path))


# Open WebUI's admin reset needs the real image's bcrypt and database: it runs against the real Open WebUI in
# tests/test_chat_ui_browser.py.
MONITORING = ("prometheus", "grafana", "alertmanager", "node-exporter", "password-reset", "admin-reset")


def serving_compose(plan: Plan, host: str | None = None) -> dict[str, Any]:
    """The compose export less the monitoring services: those run for real, as Debian's Prometheus and
    node-exporter, in tests/test_engine_fleet.py; the stub images here stand for the model servers."""
    compose = to_compose(plan, host)
    compose["services"] = {n: svc for n, svc in compose["services"].items() if not n.endswith(MONITORING)}
    compose["volumes"] = {n: v for n, v in compose["volumes"].items() if not n.startswith(("prometheus", "grafana"))}
    compose.pop("configs", None)
    return compose


def compose_project(engine: Engine, compose: dict[str, Any], where: Path, name: str) -> list[str]:
    """Write this compose project (its devices mapped to the engine's fake nodes); the compose command."""
    fake_devices(engine, compose)
    file = where / f"compose.{name}.yaml"
    file.write_text(yaml.safe_dump(compose, sort_keys=False))
    return ["compose", "--project-name", name, "--file", str(file)]


def fake_devices(engine: Engine, compose: dict[str, Any]) -> None:
    """Map each planned host device to a character device made with mknod in the engine's temp dir."""
    for service in compose["services"].values():
        mapped = []
        for entry in service.get("devices", []):
            host, inside, perms = entry.split(":")
            node = engine.root / "dev" / host.lstrip("/")
            node.parent.mkdir(parents=True, exist_ok=True)
            if not node.exists():
                os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(1, 3))
            mapped.append(f"{node}:{inside}:{perms}")
        if mapped:
            service["devices"] = mapped


def report(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://{BIND}:{port}/stub/report", timeout=10) as r:
        body: dict[str, Any] = json.loads(r.read())
        return body


def env_of(rep: dict[str, Any]) -> dict[str, str]:
    return dict(e.split("=", 1) for e in rep["env"] if "=" in e)


@pytest.mark.parametrize("stack", STACKS)
def test_stack_deploys_from_its_compose_export_and_verifies(engine: Engine, stack: str, tmp_path: Path) -> None:
    plan = keyed_plan(stack, tmp_path)
    project = compose_project(engine, serving_compose(plan), tmp_path, f"test-{stack}")
    try:
        up = engine.docker(*project, "up", "--detach", "--wait", "--wait-timeout", "90", env=COMPOSE_ENV, check=False)
        assert up.returncode == 0, f"the stack did not come up healthy with its own healthchecks:\n{up.stderr}"

        # verify, against the stack's own output URLs
        # As `pulumi stack output --json --show-secrets` gives them: the keys in clear.
        outputs = {
            **plan.outputs,
            "vllm_api_key": SECRETS["vllm_api_key"],
            "embeddings_api_key": SECRETS["embeddings_api_key"],
        }
        outputs["servers"]["vllm"]["api_key"] = SECRETS["vllm_api_key"]
        if "chat_ui_url" in outputs:
            outputs["chat_ui_admin_password"] = UI_PASSWORD
        checks = verify(outputs, 60, lambda line: None)
        assert [c.name for c in checks if not c.ok] == [], [c for c in checks if not c.ok]
        if stack == "big-chat":
            # The UI signs in its admin, offers the stack's model, and chats with the vLLM server by its container
            # name over the stack's network, with the server's key (the stub UI forwards the chat as configured).
            model = outputs["served_model"]
            assert {c.name for c in checks} >= {
                "chat UI /health",
                "chat UI: sign in as admin@localhost",
                "chat UI offers the stack's models",
                f"chat UI: chat with {model} through its endpoint",
            }
        (tmp_path / "outputs.json").write_text(json.dumps(outputs))
        cli = subprocess.run(
            [sys.executable, "-m", "components.verify", stack, "--outputs", str(tmp_path / "outputs.json"), "--format", "json"],
            cwd=ROOT, capture_output=True, text=True,
        )  # fmt: skip
        assert cli.returncode == 0 and json.loads(cli.stdout)["passed"] is True, cli.stdout + cli.stderr

        # What the servers were given, against the stack file itself (not the plan's own inputs, so a
        # wrong unit or mapping in a component cannot agree with itself).
        settings = load(read_stack_file(tmp_path / f"Pulumi.{stack}.yaml").values).settings
        v, host = settings.servers["vllm"], settings.hosts["host"]
        vllm = report(v.port)
        assert vllm["argv"] == [
            "--model", v.model,
            "--tensor-parallel-size", str(v.tensor_parallel_size),
            "--max-model-len", str(v.max_model_len),
            "--gpu-memory-utilization", str(v.gpu_memory_utilization),
            "--served-model-name", v.name_served,
        ], "the vLLM command line"  # fmt: skip
        env = env_of(vllm)
        assert env["HIP_VISIBLE_DEVICES"] == ",".join(str(i) for i in range(len(v.gpus))), (
            "container-relative GPU numbering"
        )
        assert env["VLLM_API_KEY"] == SECRETS["vllm_api_key"]
        assert "HF_TOKEN" not in env, "the server runs offline: only the download carries the token"
        assert not any(SECRETS["vllm_api_key"] in a or SECRETS["hf_token"] in a for a in vllm["argv"]), (
            "a secret on the command line"
        )
        assert vllm["shm_kb"] * 1024 == size_bytes(v.shm_size), "the /dev/shm size"
        nodes = host.nodes(v.gpus)
        expected_devices = [
            "/dev/kfd",
            *(f"/dev/dri/card{n.card}" for n in nodes),
            *(f"/dev/dri/renderD{n.render}" for n in nodes),
        ]
        assert sorted(vllm["devices"]) == sorted(expected_devices), "the device nodes"
        assert set(vllm["groups"].split()) >= {str(host.groups.video), str(host.groups.render)}, (
            "the video and render groups"
        )

        assert settings.embeddings is not None
        emb = report(settings.embeddings.port)
        assert emb["argv"][:4] == ["--model-id", settings.embeddings.model, "--device", settings.embeddings.device]
        assert env_of(emb)["INFINITY_API_KEY"] == SECRETS["embeddings_api_key"]
        assert emb["devices"] == [], "the embeddings server got a GPU node"

        published = [("vllm", 8000, v.port), ("infinity-embeddings", 7997, settings.embeddings.port)]
        if settings.chat_ui is not None:
            ui = env_of(report(settings.chat_ui.port))
            assert ui["WEBUI_ADMIN_PASSWORD"] == UI_PASSWORD and ui["WEBUI_SECRET_KEY"] == UI_SESSION_KEY
            assert ui["OPENAI_API_BASE_URLS"] == "http://vllm:8000/v1", "the server by name, on the stack's network"
            assert ui["RAG_OPENAI_API_BASE_URL"] == "http://infinity-embeddings:7997"
            assert ui["OFFLINE_MODE"] == "true" and ui["ENABLE_SIGNUP"] == "false"
            published.append(("open-webui", 8080, settings.chat_ui.port))
        for name, internal, external in published:
            bindings = json.loads(
                engine.docker("inspect", name, "--format", "{{json .HostConfig.PortBindings}}").stdout
            )
            assert bindings == {f"{internal}/tcp": [{"HostIp": host.bind, "HostPort": str(external)}]}, (
                "the published port"
            )
    finally:
        engine.docker(*project, "down", "--volumes", "--timeout", "5", env=COMPOSE_ENV, check=False)


def state(engine: Engine, name: str) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(engine.docker("inspect", name, "--format", "{{json .State}}").stdout)
    out["RestartCount"] = int(engine.docker("inspect", name, "--format", "{{.RestartCount}}").stdout)
    return out


def wait_for(what: str, predicate: Any, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.3)
    raise AssertionError(f"not within {timeout:.0f} s: {what}")


def healthy(engine: Engine, name: str) -> bool:
    s = state(engine, name)
    return bool(s["Running"]) and (s.get("Health") or {}).get("Status") == "healthy"


def test_servers_come_back_after_a_reboot_and_an_engine_exit_and_stay_stopped_when_stopped(
    engine: Engine, tmp_path: Path
) -> None:
    """The restart policy a server that must survive reboots needs, on a real engine, with stubs that
    exit 0 on SIGTERM and on engine death as vLLM 0.11 does (vllm/entrypoints/launcher.py serve_http).
    Under on-failure (the policy before) the daemon's SIGTERM at shutdown left them exited 0, and down."""
    stack = "small-chat"
    plan = keyed_plan(stack, tmp_path)
    compose = serving_compose(plan)
    project = compose_project(engine, compose, tmp_path, f"restart-{stack}")
    names = [s["container_name"] for n, s in compose["services"].items() if not n.endswith("-prefetch")]
    vllm_port = int(compose["services"]["vllm"]["ports"][0].split(":")[1])
    try:
        up = engine.docker(*project, "up", "--detach", "--wait", "--wait-timeout", "60", env=COMPOSE_ENV, check=False)
        assert up.returncode == 0, up.stderr

        # A host shutdown: the daemon stops every container with SIGTERM (the stubs exit 0), then starts again.
        engine.restart_daemon()
        for name in names:
            wait_for(f"{name} healthy again after the daemon restarted", lambda n=name: healthy(engine, n))

        # vLLM's engine dies: the server shuts down gracefully and exits 0.
        before = state(engine, "vllm")["RestartCount"]
        urllib.request.urlopen(
            urllib.request.Request(f"http://{BIND}:{vllm_port}/stub/exit", method="POST"), timeout=10
        )
        wait_for("vllm restarted after exiting 0", lambda: state(engine, "vllm")["RestartCount"] > before)
        wait_for("vllm healthy after its restart", lambda: healthy(engine, "vllm"))
        assert state(engine, "vllm")["ExitCode"] == 0

        # An operator's `docker stop` is respected, across a daemon restart too.
        engine.docker("stop", "--time", "5", "vllm")
        time.sleep(2)
        assert state(engine, "vllm")["Running"] is False and state(engine, "vllm")["ExitCode"] == 0
        engine.restart_daemon()
        wait_for("embeddings healthy after the second restart", lambda: healthy(engine, names[1]))
        assert state(engine, "vllm")["Running"] is False, "a stopped server came back by itself"
    finally:
        engine.docker(*project, "down", "--volumes", "--timeout", "5", env=COMPOSE_ENV, check=False)


def deploy_values(engine: Engine, tmp_path: Path, values: dict[str, Any], project: str) -> tuple[Plan, list[str]]:
    """Plan these stack values (written to a stack file), deploy the serving part, return the plan and the compose command."""
    config: dict[str, Any] = {f"rocm-inference:{k}": v for k, v in values.items()}
    config |= {f"rocm-inference:{key}": {"secure": "v1:AAAAAAAAAAAAAAAA:BBBBBBBBBBBBBBBBBBBB"} for key in SECRETS}
    path = tmp_path / f"Pulumi.{project}.yaml"
    path.write_text(yaml.safe_dump({"config": config}, sort_keys=False))
    plan = plan_stack(read_stack_file(path))
    for r in plan.of_type(":RemoteImage"):
        import_stub(engine, r.inputs["name"], "infinity_emb" if r.parent == "embeddings" else None)
    compose = serving_compose(plan)
    compose["services"].pop("embeddings", None)
    return plan, compose_project(engine, compose, tmp_path, project)


def small_vllm(tmp_path: Path, **changes: Any) -> dict[str, Any]:
    """small-chat as keyed_plan deploys it (its own address, free ports, fast checks), with these changes."""
    keyed_plan("small-chat", tmp_path)
    values = {k: v for k, v in read_stack_file(tmp_path / "Pulumi.small-chat.yaml").values.items() if k not in SECRETS}
    for key, value in changes.items():
        values = set_key(values, key, value)
    return values


def mode(port: int, name: str) -> None:
    urllib.request.urlopen(urllib.request.Request(f"http://{BIND}:{port}/stub/mode/{name}", method="POST"), timeout=10)


def test_a_hung_server_is_restarted_and_a_slow_one_left_alone(engine: Engine, tmp_path: Path) -> None:
    """The progress healthcheck (components/planning/health.py) runs for real, in the stub image's real python3:
    with a request in flight and no token for stall_timeout, it ends the server (SIGTERM to docker-init, PID 1),
    and unless-stopped brings it back; a server that keeps producing tokens is left alone."""
    values = small_vllm(tmp_path, **{"vllm.stall_timeout": 3})
    plan, project = deploy_values(engine, tmp_path, values, "stall")
    assert "S=3;" in plan.by_name("vllm-container").inputs["healthcheck"]["tests"][3]
    port = int(values["vllm"]["port"])
    try:
        up = engine.docker(*project, "up", "--detach", "--wait", "--wait-timeout", "60", env=COMPOSE_ENV, check=False)
        assert up.returncode == 0, up.stderr
        assert state(engine, "vllm")["RestartCount"] == 0

        mode(port, "progress")  # running 1, a token more at every look: slow, but progressing
        time.sleep(6)  # twice the window
        assert state(engine, "vllm")["RestartCount"] == 0, "a progressing server was restarted"
        assert healthy(engine, "vllm")

        mode(port, "stall")  # running 1, no token any more: hung
        started = time.monotonic()
        wait_for("the hung server restarted", lambda: state(engine, "vllm")["RestartCount"] >= 1, timeout=30)
        took = time.monotonic() - started
        # the window counts from the last token the check saw, up to a check or two (1 s each) before the switch
        assert 1 <= took <= 20, f"restarted after {took:.1f} s, the window is 3 s"
        wait_for("the restarted server healthy", lambda: healthy(engine, "vllm"))
        assert state(engine, "vllm")["ExitCode"] == 0, "ended gracefully through docker-init"
        # after the restart it counts afresh: a fresh server with nothing in flight stays up
        time.sleep(4)
        assert state(engine, "vllm")["RestartCount"] == 1
    finally:
        engine.docker(*project, "down", "--volumes", "--timeout", "2", env=COMPOSE_ENV, check=False)


def run_download(engine: Engine, plan: Plan, token: str) -> subprocess.CompletedProcess[str]:
    """The download's own command, as pulumi-command runs it: `sh -c CREATE` with DOCKER_HOST and the secret
    env file on stdin. One override: the RemoteImage's id, which the plan makes up, becomes the image name
    the stub is tagged with."""
    fetch = plan.by_name("vllm-prefetch").inputs
    image = plan.by_name("vllm-image").inputs["name"]
    create = fetch["create"].replace(fetch["triggers"][0]["image"], image)
    return subprocess.run(
        ["sh", "-c", create],
        input=f"HF_TOKEN={token}\n",
        env={**os.environ, **fetch["environment"], "DOCKER_HOST": engine.env["DOCKER_HOST"]},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_model_is_downloaded_before_the_server_and_served_offline(engine: Engine, tmp_path: Path) -> None:
    """The download, run as pulumi-command runs it, fills the server's cache volume (the stub image's
    huggingface_hub lays out the Hub cache) with the token from stdin and leaves no container; the server
    then starts with HF_HUB_OFFLINE=1 from it. A failed download exits non-zero (pulumi-command then fails
    `pulumi up` and keeps nothing in state) and leaves no container either."""
    values = small_vllm(tmp_path, **{"vllm.model_revision": "v1.2"})
    plan, project = deploy_values(engine, tmp_path, values, "prefetch")
    assert "revision='v1.2'" in plan.by_name("vllm-prefetch").inputs["triggers"][0]["command"][6]
    try:
        done = run_download(engine, plan, SECRETS["hf_token"])
        assert done.returncode == 0, done.stderr
        assert engine.docker("ps", "--all", "--quiet", "--filter", "name=vllm-prefetch").stdout.strip() == ""
        repo = "/c/hub/models--Qwen--Qwen2.5-14B-Instruct-AWQ"
        listing = engine.docker("run", "--rm", "-v", "vllm-hf-cache:/c", "--entrypoint", "/bin/sh", values["vllm"]["image"],
                                "-c", f"ls {repo}/refs; cat {repo}/token").stdout.split()  # fmt: skip
        assert listing == ["v1.2", "set"], "the download used the pinned revision and got the token from stdin"
        up = engine.docker(*project, "up", "--detach", "--wait", "--wait-timeout", "60", env=COMPOSE_ENV, check=False)
        assert up.returncode == 0, up.stderr
        rep = report(int(values["vllm"]["port"]))
        assert env_of(rep)["HF_HUB_OFFLINE"] == "1" and rep["argv"][-2:] == ["--revision", "v1.2"]
    finally:
        engine.docker(*project, "down", "--volumes", "--timeout", "2", env=COMPOSE_ENV, check=False)

    arch = load_catalog().models["Qwen/Qwen2.5-14B-Instruct-AWQ"].model_dump(exclude_none=True)
    broken = small_vllm(tmp_path, **{"vllm.model": "Qwen/missing-model", "vllm.architecture": arch})
    plan, project = deploy_values(engine, tmp_path, broken, "prefetch-fails")
    try:
        done = run_download(engine, plan, SECRETS["hf_token"])
        assert done.returncode == 1 and "Repository Not Found" in done.stderr, done.stderr
        assert engine.docker("ps", "--all", "--quiet", "--filter", "name=vllm-prefetch").stdout.strip() == ""
        # the compose export orders the same way: the server never starts after a failed download
        up = engine.docker(*project, "up", "--detach", "--wait", "--wait-timeout", "60", env=COMPOSE_ENV, check=False)
        assert up.returncode != 0
        assert engine.docker("inspect", "vllm", check=False).returncode != 0 or not state(engine, "vllm")["Running"], (
            "the server started although its download failed"
        )
    finally:
        engine.docker(*project, "down", "--volumes", "--timeout", "2", env=COMPOSE_ENV, check=False)
