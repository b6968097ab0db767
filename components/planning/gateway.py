"""What the LiteLLM gateway is told: its config file, made from the stack (pure, free of Pulumi).

One `model_list` entry per vLLM server: servers that share a served_model_name are one model group,
which LiteLLM's router load-balances, retries and cools down (router_settings). The embeddings
server goes through LiteLLM's `infinity/` provider, which appends `/embeddings` to its api_base
(litellm/llms/infinity/embedding/transformation.py). No secret is in the file: the master key and
each backend's key reach the container as environment variables, named here (`os.environ/NAME`).

The gateway reaches a server on its own host by container name over a user-defined Docker network
(no host port involved), and a server on another host by that host's address and published port.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from components.planning.engines import EMBEDDINGS_ENGINE, engine, reach
from components.settings import StackSettings

GATEWAY_PORT = 4000
CONFIG_PATH = "/app/config.yaml"
MASTER_KEY_ENV = "LITELLM_MASTER_KEY"


def backend_key_env(service: str) -> str:
    """The environment variable that carries one backend's key into the gateway: BACKEND_KEY_CHAT_A."""
    return "BACKEND_KEY_" + re.sub(r"[^A-Z0-9]", "_", service.upper())


@dataclass(frozen=True)
class Backend:
    """One server as the gateway reaches it."""

    service: str  # server name, or "embeddings"
    model_name: str  # what clients ask for
    api_base: str
    key_env: str
    same_host: bool
    provider: str  # LiteLLM's provider of its engine


def backends(s: StackSettings) -> list[Backend]:
    """Every server behind the gateway, and how the gateway reaches it."""
    assert s.gateway is not None
    here = s.gateway.host
    out = []
    for name, srv in s.every_server.items():
        e = engine(srv.engine)
        same = srv.host == here
        base = reach(e, srv.container_name or name, srv.port, s.hosts[srv.host or ""].address, same)
        out.append(Backend(name, srv.name_served, base, backend_key_env(name), same, e.litellm_provider))
    if s.embeddings is not None:
        emb = s.embeddings
        e = engine(EMBEDDINGS_ENGINE)
        same = emb.host == here
        base = reach(e, emb.container_name, emb.port, s.hosts[emb.host or ""].address, same)
        out.append(Backend("embeddings", emb.model, base, backend_key_env("embeddings"), same, e.litellm_provider))
    return out


def litellm_config(s: StackSettings) -> dict[str, Any]:
    """The LiteLLM proxy's config.yaml, as data."""
    assert s.gateway is not None
    g = s.gateway
    models: list[dict[str, Any]] = []
    for b in backends(s):
        if b.service == "embeddings":
            models.append(
                {
                    "model_name": b.model_name,
                    "litellm_params": {
                        "model": f"{b.provider}/{b.model_name}",
                        "api_base": b.api_base,
                        "api_key": f"os.environ/{b.key_env}",
                    },
                    "model_info": {"mode": "embedding"},
                }
            )
        else:
            models.append(
                {
                    "model_name": b.model_name,
                    # its engine's LiteLLM provider (vLLM's: hosted_vllm/); the rest is the served name.
                    "litellm_params": {
                        "model": f"{b.provider}/{b.model_name}",
                        "api_base": b.api_base,
                        "api_key": f"os.environ/{b.key_env}",
                    },
                    "model_info": {"id": b.service},
                }
            )
    return {
        "model_list": models,
        "router_settings": {
            "routing_strategy": g.routing_strategy,
            "num_retries": g.num_retries,
            "allowed_fails": g.allowed_fails,
            "cooldown_time": g.cooldown_time,
            "timeout": g.request_timeout,
        },
        "litellm_settings": {
            "request_timeout": g.request_timeout,
            "telemetry": False,
            # /metrics for Prometheus (open source since 2025-11; behind the master key in 1.108.5)
            **({"callbacks": ["prometheus"]} if s.monitoring is not None else {}),
        },
        "general_settings": {"master_key": f"os.environ/{MASTER_KEY_ENV}"},
    }
