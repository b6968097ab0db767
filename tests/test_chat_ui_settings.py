"""The chat page's settings as literal values: what Open WebUI is told, written out here rather than compared
with the tables that produce them (components/planning/open_webui.py's OFFLINE, chat_ui.py's TASK_PREFIXES):
a wrong entry there would agree with itself. Each value's reason is given where it is made."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pulumi
import pytest
import yaml

from components.planning.catalog import load_catalog
from components.planning.chat_ui import join_secret, plan
from components.program import deploy
from components.settings.pulumi_config import load_from_pulumi
from components.tools.mocks import PlanMocks
from tests.conftest import inputs_of, shipped_plan
from tests.stacks import load, values_of
from tests.test_chat_ui import env
from tests.test_components import env_dict

# Test values of each secret part (chat_ui.py's names), to see which key reaches which endpoint.
KEYS = {
    "gateway_api_key": "KEY-GATEWAY",
    "server:chat-a": "KEY-CHAT-A",
    "server:chat-b": "KEY-CHAT-B",
    "server:coder": "KEY-CODER",
    "embeddings": "KEY-EMBEDDINGS",
}


def test_big_chats_page_is_told_exactly_this() -> None:
    """Every variable of the shipped single-host stack's page, secrets masked."""
    assert env(shipped_plan("big-chat").by_name("chat-ui-container").inputs["envs"]) == {
        # offline: nothing leaves the host
        "OFFLINE_MODE": "true",
        "ENABLE_VERSION_UPDATE_CHECK": "false",
        "ENABLE_OLLAMA_API": "false",
        "OLLAMA_BASE_URL": "http://ollama.invalid:11434",
        "ENABLE_WEB_SEARCH": "false",
        "ENABLE_COMMUNITY_SHARING": "false",
        "ENABLE_DIRECT_CONNECTIONS": "false",
        "ENABLE_IMAGE_GENERATION": "false",
        "RAG_EMBEDDING_MODEL_AUTO_UPDATE": "false",
        "RAG_RERANKING_MODEL_AUTO_UPDATE": "false",
        "WHISPER_MODEL_AUTO_UPDATE": "false",
        "ANONYMIZED_TELEMETRY": "false",
        "SCARF_NO_ANALYTICS": "true",
        "DO_NOT_TRACK": "true",
        "HF_HUB_OFFLINE": "1",
        # accounts
        "ENABLE_PERSISTENT_CONFIG": "false",
        "WEBUI_AUTH": "true",
        "ENABLE_SIGNUP": "false",
        "DEFAULT_USER_ROLE": "pending",
        "WEBUI_ADMIN_EMAIL": "admin@localhost",
        "WEBUI_ADMIN_NAME": "Admin",
        "WEBUI_ADMIN_PASSWORD": "[secret]",
        "WEBUI_SECRET_KEY": "[secret]",
        # chat: the one vLLM server, by container name on the host's network; no key on an open server
        "ENABLE_OPENAI_API": "true",
        "OPENAI_API_BASE_URLS": "http://vllm:8000/v1",
        "OPENAI_API_CONFIGS": '{"0": {"enable": true, "model_ids": ["casperhansen/llama-3.3-70b-instruct-awq"]}}',
        "DEFAULT_MODEL_PARAMS": '{"function_calling": "legacy"}',
        # documents: Infinity, by name, with nomic-embed-text's prefixes
        "RAG_EMBEDDING_ENGINE": "openai",
        "RAG_EMBEDDING_MODEL": "nomic-ai/nomic-embed-text-v1.5",
        "RAG_OPENAI_API_BASE_URL": "http://infinity-embeddings:7997",
        "RAG_EMBEDDING_QUERY_PREFIX": "search_query: ",
        "RAG_EMBEDDING_CONTENT_PREFIX": "search_document: ",
    }


def _secret_values(values: dict[str, Any], secrets: tuple[str, ...]) -> dict[str, str]:
    ui = plan(load(values, secrets).settings, load_catalog())
    shown = ("OPENAI_API_KEYS", "RAG_OPENAI_API_KEY")
    return {name: join_secret(parts, KEYS) for name, parts in ui.secret_environment.items() if name in shown}


def test_with_a_gateway_the_gateways_key_goes_to_the_gateway_for_chat_and_documents() -> None:
    secrets = ("gateway_api_key", "vllm_api_key", "embeddings_api_key")
    ui = plan(load(values_of("fleet"), secrets).settings, load_catalog())
    assert ui.environment["OPENAI_API_BASE_URLS"] == "http://litellm-gateway:4000/v1"
    assert ui.environment["RAG_OPENAI_API_BASE_URL"] == "http://litellm-gateway:4000/v1"
    assert json.loads(ui.environment["OPENAI_API_CONFIGS"]) == {
        "0": {"enable": True, "model_ids": ["llama-3.3-70b", "qwen2.5-7b"]}
    }
    # the servers' and Infinity's own keys never reach the page: the gateway holds them
    assert _secret_values(values_of("fleet"), secrets) == {
        "OPENAI_API_KEYS": "KEY-GATEWAY",
        "RAG_OPENAI_API_KEY": "KEY-GATEWAY",
    }


def _no_gateway(loopback_a: bool = False) -> dict[str, Any]:
    """The fleet without its gateway; gpu-a bound to loopback where chat-a is to need no key."""
    values = {k: v for k, v in values_of("fleet").items() if k not in ("gateway", "monitoring")}
    if loopback_a:
        values["hosts"]["gpu-a"]["bind"] = "127.0.0.1"
    return values


# chat-a on a loopback-bound gpu-a without a key; gpu-b's servers and Infinity with their own
MIXED = ("servers.chat-b.api_key", "servers.coder.api_key", "embeddings_api_key")


def test_without_a_gateway_each_servers_key_goes_to_its_own_endpoint_in_the_same_place() -> None:
    values = _no_gateway()
    ui = plan(load(values, ("vllm_api_key", "embeddings_api_key")).settings, load_catalog())
    assert ui.environment["OPENAI_API_BASE_URLS"] == "http://chat-a:8000/v1;http://gpu-b.lan:8001/v1"
    assert ui.environment["RAG_OPENAI_API_BASE_URL"] == "http://gpu-b.lan:7997"
    assert _secret_values(values, ("vllm_api_key", "embeddings_api_key")) == {
        "OPENAI_API_KEYS": "KEY-CHAT-A;KEY-CODER",
        "RAG_OPENAI_API_KEY": "KEY-EMBEDDINGS",
    }
    # chat-a without a key: its entry stays, empty, so that coder's key still pairs with coder's URL
    assert _secret_values(_no_gateway(loopback_a=True), MIXED) == {
        "OPENAI_API_KEYS": ";KEY-CODER",
        "RAG_OPENAI_API_KEY": "KEY-EMBEDDINGS",
    }
    # no key anywhere (every host on loopback): none is sent
    alone = _no_gateway(loopback_a=True)
    alone["hosts"]["gpu-b"]["bind"] = "127.0.0.1"
    assert _secret_values(alone, ()) == {}


@pulumi.runtime.test
def test_without_a_gateway_the_container_pairs_each_url_with_its_servers_key(
    mocks: PlanMocks, tmp_path: Path
) -> pulumi.Output[Any]:
    """The same pairing through the program: the keys the stack holds, as the container receives them."""
    values = _no_gateway(loopback_a=True)
    for server in ("chat-b", "coder"):
        values["servers"][server]["api_key"] = {"secure": "v1:AAAAAAAAAAAAAAAA:BBBBBBBB"}
    secure = {"embeddings_api_key": {"secure": "v1:AAAAAAAAAAAAAAAA:CCCCCCCC"}}
    path = tmp_path / "Pulumi.pairs.yaml"
    config = {f"rocm-inference:{k}": v for k, v in (values | secure).items()}
    path.write_text(yaml.safe_dump({"config": config}, sort_keys=False))
    plain = json.loads(json.dumps(values))
    plain["servers"]["chat-b"]["api_key"] = "chat-b-key-3c4d"
    plain["servers"]["coder"]["api_key"] = "coder-key-5e6f"
    runtime = {f"rocm-inference:{k}": json.dumps(v) if not isinstance(v, str) else v for k, v in plain.items()}
    runtime["rocm-inference:embeddings_api_key"] = "infinity-key-7a8b"
    pulumi.runtime.set_all_config(runtime, ["rocm-inference:servers", "rocm-inference:embeddings_api_key"])
    loaded, secrets = load_from_pulumi(path)
    outputs = deploy(loaded, secrets, "rocm-inference", "pairs")

    def check(_: dict[str, Any]) -> None:
        e = env_dict(inputs_of(mocks, ":Container", "chat-ui-container")["envs"]["value"])
        assert e["OPENAI_API_BASE_URLS"] == "http://chat-a:8000/v1;http://gpu-b.lan:8001/v1"
        assert e["OPENAI_API_KEYS"] == ";coder-key-5e6f"
        assert e["RAG_OPENAI_API_BASE_URL"] == "http://gpu-b.lan:7997"
        assert e["RAG_OPENAI_API_KEY"] == "infinity-key-7a8b"

    return pulumi.Output.all(**outputs).apply(check)


@pytest.mark.parametrize(
    ("overrides", "query", "document"),
    [
        ({}, "search_query: ", "search_document: "),  # absent: the model's own prefixes
        ({"query_prefix": "", "document_prefix": ""}, None, None),  # empty: none at all
        ({"query_prefix": ""}, None, "search_document: "),
        ({"document_prefix": "document: "}, "search_query: ", "document: "),  # not another model's (refused)
    ],
    ids=["absent", "both empty", "query empty", "document given"],
)
def test_prefix_overrides_absent_empty_and_given(
    overrides: dict[str, str], query: str | None, document: str | None
) -> None:
    values = values_of("big-chat")
    values["chat_ui"] = {**values["chat_ui"], **overrides}
    e = plan(load(values).settings, load_catalog()).environment
    assert e.get("RAG_EMBEDDING_QUERY_PREFIX") == query
    assert e.get("RAG_EMBEDDING_CONTENT_PREFIX") == document
