"""Published vLLM startup figures, as planner inputs: shared by the accuracy test and the benchmark."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from components.planning.catalog import Architecture, load_catalog
from components.planning.memory import PROFILES, Capacity, MemoryInputs, plan


@dataclass(frozen=True)
class StartupLog:
    name: str
    source: str
    inputs: MemoryInputs
    reported: dict[str, Any]

    def predicted(self) -> Capacity:
        return plan(self.inputs)


def load_startup_logs(path: Path) -> list[StartupLog]:
    catalog = load_catalog()
    out = []
    for e in yaml.safe_load(path.read_text()):
        arch = Architecture.model_validate(e["architecture"]) if "architecture" in e else catalog.models[e["model"]]
        inputs = MemoryInputs(
            arch=arch,
            gpu_memory_gib=e["gpu_memory_gib"],
            gpu_memory_utilization=e["gpu_memory_utilization"],
            tensor_parallel_size=e["tensor_parallel_size"],
            max_model_len=e["max_model_len"],
            max_num_batched_tokens=e["max_num_batched_tokens"],
            max_num_seqs=e["max_num_seqs"],
            dtype=e["dtype"],
            profile=PROFILES[e["engine"]],
            dequantizes_for_large_batches=e["dequantizes_for_large_batches"],
        )
        out.append(StartupLog(e["name"], e["source"], inputs, e["reported"]))
    return out
