"""Each component under the Pulumi SDK's mocks, with the real stack files as config.

Every check on an Output runs under @pulumi.runtime.test and is returned from it, so a failing
assertion fails the test (a check in an `apply` that nothing awaits would pass silently).
"""

from __future__ import annotations

import dataclasses
import gc
import json
import logging
from pathlib import Path
from typing import Any

import pulumi
import pytest
import yaml
from pulumi.runtime import rpc

from components.container import Server, ServerArgs, Wiring
from components.host import RocmHost, RocmHostArgs
from components.planning.catalog import load_catalog
from components.planning.deployment import Deployment, Service, build_deployment
from components.planning.rules import server_contexts, server_stall_seconds
from components.program import Vault, deploy
from components.settings import LoadedStack
from components.settings.pulumi_config import Secrets, load_from_pulumi
from components.settings.stackfile import stack_path
from components.tools.mocks import PROJECT, PlanMocks
from components.tools.planned import fake_image_id
from tests.conftest import ROOT, STACKS, inputs_of, shipped_plan, use_stack

HF_TOKEN = "hf_test_token_5d41402abc4b2a76"
VLLM_KEY = "vllm-key-7d793037a0760186574b"
EMB_KEY = "emb-key-9e107d9d372bb6826bd8"


def load(stack: str, secrets: dict[str, str] | None = None) -> tuple[LoadedStack, Secrets]:
    use_stack(stack, secrets)
    return load_from_pulumi(stack_path(stack))


def planned(loaded: LoadedStack, stack: str = "big-chat") -> Deployment:
    return build_deployment(loaded.settings, "rocm-inference", stack, assess=False)


def serve(d: Deployment, secrets: Secrets, service: Service, name: str) -> Server:
    """One planned service on a host of its own, as the program makes it."""
    host = RocmHost(f"{name}-host", RocmHostArgs(plan=d.hosts[service.host]))
    if service.gpus is not None:
        host.gpu_devices(dataclasses.replace(service.gpus, name=f"{name}-gpus"))
    vault = Vault(secrets)
    vault.generate(service.generated)
    return Server(
        name,
        ServerArgs(
            plan=service, wiring=Wiring(vault), provider=host.provider, shell=host.shell, address=host.plan.address
        ),
    )


def env_dict(envs: list[Any]) -> dict[str, str]:
    return dict(e.split("=", 1) for e in envs if isinstance(e, str))


# --------------------------------------------------------------------------- host and GPUs


@pulumi.runtime.test
def test_host_provider_and_gpu_devices_for_one_gpu(mocks: PlanMocks) -> pulumi.Output[Any]:
    loaded, _ = load("small-chat")
    d = planned(loaded, "small-chat")
    host = RocmHost("box", RocmHostArgs(plan=d.hosts["host"]))
    plan = d.servers["vllm"].gpus
    assert plan is not None and plan.host_indices == (1,)
    gpus = host.gpu_devices(dataclasses.replace(plan, name="box-gpu1"))
    assert plan.device_paths == ("/dev/kfd", "/dev/dri/card2", "/dev/dri/renderD129")
    assert plan.environment == {"HIP_VISIBLE_DEVICES": "0"}
    assert plan.group_adds == ("44", "992")

    def check(args: list[Any]) -> None:
        provider_urn, gpus_urn = args
        assert inputs_of(mocks, "providers:docker", "box-docker")["host"] == "unix:///var/run/docker.sock"
        # Children are parented: the parent's type shows in the child's URN.
        assert "rocm-inference:host:RocmHost$pulumi:providers:docker::box-docker" in provider_urn
        assert "rocm-inference:host:RocmHost$rocm-inference:gpus:GpuDevices::box-gpu1" in gpus_urn

    return pulumi.Output.all(host.provider.urn, gpus.urn).apply(check)


@pulumi.runtime.test
def test_two_hosts_in_one_stack_do_not_collide(mocks: PlanMocks) -> pulumi.Output[Any]:
    loaded, _ = load("big-chat")
    d = planned(loaded)
    a = RocmHost("box-a", RocmHostArgs(plan=d.hosts["host"]))
    b = RocmHost("box-b", RocmHostArgs(plan=d.hosts["host"]))
    plan = d.servers["vllm"].gpus
    assert plan is not None
    ga = a.gpu_devices(dataclasses.replace(plan, name="box-a-gpus"))
    gb = b.gpu_devices(dataclasses.replace(plan, name="box-b-gpus"))
    return pulumi.Output.all(a.provider.urn, b.provider.urn, ga.urn, gb.urn).apply(
        lambda urns: _assert_distinct(urns, mocks)
    )


def _assert_distinct(urns: list[str], mocks: PlanMocks) -> None:
    assert len(set(urns)) == 4
    assert {n for (_, n) in mocks.inputs} >= {"box-a-docker", "box-b-docker"}


# --------------------------------------------------------------------------- vLLM


def _vllm(loaded: LoadedStack, secrets: Secrets, name: str = "vllm") -> Server:
    d = planned(loaded)
    return serve(d, secrets, d.servers["vllm"], name)


@pulumi.runtime.test
def test_vllm_container_carries_the_seed_settings(mocks: PlanMocks) -> pulumi.Output[Any]:
    loaded, secrets = load("big-chat")
    server = _vllm(loaded, secrets)

    def check(args: list[Any]) -> None:
        urn, base_url, name = args
        c = inputs_of(mocks, ":Container", "vllm-container")
        assert c["name"] == "vllm" == name
        assert c["image"] == fake_image_id("nalanzeyu/vllm-gfx906:v0.11.2-rocm6.3"), (
            "image must be the RemoteImage's id"
        )
        assert c["command"] == [
            "python", "-m", "vllm.entrypoints.openai.api_server",
            "--model", "casperhansen/llama-3.3-70b-instruct-awq",
            "--tensor-parallel-size", "2",
            "--max-model-len", "32768",
            "--gpu-memory-utilization", "0.9",
            # offline, vLLM would name the model by its snapshot path: the served name is always given
            "--served-model-name", "casperhansen/llama-3.3-70b-instruct-awq",
        ]  # fmt: skip
        assert [(d["hostPath"], d["containerPath"], d["permissions"]) for d in c["devices"]] == [
            (p, p, "rwm")
            for p in ["/dev/kfd", "/dev/dri/card1", "/dev/dri/card2", "/dev/dri/renderD128", "/dev/dri/renderD129"]
        ]
        assert c["groupAdds"] == ["44", "992"]
        assert c["shmSize"] == 16384  # MB: 16g
        assert c["ipcMode"] == "private"
        assert c.get("privileged") in (None, False)
        env = env_dict(c["envs"])
        assert env["HIP_VISIBLE_DEVICES"] == "0,1"
        assert env["VLLM_NO_USAGE_STATS"] == "1"
        assert c["ports"] == [{"internal": 8000, "external": 8000, "ip": "127.0.0.1"}]
        assert c["volumes"] == [{"volumeName": "vllm-hf-cache", "containerPath": "/root/.cache/huggingface"}]
        assert env["HF_HUB_OFFLINE"] == "1", "the weights came in before the start: a restart needs no Hub"
        assert c["init"] is True, "docker-init as PID 1 hands the healthcheck's signal to the server"
        hc = c["healthcheck"]
        assert hc["tests"][:3] == ["CMD", "python3", "-c"] and "B='http://127.0.0.1:8000'" in hc["tests"][3]
        stall = server_stall_seconds(server_contexts(loaded.settings)["vllm"], load_catalog())
        assert "vllm:generation_tokens_total" in hc["tests"][3] and f"S={stall};" in hc["tests"][3]
        fetch = inputs_of(mocks, ":Command", "vllm-prefetch")
        run = fetch["triggers"][0]  # the one-shot `docker run --rm`, in a container's words (it triggers a rerun)
        assert run["volumes"] == c["volumes"] and run["image"] == c["image"] and run["name"] == "vllm-prefetch"
        assert run["command"][:4] == ["timeout", "-k", "30", "7200"], "stopped at its own deadline"
        assert (
            "snapshot_download(repo_id='casperhansen/llama-3.3-70b-instruct-awq', revision=None)" in run["command"][6]
        )
        assert fetch["create"].startswith("docker rm -f vllm-prefetch >/dev/null 2>&1; exec docker run --rm ")
        assert fetch["environment"] == {"DOCKER_HOST": "unix:///var/run/docker.sock"}
        assert hc["startPeriod"] == "30m0s"
        assert c["wait"] is True and c["waitTimeout"] >= 1200
        assert c["restart"] == "unless-stopped" and "maxRetryCount" not in c
        assert c["logDriver"] == "json-file" and c["logOpts"] == {"max-size": "100m", "max-file": "5"}
        labels = {lbl["label"]: lbl["value"] for lbl in c["labels"]}
        assert labels["rocm-inference.gpus"] == "0,1"
        image = inputs_of(mocks, ":RemoteImage", "vllm-image")
        assert image == {"name": "nalanzeyu/vllm-gfx906:v0.11.2-rocm6.3", "keepLocally": True}
        assert inputs_of(mocks, ":Volume", "vllm-cache")["name"] == "vllm-hf-cache"
        assert "rocm-inference:vllm:VllmServer$docker:index/container:Container::vllm-container" in urn
        assert base_url == "http://localhost:8000/v1"

    return pulumi.Output.all(server.container.urn, server.base_url, server.container_name).apply(check)


@pulumi.runtime.test
def test_vllm_secrets_reach_the_environment_only_as_secrets(mocks: PlanMocks) -> pulumi.Output[Any]:
    loaded, secrets = load("big-chat", {"hf_token": HF_TOKEN, "vllm_api_key": VLLM_KEY})
    server = _vllm(loaded, secrets)

    def check(_: Any) -> None:
        c = inputs_of(mocks, ":Container", "vllm-container")
        # One secret entry makes the SDK send the whole env list as a secret: encrypted in state.
        assert is_secret(c["envs"])
        env = env_dict(c["envs"]["value"])
        assert (env["VLLM_API_KEY"], env["HIP_VISIBLE_DEVICES"]) == (VLLM_KEY, "0,1")
        # Only the download needs the token: the server runs offline, and a rotation must not replace it.
        assert "HF_TOKEN" not in env and env["HF_HUB_OFFLINE"] == "1"
        fetch = inputs_of(mocks, ":Command", "vllm-prefetch")
        # On the download's stdin, as an env file for `docker run --env-file /dev/stdin`: never on its command line.
        assert is_secret(fetch["stdin"]) and fetch["stdin"]["value"] == f"HF_TOKEN={HF_TOKEN}\n"
        assert HF_TOKEN not in json.dumps(fetch["create"]) and "--env-file /dev/stdin" in fetch["create"]
        assert not any(VLLM_KEY in part for part in c["command"]), "an API key on the command line shows in logs"
        for (typ, name), inputs in mocks.inputs.items():
            assert HF_TOKEN not in _plain_text(inputs), f"{typ} {name} holds the HF token in plain text"
            assert VLLM_KEY not in _plain_text(inputs), f"{typ} {name} holds the API key in plain text"

    return server.container.urn.apply(check)


SECRET_ALONE = [
    ("vllm_api_key", VLLM_KEY, "vllm-container", "VLLM_API_KEY"),
    ("hf_token", HF_TOKEN, "embeddings-container", "HF_TOKEN"),
    ("embeddings_api_key", EMB_KEY, "embeddings-container", "INFINITY_API_KEY"),
]


@pytest.mark.parametrize(("key", "value", "container", "env_name"), SECRET_ALONE)
def test_each_secret_on_its_own_stays_a_secret(
    mocks: PlanMocks, key: str, value: str, container: str, env_name: str
) -> None:
    """One secret entry makes the SDK send the whole env list as a secret, which would hide a plain
    HF_TOKEN beside an API key: so each secret is set alone here."""

    @pulumi.runtime.test
    def run() -> pulumi.Output[Any]:
        loaded, secrets = load("big-chat", {key: value})
        outputs = deploy(loaded, secrets, "rocm-inference", "big-chat")
        return pulumi.Output.all(*outputs.values()).apply(check)

    def check(_: Any) -> None:
        c = inputs_of(mocks, ":Container", container)
        assert is_secret(c["envs"]), f"{env_name} alone must make the env list a secret"
        assert env_dict(c["envs"]["value"])[env_name] == value
        for (typ, name), inputs in mocks.inputs.items():
            assert value not in _plain_text(inputs), f"{typ} {name} holds {key} in plain text"

    run()


def is_secret(value: Any) -> bool:
    return isinstance(value, dict) and rpc.is_rpc_secret(value)


def _plain_text(value: Any) -> str:
    """Every string in value outside the SDK's secret wrappers."""
    if isinstance(value, dict):
        if is_secret(value):
            return ""
        return " ".join(_plain_text(v) for v in value.values())
    if isinstance(value, list):
        return " ".join(_plain_text(v) for v in value)
    return str(value)


def test_plain_text_walker_finds_unwrapped_secrets() -> None:
    assert "k" in _plain_text({"a": ["x", {"b": "k"}]})
    assert "k" not in _plain_text(
        {"a": {"4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270", "value": "k"}}
    )


# --------------------------------------------------------------------------- Infinity


@pulumi.runtime.test
def test_embeddings_container_carries_the_seed_settings(mocks: PlanMocks) -> pulumi.Output[Any]:
    loaded, secrets = load("big-chat", {"embeddings_api_key": EMB_KEY})
    s = loaded.settings
    assert s.embeddings is not None
    d = planned(loaded)
    assert d.embeddings is not None
    server = serve(d, secrets, d.embeddings, "emb")

    def check(args: list[Any]) -> None:
        urn, base_url = args
        c = inputs_of(mocks, ":Container", "emb-container")
        assert c["name"] == "infinity-embeddings"
        assert c["command"][:5] == ["v2", "--model-id", "nomic-ai/nomic-embed-text-v1.5", "--device", "cpu"]
        assert c["ports"] == [{"internal": 7997, "external": 8080, "ip": "127.0.0.1"}]
        assert c["volumes"] == [{"volumeName": "infinity-embeddings-cache", "containerPath": "/app/.cache"}]
        assert "devices" not in c and "groupAdds" not in c, "the CPU embeddings server gets no GPU"
        assert "http://127.0.0.1:7997/health" in c["healthcheck"]["tests"][3]
        assert is_secret(c["envs"])
        env = env_dict(c["envs"]["value"])
        assert env["INFINITY_API_KEY"] == EMB_KEY and env["DO_NOT_TRACK"] == "1"
        assert EMB_KEY not in _plain_text(c)
        assert "rocm-inference:embeddings:EmbeddingsServer$docker:index/container:Container::emb-container" in urn
        assert base_url == "http://localhost:8080"

    return pulumi.Output.all(server.container.urn, server.base_url).apply(check)


# --------------------------------------------------------------------------- the whole program


@pytest.mark.parametrize("stack", ["big-chat", "small-chat"])
def test_deploy_registers_the_same_tree_for_each_stack(mocks: PlanMocks, stack: str) -> None:
    @pulumi.runtime.test
    def run() -> pulumi.Output[Any]:
        loaded, secrets = load(stack)
        outputs = deploy(loaded, secrets, "rocm-inference", stack)
        return pulumi.Output.all(**outputs).apply(check)

    def check(out: dict[str, Any]) -> None:
        assert out["served_model"] == loaded_model(stack)
        assert out["vllm_container"] == "vllm"
        assert out["embeddings_container"] == "infinity-embeddings"
        assert out["openai_base_url"] == "http://localhost:8000/v1"
        assert out["embeddings_base_url"] == "http://localhost:8080"

    run()
    # Once every registration is done (a resource that waits on another, such as Grafana's password reset,
    # may register after the outputs resolve).
    names = {n for (_, n) in mocks.inputs}
    serving = {"host", "host-docker", "host-preflight", "vllm-gpus", "vllm", "vllm-image", "vllm-cache",
               "vllm-prefetch", "vllm-container", "embeddings", "embeddings-image", "embeddings-cache",
               "embeddings-container"}  # fmt: skip
    monitoring = {"host-network", "node-exporter-password", "grafana-admin-password", "monitoring",
                  "host-node-exporter-image", "host-node-exporter-container", "prometheus-image", "prometheus-cache",
                  "prometheus-container", "grafana-image", "grafana-cache", "grafana-container",
                  "grafana-password-reset"}  # fmt: skip
    chat_ui = {"chat-ui-secret-key", "chat-ui-admin-password", "chat-ui", "chat-ui-image", "chat-ui-cache",
               "chat-ui-container", "chat-ui-admin-reset"}  # fmt: skip
    assert names == (serving | monitoring | chat_ui if stack == "big-chat" else serving)


class StoppedContainerMocks(PlanMocks):
    """What `pulumi refresh --run-program` hands the program for a stopped container: state with no ports."""

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[Any, Any]]:
        resource_id, state = super().new_resource(args)
        if args.typ == "docker:index/container:Container":
            state["ports"] = []
        return resource_id, state


def test_urls_come_from_the_plan_not_a_containers_read_back_ports() -> None:
    m = StoppedContainerMocks()
    pulumi.runtime.set_mocks(m, project=PROJECT, stack="test", preview=False)
    try:

        @pulumi.runtime.test
        def run() -> pulumi.Output[Any]:
            loaded, secrets = load("big-chat")
            outputs = deploy(loaded, secrets, "rocm-inference", "big-chat")
            return pulumi.Output.all(**outputs).apply(check)

        def check(out: dict[str, Any]) -> None:
            assert out["openai_base_url"] == "http://localhost:8000/v1"
            assert out["embeddings_base_url"] == "http://localhost:8080"
            urls = [v for k, v in out.items() if k.endswith("_url")]
            assert urls and all(":None" not in u for u in urls)

        run()
    finally:
        pulumi.runtime.set_all_config({}, [])


def loaded_model(stack: str) -> str:
    doc = yaml.safe_load(Path(stack_path(stack)).read_text())
    return str(doc["config"]["rocm-inference:vllm"]["model"])


def test_invalid_stack_stops_the_program_before_any_resource(mocks: PlanMocks, tmp_path: Path) -> None:
    from components.program import run

    bad = tmp_path / "Pulumi.bad.yaml"
    bad.write_text(
        (ROOT / "Pulumi.big-chat.yaml").read_text().replace("tensor_parallel_size: 2", "tensor_parallel_size: 3")
    )
    use_stack("big-chat")
    pulumi.runtime.set_all_config(
        {
            **pulumi.runtime.config.CONFIG.get(),
            "rocm-inference:vllm": json.dumps(yaml.safe_load(bad.read_text())["config"]["rocm-inference:vllm"]),
        }
    )
    with pytest.raises(pulumi.RunError) as err:
        run(bad, ssh_agent=None)
    assert str(err.value) == (
        "Pulumi.bad.yaml: rocm-inference:vllm.tensor_parallel_size must equal the number of GPUs in "
        "rocm-inference:vllm.gpus (2), got 3"
    )
    assert mocks.inputs == {}


class FailingDownload(PlanMocks):
    """The command provider as it answers a download that exited 1: an error and no state (pulumi-command
    v1.2.1 returns a plain error, and pulumi-go-provider v1.3.0 infer/resource.go L1291-1292 drops the state)."""

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[Any, Any]]:
        if args.name.endswith("-prefetch"):
            raise RuntimeError("exit status 1: huggingface_hub.errors.RepositoryNotFoundError")
        return super().new_resource(args)


def test_a_failed_download_stops_the_deployment_before_the_server_is_touched() -> None:
    mocks = FailingDownload()
    pulumi.runtime.set_mocks(mocks, project="rocm-inference", stack="small-chat", preview=False)
    # The failure is the point: the Outputs that wait on it are never awaited, and asyncio would log each
    # of them ("Future exception was never retrieved") when they are collected.
    asyncio_log = logging.getLogger("asyncio")
    level = asyncio_log.level
    asyncio_log.setLevel(logging.CRITICAL)
    try:

        @pulumi.runtime.test
        def run() -> pulumi.Output[Any]:
            loaded, secrets = load("small-chat")
            outputs = deploy(loaded, secrets, "rocm-inference", "small-chat")
            return pulumi.Output.all(*outputs.values())

        with pytest.raises(Exception, match=r"RepositoryNotFoundError"):
            run()
        names = {n for (_, n) in mocks.inputs}
        assert "vllm-image" in names and "vllm-container" not in names, "the server was registered anyway"
    finally:
        pulumi.runtime.set_all_config({}, [])
        gc.collect()
        asyncio_log.setLevel(level)


def test_the_server_waits_for_its_download_through_an_ordering_never_through_an_input() -> None:
    """A replaced download would make any input that depends on it unknown, and the engine would delete the
    (delete-before-replace) serving container before the download starts if that input forces a replacement
    (pulumi/pulumi v3.259.0 step_generator.go L3220-3361); with "*" every input does. So: an ordering only."""
    for stack in STACKS:
        plan = shipped_plan(stack)
        for server in plan.services:
            fetch = f"{server.parent}-prefetch"
            if not any(r.name == fetch for r in plan.resources):
                continue
            assert fetch in server.options["dependencies"], f"{server.name} does not wait for {fetch}"
            by_input = server.options["property_dependencies"]
            assert all(fetch not in names for names in by_input.values()), f"{server.name}: {by_input}"
            assert server.options["replace_on_changes"] == ["*"]
