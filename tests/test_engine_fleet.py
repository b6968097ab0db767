"""The fleet on real engines: two private Docker engines stand for two hosts, the real LiteLLM proxy for the gateway.

Each engine has its own socket, its own bridge and subnet, its ports on its own loopback address
(127.0.0.2, 127.0.0.3) and its own stub servers, deployed from that host's compose export. The
gateway is the real LiteLLM proxy run as a host process (a container cannot reach the hosts'
127.0.0.x) with the very config the plan generates; the test stack puts it on a third host of its
own, so every backend is reached by its host's address and published port, as in the config.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.planning.monitoring import GATEWAY_KEY_FILE, NODE_EXPORTER_PASSWORD_FILE, node_exporter_web_config
from components.settings import read_stack_file
from components.tools.plan import plan_stack
from components.tools.planned import Plan
from components.tools.verify import request
from components.tools.verify import run as verify
from tests.engine.dockerd import Bridge, Engine, import_stub, running_engine
from tests.engine.litellm import Proxy, ProxyUnavailable, free_port, proxy_venv, start_proxy
from tests.stacks import set_key, values_of
from tests.test_engine import compose_project, serving_compose

pytestmark = [pytest.mark.engine, pytest.mark.xdist_group("engine")]

HOSTS = {"gpu-a": "127.0.0.2", "gpu-b": "127.0.0.3", "edge": "127.0.0.4"}
FIXTURE_ROOT = Path(__file__).resolve().parent / "fixtures" / "hosts"
SECRETS = {"vllm_api_key": "vk-fleet-5e1d", "embeddings_api_key": "ek-fleet-9a0c", "gateway_api_key": "sk-fleet-77b3"}
COMPOSE_ENV = {"VLLM_API_KEY": SECRETS["vllm_api_key"], "INFINITY_API_KEY": SECRETS["embeddings_api_key"]}
REQUIRE = bool(os.environ.get("ROCM_INFERENCE_REQUIRE_ENGINE"))


def fleet_plan(where: Path) -> Plan:
    """Pulumi.fleet.yaml on this machine: each host on its loopback address, free ports, fast healthchecks,
    the gateway on a host of its own; the keys set as `pulumi config set --secret` would."""
    values = values_of("fleet")
    # The chat UI is proven on big-chat's engine test and in a browser (tests/test_chat_ui_browser.py); here
    # the gateway is a host process on `edge`, which no container of gpu-a reaches on loopback.
    values.pop("chat_ui")
    edge = {k: v for k, v in values["hosts"]["gpu-a"].items() if k != "ssh_host_key"}
    values["hosts"]["edge"] = edge | {"gpus": [{"index": 0, "card": 9, "render": 200}]}
    for name, address in HOSTS.items():
        values = set_key(values, f"hosts.{name}.docker", f"unix:///run/rit-{name}.sock")  # one engine each
        values = set_key(values, f"hosts.{name}.preflight", False)
        values = set_key(values, f"hosts.{name}.address", address)
        values = set_key(values, f"hosts.{name}.bind", address)
    for name, server in values["servers"].items():
        values = set_key(values, f"servers.{name}.port", free_port(HOSTS[server["host"]]))
        values = set_key(values, f"servers.{name}.health_interval", 1)
    values = set_key(values, "embeddings.port", free_port(HOSTS["gpu-b"]))
    values = set_key(values, "embeddings.health_interval", 1)
    values = set_key(values, "gateway.host", "edge")
    values = set_key(values, "gateway.port", free_port(HOSTS["edge"]))
    values = set_key(values, "gateway.num_retries", 5)  # a dead replica drawn again on retry still leaves four more
    values = set_key(values, "monitoring.host", "edge")
    values = set_key(values, "monitoring.scrape_interval", 5)
    values = set_key(values, "monitoring.node_exporter_port", free_port(HOSTS["gpu-a"]))
    config: dict[str, Any] = {f"rocm-inference:{k}": v for k, v in values.items()}
    config |= {f"rocm-inference:{key}": {"secure": "v1:AAAAAAAAAAAAAAAA:BBBBBBBB"} for key in SECRETS}
    path = where / "Pulumi.fleet.yaml"
    path.write_text(yaml.safe_dump({"config": config}, sort_keys=False))
    return plan_stack(read_stack_file(path))


@pytest.fixture(scope="module")
def engines() -> Iterator[dict[str, Engine]]:
    with (
        running_engine("rit-a-", Bridge("rit-br1", "10.231.1.1/24", "10.232.16.0/20"), REQUIRE) as a,
        running_engine("rit-b-", Bridge("rit-br2", "10.231.2.1/24", "10.232.32.0/20"), REQUIRE) as b,
    ):
        yield {"gpu-a": a, "gpu-b": b}


def report(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url.rstrip("/").removesuffix("/v1") + "/stub/report", timeout=10) as r:
        body: dict[str, Any] = json.loads(r.read())
        return body


def test_one_endpoint_routes_by_model_balances_replicas_and_survives_one_down(
    engines: dict[str, Engine], tmp_path: Path
) -> None:
    try:
        proxy_venv()
    except ProxyUnavailable as exc:
        if REQUIRE:
            pytest.fail(f"the LiteLLM proxy cannot be installed, and this run requires it: {exc}")
        pytest.skip(f"the LiteLLM proxy cannot be installed here: {exc}")
    plan = fleet_plan(tmp_path)
    assert plan.gateway_config is not None
    gateway_url = plan.outputs["openai_base_url"].removesuffix("/v1")
    host, port = gateway_url.removeprefix("http://").split(":")
    backend_env = {
        "LITELLM_MASTER_KEY": SECRETS["gateway_api_key"],
        "BACKEND_KEY_CHAT_A": SECRETS["vllm_api_key"],
        "BACKEND_KEY_CHAT_B": SECRETS["vllm_api_key"],
        "BACKEND_KEY_CODER": SECRETS["vllm_api_key"],
        "BACKEND_KEY_EMBEDDINGS": SECRETS["embeddings_api_key"],
    }
    # The proxy takes longer to start than the stubs: it starts first, beside the deployments.
    started: dict[str, Proxy | BaseException] = {}

    def start() -> None:
        try:
            started["proxy"] = start_proxy(plan.gateway_config or {}, backend_env, host, int(port), tmp_path / "gw", 90)
        except BaseException as exc:  # reported in the test's own thread
            started["proxy"] = exc

    thread = threading.Thread(target=start)
    thread.start()
    projects: dict[str, list[str]] = {}
    try:
        for name, engine in engines.items():
            compose = serving_compose(plan, name)
            for service in compose["services"].values():
                import_stub(
                    engine,
                    service["image"],
                    "infinity_emb" if service["container_name"] == "infinity-embeddings" else None,
                )
            projects[name] = compose_project(engine, compose, tmp_path, f"fleet-{name}")
            up = engine.docker(
                *projects[name], "up", "--detach", "--wait", "--wait-timeout", "60", env=COMPOSE_ENV, check=False
            )
            assert up.returncode == 0, f"{name} did not come up healthy:\n{up.stderr}"
        thread.join(timeout=120)
        proxy = started.get("proxy")
        if isinstance(proxy, BaseException):
            raise proxy
        assert isinstance(proxy, Proxy), "the proxy did not start"
        try:
            # verify, as after `pulumi up`: every backend directly, then a chat per model name, an embedding
            # and a refusal without the key through the gateway.
            outputs = json.loads(json.dumps(plan.outputs))
            for server in outputs["servers"].values():
                server["api_key"] = SECRETS["vllm_api_key"]
            outputs |= {
                "embeddings_api_key": SECRETS["embeddings_api_key"],
                "gateway_api_key": SECRETS["gateway_api_key"],
            }
            checks = verify(outputs, 60, lambda line: None)
            assert [c for c in checks if not c.ok] == []
            names = [c.name for c in checks]
            assert "gateway: chat with llama-3.3-70b" in names and "gateway: chat with qwen2.5-7b" in names
            assert "gateway: embedding with nomic-ai/nomic-embed-text-v1.5" in names
            assert "gateway refuses requests without the API key" in names

            chat = {"model": "llama-3.3-70b", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
            replicas = {n: outputs["servers"][n]["base_url"] for n in ("chat-a", "chat-b")}
            before = {n: report(url)["chats"] for n, url in replicas.items()}
            answers = [
                request("POST", f"{gateway_url}/v1/chat/completions", chat, SECRETS["gateway_api_key"])
                for _ in range(12)
            ]
            assert [r.status for r in answers] == [200] * 12
            after = {n: report(url)["chats"] for n, url in replicas.items()}
            assert all(after[n] > before[n] for n in replicas), (
                f"both replicas serve the model name: {before} -> {after}"
            )
            coder = report(outputs["servers"]["coder"]["base_url"])["chats"]
            assert coder >= 1, "the coder model name reached only its own server"

            engines["gpu-b"].docker("stop", "--time", "2", "chat-b")
            down = [
                request("POST", f"{gateway_url}/v1/chat/completions", chat, SECRETS["gateway_api_key"])
                for _ in range(8)
            ]
            assert [r.status for r in down] == [200] * 8, [r.body for r in down if r.status != 200]
        finally:
            proxy.stop()
    finally:
        thread.join(timeout=120)
        leftover = started.get("proxy")
        if isinstance(leftover, Proxy):
            leftover.stop()
        for name, project in projects.items():
            engines[name].docker(*project, "down", "--volumes", "--timeout", "2", env=COMPOSE_ENV, check=False)


FIXTURES = {"gpu-a": "dual-mi60", "gpu-b": "quad-gfx906-intel"}


def check_prometheus(plan: Plan, tmp_path: Path) -> None:
    """Debian's Prometheus with the very config the plan generates (its container paths laid out under a
    temp dir), scraping the stub servers, the gateway and Debian's node-exporter on each GPU host's
    recorded sysfs, behind the basic auth of the generated web config: the targets are up, a vLLM metric is
    queryable, and the GPU series carry gpu and server. The monitoring host's own node-exporter target is
    Docker's name for the host (host.docker.internal), which a host process cannot resolve: it is left out."""
    from tests.debian import tool
    from tests.test_monitoring_assets import stop
    from tests.test_monitoring_config import PASSWORD, PASSWORD_HASH, lay_out, query, wait_for

    try:
        node_exporter = tool("prometheus-node-exporter", "prometheus-node-exporter")
        prometheus = tool("prometheus", "prometheus")
    except pytest.skip.Exception:
        if REQUIRE:
            raise
        return
    config = plan.prometheus_config
    assert config is not None
    # on the host's network, node-exporter publishes no port: it listens on the host's bind address
    listen = [a for a in plan.by_name("gpu-a-node-exporter-container").inputs["command"] if "listen-address" in a]
    port = int(listen[0].rsplit(":", 1)[1])
    processes = []
    try:
        web = tmp_path / "node-web.yml"
        web.write_text(node_exporter_web_config(PASSWORD_HASH))
        for host, fixture in FIXTURES.items():
            address = f"{HOSTS[host]}:{port}"
            process = subprocess.Popen(
                [node_exporter, "--collector.disable-defaults", "--collector.drm", "--collector.hwmon",
                 f"--path.sysfs={FIXTURE_ROOT / fixture / 'sys'}", f"--web.listen-address={address}",
                 f"--web.config.file={web}"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            processes.append(process)
            wait_for(process, f"http://{address}/metrics", status=401)
        path = lay_out(json.loads(json.dumps(config)), tmp_path / "prom")
        (tmp_path / "prom" / GATEWAY_KEY_FILE.lstrip("/")).write_text(SECRETS["gateway_api_key"])
        assert (tmp_path / "prom" / NODE_EXPORTER_PASSWORD_FILE.lstrip("/")).read_text() == PASSWORD
        address = f"{HOSTS['edge']}:{free_port(HOSTS['edge'])}"
        process = subprocess.Popen(
            [prometheus, f"--config.file={path}", f"--storage.tsdb.path={tmp_path / 'prom-data'}",
             f"--web.listen-address={address}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        processes.append(process)
        wait_for(process, f"http://{address}/-/ready")
        expected = {("vllm", "chat-a"), ("vllm", "chat-b"), ("vllm", "coder"), ("embeddings", "gpu-b"),
                    ("gateway", "edge"), ("node", "gpu-a"), ("node", "gpu-b")}  # fmt: skip
        deadline = time.monotonic() + 30
        while True:
            up = {
                (r["metric"]["job"], r["metric"].get("server") if r["metric"]["job"] == "vllm" else r["metric"]["host"])
                for r in query(address, "up == 1")
            }
            if expected <= up or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert expected <= up, f"targets not up: {sorted(expected - up)}"
        running = query(address, 'vllm:num_requests_running{job="vllm"}')
        assert {r["metric"]["server"] for r in running} == {"chat-a", "chat-b", "coder"}
        assert {r["metric"]["model_name"] for r in running} == {"llama-3.3-70b", "qwen2.5-7b"}
        busy = query(address, 'node_drm_gpu_busy_percent{job="node"}')
        assert {(r["metric"]["host"], r["metric"]["gpu"], r["metric"]["server"]) for r in busy} >= {
            ("gpu-a", "0", "chat-a"), ("gpu-a", "1", "chat-a"), ("gpu-b", "0", "chat-b"), ("gpu-b", "2", "coder"),
        }  # fmt: skip
    finally:
        for process in processes:
            stop(process)
