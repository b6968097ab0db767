"""Published vLLM startup figures, as planner inputs: shared by the accuracy test and the benchmark."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from components.planning.catalog import Architecture, load_catalog
from components.planning.memory import (
    PROFILES,
    Capacity,
    GiB,
    MemoryInputs,
    capacity_from_available,
    default_batch,
    plan,
)

# Keys a KV-only log never exercises (weights, positions): placeholders so the config validates.
_KV_ONLY_PLACEHOLDERS = {"vocab_size": 1, "intermediate_size": 1}


@dataclass(frozen=True)
class StartupLog:
    name: str
    source: str
    inputs: MemoryInputs
    reported: dict[str, Any]
    kv_only: bool = False

    @property
    def architecture_class(self) -> str:
        return self.inputs.arch.architecture_class

    def predicted(self) -> Capacity:
        """The planner's whole prediction, or, for a KV-only log, what it makes of the reported KV memory."""
        if self.kv_only:
            return capacity_from_available(self.inputs, self.reported["kv_cache_gib"] * GiB)
        return plan(self.inputs)


def _architecture(entry: dict[str, Any], base: Path) -> Architecture:
    if "architecture_file" in entry:
        data = json.loads((base / entry["architecture_file"]).read_text())
    elif "architecture" in entry:
        data = dict(entry["architecture"])
    else:
        return load_catalog().models[entry["model"]]
    if entry.get("kv_only"):
        data = {**_KV_ONLY_PLACEHOLDERS, **data}
    return Architecture.model_validate(data)


def load_startup_logs(path: Path) -> list[StartupLog]:
    out = []
    for e in yaml.safe_load(path.read_text()):
        kv_only = bool(e.get("kv_only"))
        gpu_memory_gib = e.get("gpu_memory_gib", 0.0)
        # What the log does not print comes from vLLM's own defaults for that card (get_batch_defaults).
        tokens, seqs = default_batch(gpu_memory_gib, e.get("device", ""))
        inputs = MemoryInputs(
            arch=_architecture(e, path.parent),
            gpu_memory_gib=gpu_memory_gib,
            gpu_memory_utilization=e.get("gpu_memory_utilization", 1.0),
            tensor_parallel_size=e["tensor_parallel_size"],
            max_model_len=e["max_model_len"],
            max_num_batched_tokens=e.get("max_num_batched_tokens", tokens),
            max_num_seqs=e.get("max_num_seqs", seqs),
            dtype=e["dtype"],
            profile=PROFILES[e["engine"]],
            dequantizes_for_large_batches=e.get("dequantizes_for_large_batches", False),
            sampler=e.get("sampler", "pytorch"),
        )
        out.append(StartupLog(e["name"], e["source"], inputs, e["reported"], kv_only))
    return out
