"""The serving engines, each one module: vllm (chat servers), infinity (embeddings). An engine holds in one place
its settings model, its command line and container, its health check, and how the gateway and the chat page
reach it; the deployment plan (components/planning/deployment.py) finds it here by name. A new engine adds its
module and one line to ENGINES, and no other module grows a branch for it.
"""

from __future__ import annotations

from components.planning.engines import infinity, vllm
from components.planning.engines.base import Engine, ServiceContext

__all__ = ["ENGINES", "Engine", "ServiceContext", "engine", "register"]

# By name. A new engine: its module beside these, and one entry here.
ENGINES: dict[str, Engine] = {e.name: e for e in (vllm.ENGINE, infinity.ENGINE)}


def register(e: Engine) -> None:
    """Add an engine to the registry (one of the project's is listed in ENGINES above)."""
    ENGINES[e.name] = e


def engine(name: str) -> Engine:
    return ENGINES[name]
