"""The real LiteLLM proxy (the gateway image's version, from its own cached venv) in front of stub backends.

Two stub vLLM replicas behind one model name and a stub Infinity server, all on 127.0.0.5: the
proxy spreads chat requests over both replicas, carries on when one is gone, passes embeddings to
Infinity's /embeddings, refuses a request without the master key, and hands each backend its own key.
"""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.engine.litellm import LITELLM_VERSION, Proxy, ProxyUnavailable, free_port, proxy_venv, start_proxy

HOST = "127.0.0.5"
MASTER_KEY = "sk-master-5d0c7a91"
KEYS = {
    "BACKEND_KEY_CHAT_A": "vk-chat-a-1e4f",
    "BACKEND_KEY_CHAT_B": "vk-chat-b-9c2d",
    "BACKEND_KEY_EMB": "ek-emb-42aa",
}
CHAT_MODEL = "llama-3.3-70b"
EMBED_MODEL = "nomic-embed"


@dataclass
class Stub:
    """A stub backend on its own thread: it answers POST on its paths when the bearer key matches, and counts."""

    name: str
    key: str
    paths: tuple[str, ...]
    hits: list[dict[str, Any]] = field(default_factory=list)
    refused: int = 0
    server: ThreadingHTTPServer | None = None
    thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.server_address[1]

    def start(self) -> Stub:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")
                if self.path not in stub.paths:
                    return self._reply(404, {"error": f"no route {self.path}"})
                if self.headers.get("Authorization") != f"Bearer {stub.key}":
                    stub.refused += 1
                    return self._reply(401, {"error": {"message": "bad key", "type": "auth", "code": 401}})
                stub.hits.append({"path": self.path, "model": body.get("model")})
                if self.path.endswith("/embeddings"):
                    inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
                    data = [
                        {"object": "embedding", "index": i, "embedding": [0.1, 0.2, 0.3]} for i in range(len(inputs))
                    ]
                    return self._reply(
                        200,
                        {
                            "object": "list",
                            "model": body.get("model"),
                            "data": data,
                            "usage": {"prompt_tokens": 3, "total_tokens": 3},
                        },
                    )
                message = {"role": "assistant", "content": f"hello from {stub.name}"}
                return self._reply(
                    200,
                    {
                        "id": "chatcmpl-stub",
                        "object": "chat.completion",
                        "created": int(time.time()),
                        "model": body.get("model"),
                        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                        "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8},
                    },
                )

            def _reply(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer((HOST, 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(
            target=self.server.serve_forever, args=(0.05,), name=f"stub-{self.name}", daemon=True
        )
        self.thread.start()
        return self

    def stop(self) -> None:
        """Close the listening socket: the port refuses connections, as a stopped container's would."""
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
        if self.thread is not None:
            self.thread.join(timeout=5)


def call(
    proxy: Proxy, path: str, payload: dict[str, Any] | None = None, key: str | None = MASTER_KEY
) -> tuple[int, dict[str, Any] | str]:
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(proxy.url + path, data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, text = response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        status, text = exc.code, exc.read().decode()
    try:
        return status, json.loads(text)
    except json.JSONDecodeError:
        return status, text


def chat(proxy: Proxy, key: str | None = MASTER_KEY) -> tuple[int, dict[str, Any] | str]:
    return call(
        proxy, "/v1/chat/completions", {"model": CHAT_MODEL, "messages": [{"role": "user", "content": "hi"}]}, key
    )


@pytest.fixture(scope="module")
def venv() -> Path:
    started = time.monotonic()
    try:
        path = proxy_venv()
    except ProxyUnavailable as exc:
        if os.environ.get("ROCM_INFERENCE_REQUIRE_ENGINE"):
            pytest.fail(f"no LiteLLM proxy, and this run requires one: {exc}")
        pytest.skip(f"the LiteLLM proxy cannot be installed here: {exc}")
    print(f"\nlitellm {LITELLM_VERSION} venv ready in {time.monotonic() - started:.1f} s: {path}")
    return path


@pytest.fixture
def stubs() -> Iterator[dict[str, Stub]]:
    made = {
        "a": Stub("a", KEYS["BACKEND_KEY_CHAT_A"], ("/v1/chat/completions",)).start(),
        "b": Stub("b", KEYS["BACKEND_KEY_CHAT_B"], ("/v1/chat/completions",)).start(),
        "emb": Stub("emb", KEYS["BACKEND_KEY_EMB"], ("/embeddings",)).start(),
    }
    try:
        yield made
    finally:
        for stub in made.values():
            stub.stop()


# What a dead replica costs on litellm 1.108.5 (measured with these stubs; a 2-core machine under load):
# - A refused port (a stopped container) fails in milliseconds, as InternalServerError. The router retries at
#   once (no backoff while the group has a healthy deployment), but a retry may draw the same dead replica
#   again: retries skip a deployment only after a non-retryable answer (401, 404). With num_retries: 2 a
#   request fails only if it draws the dead replica three times before the replica is cooled down.
# - allowed_fails: N (router_settings) cools a deployment down after N+1 failures within cooldown_time, for
#   cooldown_time seconds; allowed_fails: 0 after the first one. Left unset, a deployment cools down only at
#   over 50 % failures with at least 5 requests in the minute (or at once on 401/404/408/429).
# - A hung replica (accepts, never answers) costs the deployment's timeout per attempt: litellm_params.timeout
#   or router_settings.timeout (seconds); without one a chat request waits 600 s. With timeout: 2 and
#   allowed_fails: 0 one request paid 2 s, then none; with allowed_fails: 1 one request paid 6 s and failed (408).
def gateway_config(stubs: dict[str, Stub]) -> dict[str, Any]:
    def chat_replica(stub: Stub, key_var: str) -> dict[str, Any]:
        params = {
            "model": f"hosted_vllm/{CHAT_MODEL}",
            "api_base": f"http://{HOST}:{stub.port}/v1",
            "api_key": f"os.environ/{key_var}",
        }
        return {"model_name": CHAT_MODEL, "litellm_params": params}

    return {
        "model_list": [
            chat_replica(stubs["a"], "BACKEND_KEY_CHAT_A"),
            chat_replica(stubs["b"], "BACKEND_KEY_CHAT_B"),
            {
                "model_name": EMBED_MODEL,
                "litellm_params": {
                    "model": "infinity/nomic-ai/nomic-embed-text-v1.5",
                    "api_base": f"http://{HOST}:{stubs['emb'].port}",
                    "api_key": "os.environ/BACKEND_KEY_EMB",
                },
                "model_info": {"mode": "embedding"},
            },
        ],
        "router_settings": {
            "routing_strategy": "simple-shuffle",
            "num_retries": 2,
            "allowed_fails": 1,
            "cooldown_time": 30,
        },
        "litellm_settings": {"callbacks": ["prometheus"]},
        "general_settings": {"master_key": "os.environ/LITELLM_MASTER_KEY"},
    }


def test_gateway_spreads_survives_a_dead_replica_and_guards_keys(
    venv: Path, stubs: dict[str, Stub], tmp_path: Path
) -> None:
    started = time.monotonic()
    proxy = start_proxy(
        gateway_config(stubs), {**KEYS, "LITELLM_MASTER_KEY": MASTER_KEY}, HOST, free_port(HOST), tmp_path
    )
    try:
        print(f"proxy ready in {time.monotonic() - started:.1f} s (pid {proxy.pid})")

        # No key: the probes answer, the API refuses.
        assert call(proxy, "/health/liveliness", key=None)[0] == 200
        status, body = chat(proxy, key=None)
        assert status == 401, body
        assert call(proxy, "/metrics", key=None)[0] == 401, "/metrics needs the key on this version"

        # Both replicas serve; each got its own key (a wrong key would have been refused with 401).
        for _ in range(12):
            status, body = chat(proxy)
            assert status == 200, body
        assert len(stubs["a"].hits) > 0 and len(stubs["b"].hits) > 0, (len(stubs["a"].hits), len(stubs["b"].hits))
        assert len(stubs["a"].hits) + len(stubs["b"].hits) == 12
        assert stubs["a"].hits[0] == {"path": "/v1/chat/completions", "model": CHAT_MODEL}
        assert stubs["a"].refused == stubs["b"].refused == 0

        # Embeddings go to Infinity's /embeddings with the embeddings key.
        status, body = call(proxy, "/v1/embeddings", {"model": EMBED_MODEL, "input": ["a", "b"]})
        assert status == 200, body
        assert isinstance(body, dict) and len(body["data"]) == 2
        assert stubs["emb"].hits == [{"path": "/embeddings", "model": "nomic-ai/nomic-embed-text-v1.5"}]
        assert stubs["emb"].refused == 0

        # /metrics with the key (prometheus callback): the proxy's own counters.
        status, metrics = call(proxy, "/metrics/")
        assert status == 200 and isinstance(metrics, str) and "litellm_" in metrics

        # One replica gone: requests go on, on the other one. Until the dead replica is cooled down (its second
        # failure here, allowed_fails: 1), a request that draws it three times fails: at most one does (~1 in 5 runs).
        stubs["b"].stop()
        served_by_a = len(stubs["a"].hits)
        times, failed = [], []
        for _ in range(8):
            t0 = time.monotonic()
            status, body = chat(proxy)
            times.append(time.monotonic() - t0)
            if status != 200:
                failed.append(body)
        print("with one replica down, per request (s):", " ".join(f"{t:.3f}" for t in times), f"failed: {len(failed)}")
        assert len(failed) <= 1 and all("Cannot connect" in str(body) for body in failed), failed
        assert len(stubs["a"].hits) == served_by_a + 8 - len(failed)
        for _ in range(4):  # cooled down: no request fails any more
            status, body = chat(proxy)
            assert status == 200, body
    except BaseException:
        print(proxy.log_tail(60))
        raise
    finally:
        proxy.stop()
    assert proxy.process.poll() is not None
