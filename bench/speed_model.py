"""The performance model against published gfx906 serving measurements, in sample and leaving one model out.

Run: venv/bin/python bench/speed_model.py

Data: the shared data's throughput/mixa3607-2xmi50.json (`vllm bench serve` on 2x MI50 32GB at 225 W,
vLLM 0.11.0 gfx906): gemma-3-27b AWQ at TP 2 and Qwen3-VL-8B AWQ at TP 1. other-sources.json is not
fitted on: its models' architectures are not in the catalog (Qwen3.5/3.6/3.8, MiniMax, GLM, DeepSeek,
hybrid attention among them), and most of its points name no workload or use speculative decoding.

Per point, the metric the plan shows:
- concurrency 1 decode runs: decode_tokens_per_s = 1000 / mean_tpot_ms;
- concurrency 4 decode runs: output_tokens_per_s (the bench's output throughput);
- prefill runs (one output token): prefill_tokens_per_s = input_len / mean_ttft_ms x 1000.
The decode runs send a random prefix of `input_len` tokens that the prefix cache holds after the
warm-ups (their TTFT is ~0.1 s at 16K tokens): the model is given them as cached tokens.

Decode constants (components/planning/performance.py) are fitted by least squares on the relative
error of TPOT, pulled gently towards a prior (PRIOR) so that a fold missing a term (the TP 1 model
alone says nothing of the all-reduce) still has a value. Prefill constants are prefill.py's (fitted on
the gemma runs only): the Qwen3-VL prefill point is out of sample for them.

Targets (issue 19), out of sample: median error <= 25%, median band width high/low <= 2, at least
8 of 10 points inside the band, the bound never below a measured value.
"""

from __future__ import annotations

import json
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from components.planning.catalog import Architecture, Gpu, QuantizationConfig, load_catalog  # noqa: E402
from components.planning.memory import DTYPE_BYTES  # noqa: E402
from components.planning.performance import (  # noqa: E402
    Efficiency,
    Rate,
    Server,
    Workload,
    kv_read_bytes,
    performance,
    weights_read_bytes,
)

THROUGHPUT = ROOT.parent / "shared" / "data" / "throughput"
AWQ = QuantizationConfig(quant_method="awq", bits=4, group_size=128, zero_point=True)
# Qwen/Qwen3-VL-8B-Instruct's config.json text_config (the same shapes as Qwen3-8B) and vision_config;
# cpatonn's AWQ 4-bit checkpoint taken as group 128 with zero points (its group size unverified).
QWEN3_VL_8B = Architecture.model_validate(
    {
        "model_type": "qwen3_vl",
        "head_dim": 128,
        "hidden_size": 4096,
        "intermediate_size": 12288,
        "max_position_embeddings": 262144,
        "num_attention_heads": 32,
        "num_hidden_layers": 36,
        "num_key_value_heads": 8,
        "tie_word_embeddings": False,
        "vocab_size": 151936,
        "vision_config": {
            "depth": 27,
            "hidden_size": 1152,
            "intermediate_size": 4304,
            "num_heads": 16,
            "out_hidden_size": 4096,
            "patch_size": 16,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "deepstack_visual_indexes": [8, 16, 24],
        },
    }
)
# A prior for each decode constant: 1 / efficiency for the two HBM terms, seconds for the latencies.
PRIOR = Efficiency(weights=0.5, kv=0.25, allreduce_s=50e-6, sequence_s=1e-3)
PRIOR_WEIGHT = 0.05


def architectures() -> dict[str, Architecture]:
    gemma = load_catalog().models["google/gemma-3-27b-it"].model_copy(update={"quantization_config": AWQ})
    return {
        "gaunernst/gemma-3-27b-it-qat-autoawq": gemma,
        "cpatonn/Qwen3-VL-8B-Instruct-AWQ-4bit": QWEN3_VL_8B.model_copy(update={"quantization_config": AWQ}),
    }


@dataclass(frozen=True)
class Point:
    id: str
    model: str
    server: Server
    workload: Workload
    metric: str  # a field of Performance
    measured: float
    tpot_s: float | None  # the decode runs' mean TPOT, what the decode constants are fitted on


def points() -> list[Point]:
    if not THROUGHPUT.is_dir():
        raise SystemExit(f"the published measurements are not at {THROUGHPUT}")
    archs = architectures()
    gpu: Gpu = load_catalog().gpus["mi50-32gb"]
    out: list[Point] = []
    rows: list[dict[str, Any]] = json.loads((THROUGHPUT / "mixa3607-2xmi50.json").read_text())
    for r in rows:
        arch = archs[r["model"]]
        server = Server(arch, gpu, int(r["tensor_parallel_size"]), 49152, int(r["max_num_seqs"] or 256), 10**6)
        n, c = int(r["input_len"]), int(r["max_concurrency"])
        if r["kind"] == "serve_prefill":
            w = Workload(n, 1, 1)
            out.append(
                Point(r["id"], r["model"], server, w, "prefill_tokens_per_s", n / r["mean_ttft_ms"] * 1000, None)
            )
            continue
        w = Workload(n, int(r["output_len"]), c, cached_tokens=n)
        tpot = r["mean_tpot_ms"] / 1000
        if c == 1:
            out.append(Point(r["id"], r["model"], server, w, "decode_tokens_per_s", 1 / tpot, tpot))
        else:
            out.append(Point(r["id"], r["model"], server, w, "output_tokens_per_s", r["output_throughput_tok_s"], tpot))
    return out


def _solve(a: list[list[float]], b: list[float]) -> list[float]:
    """Gaussian elimination with partial pivoting (no numpy in the project's venv)."""
    n = len(b)
    m = [[*row, b[i]] for i, row in enumerate(a)]
    for col in range(n):
        pivot = max(range(col, n), key=lambda r: abs(m[r][col]))
        m[col], m[pivot] = m[pivot], m[col]
        for r in range(n):
            if r != col and m[col][col]:
                f = m[r][col] / m[col][col]
                m[r] = [x - f * y for x, y in zip(m[r], m[col], strict=True)]
    return [m[i][n] / m[i][i] for i in range(n)]


def fit(train: list[Point]) -> Efficiency:
    """Least squares of TPOT's relative error over the decode points, with a ridge towards PRIOR."""
    prior = [1 / PRIOR.weights, 1 / PRIOR.kv, PRIOR.allreduce_s, PRIOR.sequence_s]
    rows: list[list[float]] = []
    targets: list[float] = []
    for p in train:
        if p.tpot_s is None:
            continue
        s, w = p.server, p.workload
        dtype_bytes, hbm = DTYPE_BYTES[s.dtype], s.gpu.hbm_gbps * 1e9
        batch, context = w.concurrency, w.prompt_tokens + w.output_tokens // 2
        features = [
            weights_read_bytes(s.arch, s.tensor_parallel_size, dtype_bytes, batch) / hbm,
            batch * kv_read_bytes(s.arch, s.tensor_parallel_size, dtype_bytes, context) / hbm,
            2 * s.arch.num_hidden_layers if s.tensor_parallel_size > 1 else 0.0,
            float(batch),
        ]
        rows.append([f / p.tpot_s for f in features])
        targets.append(1.0)
    k = len(prior)
    ata = [[sum(r[i] * r[j] for r in rows) for j in range(k)] for i in range(k)]
    atb = [sum(r[i] * t for r, t in zip(rows, targets, strict=True)) for i in range(k)]
    lam = PRIOR_WEIGHT * len(rows)
    for i in range(k):
        ata[i][i] += lam / prior[i] ** 2
        atb[i] += lam / prior[i]
    c = [max(x, 1e-3 * p) for x, p in zip(_solve(ata, atb), prior, strict=True)]
    return Efficiency(weights=1 / c[0], kv=1 / c[1], allreduce_s=c[2], sequence_s=c[3])


def rate(p: Point, eff: Efficiency) -> Rate:
    rate_: Rate = getattr(performance(p.server, p.workload, eff), p.metric)
    return rate_


@dataclass(frozen=True)
class Figures:
    median_error: float
    worst_error: float
    median_width: float
    inside: int
    total: int
    bound_below: int


def figures(results: list[tuple[Point, Rate]]) -> Figures:
    errors = [abs(r.estimate / p.measured - 1) for p, r in results]
    widths = [r.high / r.low for _, r in results]
    inside = sum(1 for p, r in results if r.low <= p.measured <= r.high)
    below = sum(1 for p, r in results if r.bound is not None and r.bound < p.measured)
    return Figures(statistics.median(errors), max(errors), statistics.median(widths), inside, len(results), below)


def evaluate() -> tuple[Efficiency, Figures, Figures, list[tuple[Point, Rate, Rate]]]:
    """The fit on every point (in sample) and each model predicted by a fit on the others."""
    data = points()
    everything = fit(data)
    inside = [(p, rate(p, everything)) for p in data]
    outside: list[tuple[Point, Rate]] = []
    for model in sorted({p.model for p in data}):
        eff = fit([p for p in data if p.model != model])
        outside += [(p, rate(p, eff)) for p in data if p.model == model]
    by_id = {p.id + p.metric: r for p, r in outside}
    rows = [(p, r, by_id[p.id + p.metric]) for p, r in inside]
    return everything, figures(inside), figures(outside), rows


def main() -> None:
    eff, ins, out, rows = evaluate()
    print(
        f"fitted on all points: weights {eff.weights:.3f} of HBM, KV {eff.kv:.3f}, "
        f"all-reduce {eff.allreduce_s * 1e6:.1f} us, per sequence {eff.sequence_s * 1e3:.2f} ms\n"
    )
    print(
        f"{'point':<28} {'model':<10} {'metric':<22} {'in/ctx':>6} {'c':>2} {'measured':>9} "
        f"{'in-sample':>9} {'out':>9} {'band (out)':>17} {'held':>4} {'bound':>7}"
    )
    for p, r, o in rows:
        held = "yes" if o.low <= p.measured <= o.high else "NO"
        bound = f"{o.bound:7.1f}" if o.bound is not None else "      -"
        print(
            f"{p.id:<28} {p.model.split('/')[1][:10]:<10} {p.metric:<22} {p.workload.prompt_tokens:>6} "
            f"{p.workload.concurrency:>2} {p.measured:9.1f} {r.estimate:9.1f} {o.estimate:9.1f} "
            f"{o.low:8.1f}-{o.high:<8.1f} {held:>4} {bound}"
        )
    for name, f in (("in sample", ins), ("leave one model out", out)):
        print(
            f"\n{name}: median error {f.median_error:.1%}, worst {f.worst_error:.1%}; median band width "
            f"{f.median_width:.2f}x; inside the band {f.inside}/{f.total}; bound below measured {f.bound_below}"
        )
    print(
        "\nDone-when (out of sample): median error / 25% = "
        f"{out.median_error / 0.25:.2f}; band width / 2x = {out.median_width / 2:.2f}; "
        f"share inside / 80% = {out.inside / out.total / 0.8:.2f} (>= 1 meets it); bound below measured: {out.bound_below}"
    )


if __name__ == "__main__":
    main()
