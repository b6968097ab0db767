"""The speed model against published gfx906 serving measurements: the fit, and how it does out of sample.

Run: venv/bin/python bench/speed_model.py

Data (data/throughput/, see its README):
- mixa3607-2xmi50.json, every point: `vllm bench serve` on 2x MI50 32GB at 225 W, vLLM 0.11.0 gfx906 with
  Triton AWQ: gemma-3-27b AWQ at TP 2 and Qwen3-VL-8B AWQ at TP 1. The decode runs send a random prefix
  of `input_len` tokens that the prefix cache holds after the warm-ups (their TTFT is ~0.1 s at 16K
  tokens): the model is given them as cached tokens.
- other-sources.json, the points that pass these rules, each excluded one listed with its reason: the
  data does not flag it `uncertain` or `approximate`; no speculative decoding and no expert parallel (the
  plan models neither); TP and the GPU stated; an architecture known here (the catalog's, or a
  config.json cited below: Qwen3.5/3.6/3.8, Qwen3-Next, MiniMax, GLM, DeepSeek and Gemma 4 are not);
  a decode, offline-throughput or prefill kind. A point whose workload (prompt length, concurrency) is
  not stated is taken as one short chat request (REPORTED_PROMPT, REPORTED_OUTPUT, concurrency 1) and
  weighs REPORTED in the fit.

Per point, the metric the plan shows: decode_tokens_per_s (1000 / TPOT at concurrency 1),
output_tokens_per_s (all requests together), prefill_tokens_per_s (prompt / TTFT).

The fit (components/planning/performance.py's decode terms, the catalog's `speed.gfx906`):
1. weights, kv, kv_serial, dequant_ops, allreduce_s and sequence_s by weighted least squares on the
   relative error of the step time (TPOT; for an offline run, running sequences / output rate), on the
   dense models, pulled gently towards PRIOR: a term the data says little about (a fold without TP > 1,
   say) keeps about its prior, and the print shows which did. The matmul term is not fitted here: it
   runs at prefill.py's MATMUL_EFFICIENCY, fitted on prefills.
2. the MoE layers: their experts' bytes at the dense rate, and moe_layer_s, each MoE layer's latency, by least
   squares on the MoE points, the rest as fitted (no MoE point: no latency).
3. the band: sigma, and single_sigma for a single request on more than one GPU (where the boxes measured
   disagree most: mixa3607's TP 2 runs one request slower than four, nlzy's TP 4 faster than the model), by
   maximum likelihood on the leave-one-source-out residuals of the data fitted (each box predicted by a fit
   without it: the plan's case, a box it never saw; sigma with a weak prior, SPREAD_PRIOR), and experts_sigma per unit share of the step the MoE
   layers take, the same way (a MoE point whose box is left out is predicted by a fit that saw no other MoE
   model from it, or none at all: the spread says how far that goes wrong).
Prefill constants are prefill.py's (the gemma runs' slowest), not refitted here: the gemma prefill points are
in sample for them in every column below; the others ("prefill, new") are not.

Out of sample, the whole procedure (1-3) runs without the left-out group: leave one model out, and leave
one source (box, fork) out. Targets (issue 19), out of sample: median error <= 25%, median band width
high/low <= 2, at least 8 of 10 points inside the band, the bound never below a measured value.
"""

from __future__ import annotations

import json
import math
import statistics
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from components.planning.catalog import Architecture, Gpu, QuantizationConfig, load_catalog  # noqa: E402
from components.planning.performance import (  # noqa: E402
    Efficiency,
    Rate,
    Server,
    Workload,
    moe_layers,
    performance,
    spread_terms,
    step_parts,
)

THROUGHPUT = ROOT / "data" / "throughput"
AWQ = QuantizationConfig(quant_method="awq", bits=4, group_size=128, zero_point=True)
GPTQ_INT4 = QuantizationConfig(quant_method="gptq", bits=4, group_size=128)
GPTQ_INT8 = QuantizationConfig(quant_method="gptq", bits=8, group_size=128)
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
# ByteDance-Seed/Seed-OSS-36B-Instruct's config.json (transformers' SeedOssConfig documents the same
# layers, heads, head_dim, MLP and vocabulary; its class default hidden_size 4096 is not the 36B's 5120).
SEED_OSS_36B = Architecture.model_validate(
    {
        "model_type": "seed_oss",
        "head_dim": 128,
        "hidden_size": 5120,
        "intermediate_size": 27648,
        "max_position_embeddings": 524288,
        "num_attention_heads": 80,
        "num_hidden_layers": 64,
        "num_key_value_heads": 8,
        "tie_word_embeddings": False,
        "vocab_size": 155136,
    }
)
# Qwen/Qwen3-235B-A22B's shapes as zyzshishui/slime scripts/models/qwen3-235B-A22B.sh gives them (94
# layers, hidden 4096, 64 heads, 4 KV groups of 128, expert FFN 1536, 128 experts, top 8, vocab 151936).
QWEN3_235B_A22B = Architecture.model_validate(
    {
        "model_type": "qwen3_moe",
        "head_dim": 128,
        "hidden_size": 4096,
        "intermediate_size": 12288,
        "moe_intermediate_size": 1536,
        "num_experts": 128,
        "num_experts_per_tok": 8,
        "max_position_embeddings": 40960,
        "num_attention_heads": 64,
        "num_hidden_layers": 94,
        "num_key_value_heads": 4,
        "tie_word_embeddings": False,
        "vocab_size": 151936,
    }
)
# MiniMaxAI/MiniMax-M2's shapes, transformers' MiniMaxM2Config defaults (src/transformers/models/minimax_m2/
# configuration_minimax_m2.py at 008e574: 62 layers, hidden 3072, 48 heads and 8 KV heads of 128, 256 experts of
# FFN 1536 (Mixtral-style `intermediate_size`), top 8, no shared expert, vocab 200064, untied). M2.7 taken as the
# same (a test of another project's "official contract" for M2.7 lists these shapes); cyankiwi's AWQ 4-bit taken as
# group 128 with zero points (its group size unverified).
MINIMAX_M2 = Architecture.model_validate(
    {
        "model_type": "minimax_m2",
        "head_dim": 128,
        "hidden_size": 3072,
        "intermediate_size": 1536,
        "max_position_embeddings": 196608,
        "num_attention_heads": 48,
        "num_hidden_layers": 62,
        "num_key_value_heads": 8,
        "num_local_experts": 256,
        "num_experts_per_tok": 8,
        "tie_word_embeddings": False,
        "vocab_size": 200064,
    }
)
# A point whose workload is not stated: one short chat request, and this weight in the fit.
REPORTED_PROMPT, REPORTED_OUTPUT, REPORTED = 500, 300, 0.3
# A prior for each fitted decode constant, and how hard the fit is pulled towards it. dequant: shift, mask,
# convert and scale with the zero point, about 4 FP16 operations per weight.
PRIOR = Efficiency(weights=0.5, kv=0.25, kv_serial=0.5, allreduce_s=50e-6, sequence_s=1e-3, dequant=4.0)
PRIOR_WEIGHT = 0.05
# step_parts with these gives each term's feature: bytes over HBM, latency counts (matmul stays prefill's).
UNIT = Efficiency(weights=1.0, kv=1.0, allreduce_s=1.0, sequence_s=1.0, experts=1.0, kv_serial=1.0, dequant=1.0)
FITTED = ("weights", "kv", "kv_serial", "allreduce", "sequence", "dequant")
# The model prefill.py's constants come from (mixa3607's gemma-3-27b runs): in sample for the prefill in every column.
PREFILL_FITTED_ON = "gemma-3-27b"
# A prior on the band's sigma, as if this many residuals of this spread had been seen besides the data's: boxes
# differ by about 30% (power caps, PCIe lanes, builds). With the whole data it moves nothing; a fold of three small
# boxes, whose few residuals happen to agree, keeps a band instead of collapsing to their agreement.
SPREAD_PRIOR, SPREAD_PRIOR_WEIGHT = 0.3, 2.0
# The grid the band's spreads are searched on; at most 2 (a rate unknown within e^2).
SIGMAS = (0.02, 0.05, 0.08, 0.1, 0.12, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5, 0.6, 0.7, 0.85, 1.0, 1.25, 1.5, 1.75, 2.0)


def architectures() -> dict[str, Architecture]:
    """The measured models by the name their data gives, with the checkpoint's quantization."""
    catalog = load_catalog().models
    gemma = catalog["google/gemma-3-27b-it"].model_copy(update={"quantization_config": AWQ})
    llama = catalog["meta-llama/Llama-3.1-8B-Instruct"]
    return {
        "gaunernst/gemma-3-27b-it-qat-autoawq": gemma,
        "cpatonn/Qwen3-VL-8B-Instruct-AWQ-4bit": QWEN3_VL_8B.model_copy(update={"quantization_config": AWQ}),
        "meta-llama/Meta-Llama-3.1-8B-Instruct": llama,
        "NousResearch/Hermes-3-Llama-3.1-8B": llama,
        "Seed-OSS-36B-Instruct-GPTQ-Int8": SEED_OSS_36B.model_copy(update={"quantization_config": GPTQ_INT8}),
        "Qwen3-235B-A22B-AWQ": QWEN3_235B_A22B.model_copy(update={"quantization_config": AWQ}),
        "Qwen/Qwen3-235B-A22B-GPTQ-Int4": QWEN3_235B_A22B.model_copy(update={"quantization_config": GPTQ_INT4}),
        "Qwen2.5-72B-Instruct-GPTQ-Int4": catalog["Qwen/Qwen2.5-72B-Instruct-AWQ"].model_copy(
            update={"quantization_config": GPTQ_INT4}
        ),
        "Qwen3-32B-GPTQ-Int4": catalog["Qwen/Qwen3-32B"].model_copy(update={"quantization_config": GPTQ_INT4}),
        "cyankiwi/MiniMax-M2.7-AWQ-4bit": MINIMAX_M2.model_copy(update={"quantization_config": AWQ}),
        "QuantTrio/MiniMax-M2.1-AWQ": MINIMAX_M2.model_copy(update={"quantization_config": AWQ}),
    }


@dataclass(frozen=True)
class Point:
    id: str
    source: str  # the box and fork: mixa3607, or other-sources.json's source_group
    model: str
    server: Server
    workload: Workload
    metric: str  # a field of Performance
    measured: float
    weight: float  # in the fit: 1, or REPORTED for a workload not stated
    tpot_s: float | None  # the step time the decode constants are fitted on (None: a prefill)

    @property
    def running(self) -> int:
        return min(self.workload.concurrency, self.server.max_num_seqs)

    @property
    def context(self) -> int:
        return self.workload.prompt_tokens + self.workload.output_tokens // 2


def _gpu(row: dict[str, Any]) -> Gpu | None:
    named = [g for g in load_catalog().gpus.values() if g.product.lower() in str(row.get("gpu", "")).lower()]
    return max(named, key=lambda g: len(g.product)) if named else None


def mixa3607() -> list[Point]:
    archs = architectures()
    gpu = load_catalog().gpus["mi50-32gb"]
    out: list[Point] = []
    for r in json.loads((THROUGHPUT / "mixa3607-2xmi50.json").read_text()):
        arch = archs[r["model"]]
        server = Server(arch, gpu, int(r["tensor_parallel_size"]), 49152, int(r["max_num_seqs"] or 256), 10**6)
        n, c = int(r["input_len"]), int(r["max_concurrency"])
        model = r["model"].split("/")[1]
        if r["kind"] == "serve_prefill":
            w = Workload(n, 1, 1)
            rate = n / r["mean_ttft_ms"] * 1000
            out.append(Point(r["id"], "mixa3607", model, server, w, "prefill_tokens_per_s", rate, 1.0, None))
            continue
        w = Workload(n, int(r["output_len"]), c, cached_tokens=n)
        tpot = r["mean_tpot_ms"] / 1000
        metric, rate = (
            ("decode_tokens_per_s", 1 / tpot) if c == 1 else ("output_tokens_per_s", r["output_throughput_tok_s"])
        )
        out.append(Point(r["id"], "mixa3607", model, server, w, metric, rate, 1.0, tpot))
    return out


def _excluded(r: dict[str, Any], archs: dict[str, Architecture]) -> str | None:
    if r.get("speculative_decoding"):
        return "speculative decoding"
    if r.get("expert_parallel"):
        return "expert parallel (the plan models tensor parallel only)"
    if r.get("uncertain") or r.get("approximate"):
        return "flagged uncertain or approximate in the data"
    if not r.get("tensor_parallel_size") or _gpu(r) is None:
        return "TP or GPU not stated"
    if r["model"] not in archs:
        return "architecture not known here"
    if r["kind"] not in ("decode", "decode_single", "offline_throughput", "prefill"):
        return f"kind {r['kind']} (workload or concurrency unknown)"
    if r["kind"] == "prefill" and not r.get("input_len"):
        return "prompt length not stated"
    return None


def other_sources() -> tuple[list[Point], dict[str, list[str]]]:
    """The points of other-sources.json the rules above take, and the others by reason."""
    archs = architectures()
    out: list[Point] = []
    excluded: dict[str, list[str]] = {}
    for r in json.loads((THROUGHPUT / "other-sources.json").read_text()):
        reason = _excluded(r, archs)
        if reason is not None:
            excluded.setdefault(reason, []).append(r["id"])
            continue
        gpu, arch, tp = _gpu(r), archs[r["model"]], int(r["tensor_parallel_size"])
        assert gpu is not None
        seqs = int(r.get("max_num_seqs") or 256)
        server = Server(arch, gpu, tp, int(r.get("max_model_len") or 32768), seqs, 10**6)
        model = str(r.get("model_short") or r["model"])
        if r["kind"] == "offline_throughput":  # vllm bench throughput: every prompt at once, output forced
            outputs = int(r["num_prompts"]) * int(r["output_len"])
            prompt = round((int(r["total_num_tokens"]) - outputs) / int(r["num_prompts"]))
            w = Workload(prompt, int(r["output_len"]), seqs)
            rate = outputs / float(r["elapsed_s"])
            out.append(
                Point(r["id"], r["source_group"], model, server, w, "output_tokens_per_s", rate, 1.0, seqs / rate)
            )
        elif r["kind"] == "prefill":
            w = Workload(int(r["input_len"]), 1, 1)
            out.append(
                Point(
                    r["id"], r["source_group"], model, server, w, "prefill_tokens_per_s", r["prefill_tok_s"], 1.0, None
                )
            )
        else:
            stated = r.get("input_len") is not None
            prompt = int(r["input_len"]) if stated else REPORTED_PROMPT
            w = Workload(prompt, int(r.get("output_len") or REPORTED_OUTPUT), 1)
            rate = float(r["decode_tok_s"])
            weight = 1.0 if stated and r.get("max_concurrency") == 1 else REPORTED
            out.append(
                Point(r["id"], r["source_group"], model, server, w, "decode_tokens_per_s", rate, weight, 1 / rate)
            )
    return out, excluded


def points() -> list[Point]:
    return mixa3607() + other_sources()[0]


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


def _features(p: Point) -> dict[str, float]:
    return step_parts(p.server, p.running, p.context, UNIT)


def _coefficients(eff: Efficiency) -> list[float]:
    """The fitted terms' coefficients on their features (seconds per feature unit)."""
    return [1 / eff.weights, 1 / eff.kv, eff.kv_serial / eff.kv, eff.allreduce_s, eff.sequence_s, eff.dequant]


def fit_constants(train: list[Point]) -> Efficiency:
    """Steps 1 and 2 of the module's docstring: the decode constants on the dense points, then experts."""
    decode = [p for p in train if p.tpot_s is not None]
    dense = [p for p in decode if not p.server.arch.is_moe]
    prior = _coefficients(PRIOR)
    rows, targets, weights = [], [], []
    for p in dense:
        assert p.tpot_s is not None
        f = _features(p)
        rows.append([f[t] / p.tpot_s for t in FITTED])
        targets.append(1.0 - f["compute"] / p.tpot_s)
        weights.append(p.weight)
    k = len(prior)
    ata = [[sum(w * r[i] * r[j] for r, w in zip(rows, weights, strict=True)) for j in range(k)] for i in range(k)]
    atb = [sum(w * r[i] * t for r, t, w in zip(rows, targets, weights, strict=True)) for i in range(k)]
    lam = PRIOR_WEIGHT * sum(weights)
    for i in range(k):
        ata[i][i] += lam / prior[i] ** 2
        atb[i] += lam / prior[i]
    c = [max(x, 1e-3 * q) for x, q in zip(_solve(ata, atb), prior, strict=True)]
    eff = Efficiency(
        weights=1 / c[0], kv=1 / c[1], kv_serial=c[2] / c[1], allreduce_s=c[3], sequence_s=c[4], dequant=c[5]
    )
    # The experts' bytes at the dense rate; each MoE layer's latency by least squares on the MoE points, the
    # rest as fitted (none: no latency).
    eff = replace(eff, experts=eff.weights, moe_layer_s=0.0)
    num = den = 0.0
    for p in decode:
        layers = moe_layers(p.server.arch)
        if not layers:
            continue
        assert p.tpot_s is not None
        x = layers / p.tpot_s
        rest = sum(step_parts(p.server, p.running, p.context, eff).values()) / p.tpot_s
        num += p.weight * x * (1 - rest)
        den += p.weight * x * x
    return replace(eff, moe_layer_s=max(0.0, num / den) if den else 0.0)


@dataclass(frozen=True)
class Band:
    sigma: float
    single_sigma: float
    experts_sigma: float


def _shares(p: Point, eff: Efficiency) -> tuple[float, float]:
    """The point's step as the plan spreads its band (performance.spread_terms)."""
    batch = 1 if p.metric == "decode_tokens_per_s" else p.running
    return spread_terms(p.server, step_parts(p.server, batch, p.context, eff), batch)


def _spread(band: Band, shares: tuple[float, float]) -> float:
    return math.hypot(band.sigma, shares[0] * band.single_sigma, shares[1] * band.experts_sigma)


def fit_band(train: list[Point], eff: Efficiency) -> Band:
    """Step 3: sigma and single_sigma by maximum likelihood on leave-one-source-out residuals."""
    residuals: list[tuple[float, tuple[float, float], float]] = []
    for source in sorted({p.source for p in train}):
        fold = fit_constants([p for p in train if p.source != source])
        for p in train:
            if p.source == source and p.tpot_s is not None:
                residuals.append((math.log(p.measured / estimate(p, fold)), _shares(p, fold), p.weight))

    def nll(b: Band) -> float:
        out = 0.0
        for r, shares, w in residuals:
            v = _spread(b, shares) ** 2
            out += w * (0.5 * math.log(v) + r * r / (2 * v))
        # the prior on sigma: SPREAD_PRIOR_WEIGHT residuals of SPREAD_PRIOR (an inverse-gamma prior on its square)
        v = max(b.sigma, 1e-3) ** 2
        return out + SPREAD_PRIOR_WEIGHT * (0.5 * math.log(v) + SPREAD_PRIOR**2 / (2 * v))

    band = Band(0.2, 0.5, 0.5)
    for _ in range(4):  # coordinate descent on a grid
        band = min((Band(s, band.single_sigma, band.experts_sigma) for s in SIGMAS), key=nll)
        band = min((Band(band.sigma, s, band.experts_sigma) for s in (0.0, *SIGMAS)), key=nll)
        band = min((Band(band.sigma, band.single_sigma, s) for s in (0.0, *SIGMAS)), key=nll)
    return band


def estimate(p: Point, eff: Efficiency) -> float:
    rate: Rate = getattr(performance(p.server, p.workload, eff), p.metric)
    return rate.estimate


def predict(p: Point, eff: Efficiency, band: Band, z: float) -> Rate:
    """The plan's rate for the point under these constants and this band (a prefill keeps prefill.py's)."""
    if p.tpot_s is not None:
        eff = replace(eff, band=math.exp(z * _spread(band, _shares(p, eff))))
    rate: Rate = getattr(performance(p.server, p.workload, eff), p.metric)
    return rate


def z_of(coverage: float) -> float:
    return statistics.NormalDist().inv_cdf(0.5 + coverage / 2)


def calibrate(train: list[Point]) -> tuple[Efficiency, Band]:
    eff = fit_constants(train)
    return eff, fit_band(train, eff)


@dataclass(frozen=True)
class Figures:
    median_error: float
    worst_error: float
    median_width: float
    inside: int
    total: int
    bound_below: int


class Measured(Protocol):
    """A measured point (this bench's Point, bench/llamacpp_speed.py's)."""

    @property
    def measured(self) -> float: ...


def figures(results: Sequence[tuple[Measured, Rate]]) -> Figures:
    errors = [abs(r.estimate / p.measured - 1) for p, r in results]
    widths = [r.high / r.low for _, r in results]
    inside = sum(1 for p, r in results if r.low <= p.measured <= r.high)
    below = sum(1 for p, r in results if r.bound is not None and r.bound < p.measured)
    return Figures(statistics.median(errors), max(errors), statistics.median(widths), inside, len(results), below)


def out_of_sample(data: list[Point], key: Callable[[Point], str], z: float) -> dict[str, Rate]:
    """Each group predicted by the whole procedure run without it."""
    out: dict[str, Rate] = {}
    for group in sorted({key(p) for p in data}):
        eff, band = calibrate([p for p in data if key(p) != group])
        for p in data:
            if key(p) == group:
                out[p.id + p.metric] = predict(p, eff, band, z)
    return out


@dataclass(frozen=True)
class Evaluation:
    fitted: Efficiency
    band: Band
    columns: dict[str, dict[str, Rate]]  # in sample, leave one model out, leave one source out
    data: list[Point]

    def figures(self, column: str, which: Callable[[Point], bool] = lambda p: True) -> Figures:
        return figures([(p, self.columns[column][p.id + p.metric]) for p in self.data if which(p)])


COLUMNS = ("in sample", "leave one model out", "leave one source out")


def evaluate(coverage: float | None = None) -> Evaluation:
    data = points()
    z = z_of(coverage if coverage is not None else load_catalog().speed["gfx906"].decode_band.coverage)
    eff, band = calibrate(data)
    inside = {p.id + p.metric: predict(p, eff, band, z) for p in data}
    lomo = out_of_sample(data, lambda p: p.model, z)
    loso = out_of_sample(data, lambda p: p.source, z)
    return Evaluation(eff, band, dict(zip(COLUMNS, (inside, lomo, loso), strict=True)), data)


def unseen(p: Point) -> bool:
    """Whether a left-out column predicts the point without it: every decode point, the prefills of other models."""
    return p.tpot_s is not None or not p.model.startswith(PREFILL_FITTED_ON)


def _held(p: Point, r: Rate) -> str:
    return "ok" if r.low <= p.measured <= r.high else "NO"


def _cell(p: Point, r: Rate) -> str:
    return f"{r.estimate:7.1f} {r.low:7.1f}-{r.high:<7.1f} {_held(p, r)}"


def main() -> None:
    e = evaluate()
    f, b = e.fitted, e.band
    print(
        f"fitted on all points: weights {f.weights:.3f} of HBM, experts {f.experts:.3f} and {f.moe_layer_s * 1e6:.0f} us "
        f"a MoE layer, KV {f.kv:.3f} "
        f"(+{f.kv_serial:.2f} of a sequence per step), all-reduce {f.allreduce_s * 1e6:.1f} us, "
        f"per sequence {f.sequence_s * 1e3:.2f} ms, matmuls at {f.matmul:.2f} of peak FP16 (prefill's)"
    )
    print(
        f"  (priors: weights {PRIOR.weights}, KV {PRIOR.kv} +{PRIOR.kv_serial}, unpacking {PRIOR.dequant} FP16 ops "
        f"per quantized weight (fitted {f.dequant:.2f}), all-reduce {PRIOR.allreduce_s * 1e6:.0f} us, per sequence "
        f"{PRIOR.sequence_s * 1e3:.2f} ms; experts: the dense rate, each MoE layer by least squares)"
    )
    print(
        f"band (ln spread): {b.sigma:.2f}, a single request on more than one GPU {b.single_sigma:.2f} more, and MoE "
        f"experts {b.experts_sigma:.2f} per unit share of the step\n"
    )
    _, excluded = other_sources()
    print(f"other-sources.json points left out ({sum(len(v) for v in excluded.values())}):")
    for reason, ids in sorted(excluded.items(), key=lambda kv: -len(kv[1])):
        print(f"  {len(ids):3}  {reason}")
    print()
    print(
        f"{'point':<44} {'model':<12} {'metric':<7} {'prompt':>6} {'c':>3} {'tp':>2} {'measured':>8} "
        f"{'in sample':>10} {'1 model out (band)':>26} {'1 source out (band)':>26} {'bound':>7}"
    )
    for p in e.data:
        inside, lomo, loso = (e.columns[c][p.id + p.metric] for c in COLUMNS)
        bound = f"{lomo.bound:7.1f}" if lomo.bound is not None else "      -"
        print(
            f"{p.id[:44]:<44} {p.model[:12]:<12} {p.metric.split('_')[0]:<7} {p.workload.prompt_tokens:>6} "
            f"{p.workload.concurrency:>3} {p.server.tensor_parallel_size:>2} {p.measured:8.1f} "
            f"{inside.estimate:7.1f} {_held(p, inside)} {_cell(p, lomo)} {_cell(p, loso)} {bound}"
        )
    print()
    for name in COLUMNS:
        for label, which in (
            ("all", lambda p: True),
            ("decode/output", lambda p: p.tpot_s is not None),
            ("prefill", lambda p: p.tpot_s is None),
            # the prefill points prefill.py's constants were not taken from: out of sample in every column
            ("prefill, new", lambda p: p.tpot_s is None and unseen(p)),
        ):
            x = e.figures(name, which)
            print(
                f"{name:<21} {label:<14} median error {x.median_error:6.1%}, worst {x.worst_error:6.1%}; "
                f"median band width {x.median_width:.2f}x; inside the band {x.inside:2}/{x.total:<2}; "
                f"bound below measured {x.bound_below}"
            )
    for name in COLUMNS[1:]:
        x = e.figures(name, unseen)
        print(
            f"\nDone-when ({name}, the {x.total} points out of sample: not the gemma prefills): median error / 25% = {x.median_error / 0.25:.2f}; band width / 2x = "
            f"{x.median_width / 2:.2f}; share inside / 80% = {x.inside / x.total / 0.8:.2f} (>= 1 meets it); "
            f"bound below measured: {x.bound_below}"
        )


if __name__ == "__main__":
    main()
