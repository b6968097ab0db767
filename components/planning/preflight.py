"""What the host's preflight check is told: pure logic, free of Pulumi.

The check itself is components/planning/preflight.sh, a POSIX shell script that runs on the ROCm host
(locally, or over SSH with pulumi-command) before any image is pulled.
"""

from __future__ import annotations

import hashlib
import math
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from components.planning.catalog import DTYPE_BYTES, Catalog
from components.planning.memory import GiB, weights_bytes_per_rank
from components.planning.rules import architecture_of, effective_dtype, server_contexts
from components.settings import GpuNode, Groups, StackSettings

SCRIPT = Path(__file__).with_name("preflight.sh")
# Embedding models are small next to an LLM (nomic-embed-text-v1.5: about 0.5 GB); room for a larger one.
EMBEDDINGS_MODEL_GIB = 3


def gfx_version(gfx: str) -> int:
    """An LLVM gfx target as KFD's gfx_target_version: gfx906 -> 90006, gfx90a -> 90010, gfx942 -> 90402."""
    match = re.fullmatch(r"gfx(\d+)([0-9a-f])([0-9a-f])", gfx)
    if not match:
        raise ValueError(gfx)
    return int(match.group(1)) * 10000 + int(match.group(2), 16) * 100 + int(match.group(3), 16)


@dataclass(frozen=True)
class PreflightSpec:
    gpus: tuple[GpuNode, ...]
    gfx: str
    min_vram_bytes: int
    groups: Groups
    project: str
    stack: str
    # model cache volume, GiB its model downloads into it, and the model's directory in the Hub cache ("": any)
    volumes: tuple[tuple[str, int, str], ...]
    # The host's root_mount key, where node-exporter binds / with `rslave` (/ must be shared there); else "".
    root_shared_key: str = ""

    def environment(self) -> dict[str, str]:
        return {
            "PREFLIGHT_GPUS": " ".join(f"{g.index}:{g.card}:{g.render}" for g in self.gpus),
            "PREFLIGHT_GFX": str(gfx_version(self.gfx)) if self.gfx else "",
            "PREFLIGHT_GFX_NAME": self.gfx,
            "PREFLIGHT_VRAM_BYTES": str(self.min_vram_bytes) if self.min_vram_bytes else "",
            "PREFLIGHT_VIDEO_GID": str(self.groups.video),
            "PREFLIGHT_RENDER_GID": str(self.groups.render),
            "PREFLIGHT_PROJECT": self.project,
            "PREFLIGHT_STACK": self.stack,
            "PREFLIGHT_VOLUMES": " ".join(f"{name}:{gib}:{repo}" for name, gib, repo in self.volumes),
            **({"PREFLIGHT_ROOT_SHARED": self.root_shared_key} if self.root_shared_key else {}),
        }

    def command(self) -> str:
        """`VAR=value ... sh -s`: the script comes on stdin, so the same line works over SSH."""
        assignments = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(self.environment().items()))
        return f"{assignments} sh -s"

    def triggers(self, script: str) -> list[str]:
        """Re-run when the script, the host config or the GPU assignment changes."""
        return [hashlib.sha256(script.encode()).hexdigest()[:16], self.command()]


def script_text() -> str:
    return SCRIPT.read_text()


def preflight_spec(s: StackSettings, host_name: str, catalog: Catalog, project: str, stack: str) -> PreflightSpec:
    """What one host is checked for: the GPUs its servers own, and the caches its services download into."""
    host = s.hosts[host_name]
    gpu = catalog.gpus.get(host.gpu)
    contexts = {n: c for n, c in server_contexts(s).items() if s.servers[n].host == host_name}
    nodes: list[GpuNode] = []
    volumes: list[tuple[str, int, str]] = []
    for ctx in contexts.values():
        nodes += host.nodes(ctx.vllm.gpus)
        arch, _ = architecture_of(ctx, catalog)
        assert arch is not None and gpu is not None, "the rules refuse a server without a known GPU and model first"
        checkpoint = weights_bytes_per_rank(arch, 1, DTYPE_BYTES[effective_dtype(ctx.vllm.dtype, arch, gpu)])
        # The download happens before the server is replaced: a model the cache does not hold yet adds its size.
        repo = "models--" + ctx.vllm.model.replace("/", "--")
        volumes.append((ctx.vllm.volume_name, math.ceil(checkpoint * 1.05 / GiB), repo))
    if s.embeddings and s.embeddings.host == host_name:
        volumes.append((s.embeddings.volume_name, EMBEDDINGS_MODEL_GIB, ""))
    memory = host.gpu_memory_gib or (gpu.memory_gib if gpu else 0)
    return PreflightSpec(
        gpus=tuple(nodes),
        gfx=gpu.gfx if gpu else "",
        min_vram_bytes=int(memory * GiB) - (1 << 20) if memory else 0,  # what the catalog says, less rounding
        groups=host.groups,
        project=project,
        stack=stack,
        volumes=tuple(volumes),
        # node-exporter runs on every host of a stack with monitoring
        root_shared_key=s.key(f"hosts.{host_name}.root_mount")
        if s.monitoring is not None and host.root_mount == "shared"
        else "",
    )
