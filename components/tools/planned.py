"""What a plan recorded: the resources the program registered under mocks, as plain data."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from components.planning.engines.llamacpp import LlamacppPlan
from components.planning.memory import Capacity
from components.planning.performance import Performance
from components.settings import NAMESPACE

SECRET_MASK = "[secret]"


def fake_image_id(name: str) -> str:
    """The image id the mocks give a RemoteImage: stands for the digest a real pull would return."""
    return "sha256:" + hashlib.sha256(name.encode()).hexdigest()


@dataclass
class PlannedResource:
    type: str
    name: str
    parent: str | None
    inputs: dict[str, Any]
    options: dict[str, Any] = field(default_factory=dict)
    urn: str = ""

    @property
    def custom(self) -> bool:
        return not self.type.startswith(f"{NAMESPACE}:")

    def as_json(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "name": self.name,
            "parent": self.parent,
            "inputs": self.inputs,
            "options": self.options,
            "urn": self.urn,
        }


@dataclass(frozen=True)
class ServerPlan:
    """One vLLM server's memory plan, with where it runs."""

    host: str
    gpus: tuple[int, ...]
    gpu_name: str
    capacity: Capacity | None
    performance: Performance | None = None
    advice: tuple[str, ...] = ()

    def capacity_json(self) -> dict[str, Any]:
        """The memory plan, and the speed bands at the server's workload where the plan fits."""
        doc: dict[str, Any] = self.capacity.as_json() if self.capacity else {}
        if self.performance is not None:
            doc["performance"] = self.performance.as_json()
            doc["advice"] = list(self.advice)
        return doc


@dataclass
class Plan:
    stack: str
    source: str
    resources: list[PlannedResource]
    outputs: dict[str, Any]
    warnings: list[str]
    servers: dict[str, ServerPlan] = field(default_factory=dict)
    gateway_config: dict[str, Any] | None = None
    prometheus_config: dict[str, Any] | None = None
    # Each llama.cpp server's memory plan and speed bands, by name.
    llamacpp: dict[str, LlamacppPlan] = field(default_factory=dict)

    def capacity_of(self, server: str) -> Capacity | None:
        sp = self.servers.get(server)
        return sp.capacity if sp else None

    def by_name(self, name: str) -> PlannedResource:
        return next(r for r in self.resources if r.name == name)

    def of_type(self, suffix: str) -> list[PlannedResource]:
        return [r for r in self.resources if r.type.endswith(suffix)]

    @property
    def services(self) -> list[PlannedResource]:
        """The long-running containers (not the one-shot downloads that run before them)."""
        return [r for r in self.of_type(":Container") if r.inputs.get("mustRun") is not False]

    def as_json(self) -> dict[str, Any]:
        return {
            "stack": self.stack,
            "file": self.source,
            "resources": [r.as_json() for r in self.resources],
            "outputs": self.outputs,
            "warnings": self.warnings,
            # One memory plan per server, by server name ("vllm" in the single-host form).
            "capacity": {
                **{name: sp.capacity_json() for name, sp in self.servers.items() if sp.capacity},
                **{name: lp.capacity_json() for name, lp in self.llamacpp.items()},
            },
        }
