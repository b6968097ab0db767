"""The llama.cpp memory plan against the real llama-server, over a grid of synthetic models and settings.

Run: venv/bin/python bench/llamacpp_memory.py [--quick]

The server is the tests' build (tests/engine/llama_cpp.py: llama-cpp-python 0.3.36's llama.cpp, CPU backend,
two rpc-servers on loopback as the devices). Each point writes a tiny GGUF model (tests/llama_cpp_models.py), starts
the server with the plan's own command line (server_arguments) and compares the buffers it logs with the plan's,
per device and for the host. Model and KV buffers follow llama.cpp's rules and should agree to the log's rounding;
the compute buffer is fitted (components/planning/llamacpp_memory.py compute_buffers), so its error is printed per
class of model and placement.

Targets: model and KV within 1%, compute within 15%. Prints, per class, the median and largest errors, the share
of compute buffers within 15%, and the ratio of the largest to each target (<= 1 meets it).
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from components.planning.llamacpp_memory import LlamaCppArgs, MiB, plan, server_arguments  # noqa: E402
from components.tools.gguf_header import read_facts  # noqa: E402
from tests.engine.llama_cpp import BuildUnavailable, llama_cpp, run_server, start_rpc_server  # noqa: E402
from tests.llama_cpp_models import Shape, write_model  # noqa: E402
from tests.test_llamacpp_memory import GQA, MAMBA, MOE, RPC_HOSTS, SERVER_HOST, SWA, allocated, local_reader  # noqa: E402

TARGETS = {"model": 0.01, "kv": 0.01, "compute": 0.15}
# Shapes beyond the tests': other widths, head counts, vocabularies and expert layouts.
SHAPES: dict[str, Shape] = {
    "dense": GQA,
    "dense-narrow": Shape(n_embd=256, n_head=4, head_dim=64, n_head_kv=1, n_ff=768, n_vocab=1024),
    "dense-wide": Shape(n_embd=768, n_head=12, head_dim=64, n_head_kv=4, n_ff=2048, n_vocab=4096),
    "dense-many-heads": Shape(n_embd=512, n_head=16, head_dim=32, n_head_kv=8, n_ff=1024, n_vocab=8192),
    "swa": SWA,
    "swa-wide-window": Shape(arch="gemma3", n_layer=6, n_swa=512, tied=True, n_embd=384, n_head=6, n_ff=1024),
    "moe": MOE,
    "moe-many-experts": Shape(
        arch="qwen3moe", n_embd=256, n_head=4, n_head_kv=2, n_vocab=1024, n_expert=16, n_expert_used=4, n_ff_exp=512
    ),
    "mamba": MAMBA,
}


def points(quick: bool) -> list[tuple[str, dict[str, object], int]]:
    ubatches = (512,) if quick else (256, 512)
    contexts = (4096,) if quick else (2048, 8192)
    out: list[tuple[str, dict[str, object], int]] = []
    for shape, ub, ctx, fa, n_dev in itertools.product(SHAPES, ubatches, contexts, (True, False), (0, 2)):
        if shape == "mamba" and not fa:
            continue
        sizing: dict[str, object] = {"n_ctx": ctx, "n_ubatch": ub, "flash_attn": fa}
        out.append((shape, sizing, n_dev))
    for shape in ("moe", "moe-many-experts"):
        out.append((shape, {"n_ctx": 4096, "n_cpu_moe": 2}, 2))
        out.append((shape, {"n_ctx": 4096, "cpu_overrides": (r"\.ffn_(up|down|gate)_exps",)}, 2))
    out.append(("dense", {"n_ctx": 4096, "n_gpu_layers": 3}, 2))
    out.append(("dense", {"n_ctx": 8192, "n_parallel": 4}, 2))
    out.append(("dense", {"n_ctx": 8192, "n_parallel": 4, "kv_unified": True}, 2))
    out.append(("swa", {"n_ctx": 8192, "n_parallel": 3, "kv_unified": True}, 2))
    return out


def kind_of(shape: str, sizing: dict[str, object], n_dev: int) -> str:
    family = shape.split("-")[0]
    if sizing.get("n_cpu_moe"):
        return "moe, some experts on host"
    if sizing.get("cpu_overrides"):
        return "moe, all experts on host"
    if sizing.get("n_gpu_layers") is not None:
        return f"{family}, partial offload"
    return f"{family}, {'cpu' if n_dev == 0 else 'two devices'}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one micro-batch and one context per shape")
    quick = parser.parse_args().quick
    try:
        build = llama_cpp()
    except BuildUnavailable as exc:
        print(f"llama.cpp cannot be built here: {exc}")
        return 1
    print(f"llama.cpp {build.commit}")
    errors: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory(prefix="llamacpp-bench-") as tmp:
        work = Path(tmp)
        facts = {}
        for name, model_shape in SHAPES.items():
            files = write_model(work / f"{name}.gguf", model_shape)
            facts[name] = (read_facts(local_reader(work), files[0].name), files[0])
        for shape, sizing, n_dev in points(quick):
            rpc = [start_rpc_server(build, host, work, f"rpc{i}") for i, host in enumerate(RPC_HOSTS[:n_dev])]
            try:
                addresses = [r.url for r in rpc]
                args = LlamaCppArgs(devices=tuple(addresses), **sizing)  # type: ignore[arg-type]
                if n_dev:
                    args = replace(args, tensor_split=(1.0,) * n_dev)
                model_facts, model = facts[shape]
                ready, log = run_server(build, server_arguments(args, str(model), addresses), SERVER_HOST, work / "s")
            finally:
                for server in rpc:
                    server.stop()
            if not ready:
                print(f"  {shape} {sizing}: the server did not start")
                continue
            logged = allocated(log, addresses)
            planned = plan(model_facts, args)
            cls = errors.setdefault(kind_of(shape, sizing, n_dev), {k: [] for k in TARGETS})
            pairs = [(planned.host, logged.host)] + [
                (planned.devices[i], logged.devices[a]) for i, a in enumerate(addresses)
            ]
            for p, r in pairs:
                for k in TARGETS:
                    if r[k] >= 0.05:  # the log prints MiB to 0.01: an error within its rounding counts as none
                        cls[k].append(max(0.0, abs(getattr(p, k) / MiB - r[k]) - 0.005) / r[k])
    print(f"{'class':<28}{'buffers':>8}  {'model med/max':>14}  {'KV med/max':>14}  {'compute med/max':>16}  in 15%")
    worst = dict.fromkeys(TARGETS, 0.0)
    for name, cls in sorted(errors.items()):
        cells = []
        for k in TARGETS:
            v = cls[k] or [0.0]
            worst[k] = max(worst[k], max(v))
            cells.append(f"{100 * statistics.median(v):6.2f}/{100 * max(v):5.1f}%")
        inside = sum(e <= TARGETS["compute"] for e in cls["compute"])
        n = len(cls["compute"])
        print(f"{name:<28}{n:>8}  {cells[0]:>14}  {cells[1]:>14}  {cells[2]:>16}  {inside}/{n}")
    for k, target in TARGETS.items():
        print(f"largest {k} error / target: {worst[k] / target:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
