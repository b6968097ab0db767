"""What an engine is (components/planning/engines/__init__.py holds the registry of them)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from components.planning.catalog import Catalog
from components.planning.rules import Assessment
from components.planning.service import Container, Gpus, Secret
from components.settings import Problem, StackSettings


@dataclass(frozen=True)
class ServiceContext:
    """What an engine is given to plan one service's container."""

    stack: StackSettings
    name: str  # the service's name: a server's, or "embeddings"
    key: str  # its settings' key in the fleet form: `servers.chat-a`, `embeddings`
    settings: Any  # its section of the stack, as the engine's settings model
    host: str
    bind: str
    pull_timeout: int
    labels: Mapping[str, str]
    gpus: Gpus | None
    catalog: Catalog
    # Its own key (the stack's or a generated one), by name; None: it takes none.
    api_key: Secret | None


def no_rules(s: StackSettings, name: str, catalog: Catalog) -> tuple[list[Problem], list[Problem]]:
    return [], []


def no_native_tools(settings: Any, catalog: Catalog) -> bool:
    return False


def no_assessment(s: StackSettings, name: str, catalog: Catalog) -> Assessment | None:
    return None


@dataclass(frozen=True)
class Engine:
    name: str
    # The component's type token each of its services registers as (`rocm-inference:<module>:<Type>`).
    component_type: str
    # The port it listens on in its container, and its OpenAI API's base path there.
    port: int
    path: str
    settings: type  # its settings model (components/settings/models.py)
    # The whole container of one service (command, environment, health check, download, devices, ...).
    container: Callable[[ServiceContext], Container]
    # What it is called where people read about it ("vLLM server chat-a").
    label: str
    # How LiteLLM reaches it: the provider prefix of its model names (`hosted_vllm/<served name>`).
    litellm_provider: str
    # Prometheus's job for its /metrics (the alert rules and dashboards select on it).
    scrape_job: str
    # Whether a server of it answers tool calls the chat page sends natively (tool_choice "auto").
    native_tools: Callable[[Any, Catalog], bool] = no_native_tools
    # The stack's rules for one of its servers, by name: (errors, warnings) in fleet keys (settings.validate).
    check: Callable[[StackSettings, str, Catalog], tuple[list[Problem], list[Problem]]] = no_rules
    # One of its servers' memory plan and speed bands; None: it has none to show.
    assess: Callable[[StackSettings, str, Catalog], Assessment | None] = no_assessment
