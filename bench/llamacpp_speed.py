"""The llama.cpp speed model against published gfx906 figures: the fit on the dev points, and how it does out of sample.

Run: venv/bin/python bench/llamacpp_speed.py

Data: data/llamacpp/bench.yaml (see its README). Its held-out rule, fixed before any fit: every mixa3607/ML-gfx906
point is `dev` (4x MI50: llama-bench JSONL of ten Qwen3.5-9B quantizations and four Gemma-4-26B-A4B ones on one GPU,
Qwen3.5-9B Q8_0 and Gemma-4-26B-A4B Q4_K_L at depth 0/16K/32K on 1, 2 and 4 GPUs split by layer and by tensor, and
the 2025 readme table: six models on two GPUs); every other source's point is `heldout`. `fit` refuses a held-out
point. The model (components/planning/llamacpp_speed.py) is one request's decode (tg) and prefill (pp) rate.

Taken from the file, and left out with the reason printed:
- Vulkan: the model is ROCm's (its kernels, its split); the only Vulkan figures are one source's server runs.
- llama-server figures at more than one concurrent request: the model is one request's (a batch's decode is not
  modelled for llama.cpp yet). The single-request server figures are in.

The model facts the data does not give (layers, attention heads, KV heads and head size, sliding windows, experts,
the embedding a token does not read) are in ARCHS, each with its basis. The bytes a token reads are the file's
size scaled by the share of parameters it reads (the quantization taken as even across tensors: a few percent off
where the embedding or output has its own type). The engine computes them exactly from the GGUF's tensors
(llamacpp_speed.traffic).

The fit (all on dev points only):
1. decode: per quantization family the share of HBM bandwidth, the KV share, a latency per layer, per layer-split
   hop and per all-reduced layer, by weighted least squares on the relative error of the step time (1 / tg), pulled
   gently towards PRIOR (a family a fold has no point of keeps about its prior).
2. prefill: per family the share of peak FP16 for the matmuls and one for attention, by least squares on the
   relative error of the prefill time, for each split_serial on a grid (the best kept).
3. the band: sigma (decode), prefill_sigma, and multi_sigma for more than one GPU, by maximum likelihood on the
   leave-one-model-out residuals (each model predicted by a fit without it), with a weak prior on the sigmas.

Columns: in sample (fitted on every dev point); leave one model out (dev: each model predicted by the whole
procedure 1-3 run without it); held out (every held-out point, predicted by the fit on all dev points: no fit saw
any of them). Targets (issue 29 point 8): median error <= 25%, at least 80% inside bands whose median width is at
most 2x.
"""

from __future__ import annotations

import functools
import math
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))  # its sibling, whether run as a script or loaded by a test

from speed_model import Figures, _solve, figures  # noqa: E402

from components.planning.catalog import Gpu, load_catalog  # noqa: E402
from components.planning.llamacpp_speed import (  # noqa: E402
    FAMILIES,
    FITTED,
    Constants,
    ModelTraffic,
    Setup,
    cache_type_scale,
    decode_parts,
    decode_rate,
    prefill_parts,
    prefill_rate,
    quant_family,
    split_share,
    spread_terms,
)
from components.planning.performance import Rate  # noqa: E402

BENCH = ROOT / "data" / "llamacpp" / "bench.yaml"
GIB = 1 << 30


@dataclass(frozen=True)
class Arch:
    """A model's facts, in parameters (billions) and shapes. `unread`: parameters a token does not read on the GPU
    (the input embedding when the output has its own matrix; Gemma 3n's per-layer embeddings). `active`: the
    parameters a token runs through (a MoE model's, as its name or card states; None: every one)."""

    pattern: str  # matches the point's model_type or model_file
    layers: int
    full: int  # full-attention layers
    heads: int
    kv_heads: int
    head_dim: int
    unread: float
    basis: str
    params: float | None = None  # when the data gives none
    active: float | None = None
    swa: int = 0
    swa_kv_heads: int = 0
    swa_head_dim: int = 0
    window: int = 0
    experts: tuple[int, int] = (0, 0)  # (used, count)
    size_gib: float | None = None  # when the data gives none


V = 1e-9  # a count of parameters in billions
ARCHS: dict[str, Arch] = {
    "gemma3n-E4B": Arch(
        r"gemma3n E4B|gemma-3n-E4B",
        35,
        7,
        8,
        2,
        256,
        262144 * 35 * 256 * V,
        swa=28,
        swa_kv_heads=2,
        swa_head_dim=256,
        window=512,
        basis="google/gemma-3n-E4B config (35 layers, 8/2 heads of 256, window 512); llama.cpp's gemma3n pattern "
        "1 full in 5 (llamacpp_memory.SWA_PATTERN); per-layer embeddings 262144 x 35 x 256 stay on the CPU",
    ),
    "gemma3-12B": Arch(
        r"gemma3 12B|gemma-3-12b",
        48,
        8,
        16,
        8,
        256,
        0.0,
        swa=40,
        swa_kv_heads=8,
        swa_head_dim=256,
        window=1024,
        basis="google/gemma-3-12b config (48 layers, 16/8 heads of 256, window 1024, tied embedding); pattern 6",
    ),
    "qwen3-14B": Arch(
        r"qwen3 14B|Qwen3-14B",
        40,
        40,
        40,
        8,
        128,
        151936 * 5120 * V,
        basis="Qwen/Qwen3-14B config (40 layers, 40/8 heads of 128, hidden 5120, vocab 151936, untied)",
    ),
    "gemma3-27B": Arch(
        r"gemma3 27B|gemma-3-27b",
        62,
        10,
        32,
        16,
        128,
        0.0,
        swa=52,
        swa_kv_heads=16,
        swa_head_dim=128,
        window=1024,
        basis="components/planning/catalog.yaml google/gemma-3-27b-it (62 layers, 32/16 heads of 128, window 1024, "
        "tied); pattern 6",
    ),
    "llama4-scout": Arch(
        r"llama4 17Bx16E",
        48,
        12,
        40,
        8,
        128,
        202048 * 5120 * V,
        active=17.0,
        swa=36,
        swa_kv_heads=8,
        swa_head_dim=128,
        window=8192,
        experts=(1, 16),
        basis="meta-llama/Llama-4-Scout-17B-16E config (48 layers, 40/8 heads of 128, chunked attention 8192 on 3 "
        "layers in 4, 16 experts top 1, vocab 202048 untied); 17B active from its name",
    ),
    "qwen3.5-9B": Arch(
        r"qwen35 9B|Qwen3\.5-9B",
        32,
        8,
        16,
        4,
        256,
        248320 * 4096 * V,
        params=8.95,
        basis="vllm-project/vllm vllm/transformers_utils/configs/qwen3_5.py Qwen3_5TextConfig defaults (vocab 248320, "
        "hidden 4096, 32 layers, 16/4 heads); head 256 and 1 full-attention layer in 4 as Qwen3-Next "
        "(llamacpp_memory.RECURRENT_BY_INTERVAL); 8.95B parameters as llama-bench counts them (dev rows)",
    ),
    "gemma4-26B-A4B": Arch(
        r"gemma4 26B|gemma-4-26B",
        30,
        5,
        16,
        2,
        512,
        0.0,
        params=25.23,
        active=4.0,
        swa=25,
        swa_kv_heads=8,
        swa_head_dim=256,
        window=1024,
        experts=(8, 128),
        basis="google/gemma-4-26B-A4B config as a third-party design note quotes it (30 layers, 16 heads; sliding "
        "8 KV heads of 256, window 1024; 5 global layers with 2 KV heads of 512; 128 experts top 8; tied); 4B "
        "active from its name; 25.23B parameters as llama-bench counts them (dev rows)",
    ),
    "gemma4-12B": Arch(
        r"gemma-4-12B",
        48,
        8,
        16,
        1,
        512,
        0.0,
        params=11.8,
        swa=40,
        swa_kv_heads=8,
        swa_head_dim=256,
        window=1024,
        size_gib=11.8e9 * 4.9 / 8 / GIB,
        basis="google/gemma-4-12B-it text config as a third-party test quotes it (48 layers, 16 heads; sliding 8 KV "
        "heads of 256, window 1024; global 1 KV head of 512, 1 in 6); parameters counted from those shapes; size "
        "at Q4_K_M's nominal 4.9 bits a weight (the data gives none)",
    ),
    "ministral-3-14B": Arch(
        r"Ministral-3-14B",
        40,
        40,
        32,
        8,
        128,
        131072 * 5120 * V,
        basis="not checked against its config.json: Mistral 14B shapes (40 layers, 32/8 heads of 128, vocab 131072 "
        "untied); parameters from the BF16 file's size",
    ),
    "ministral-3-8B": Arch(
        r"Ministral-3-8B",
        34,
        34,
        32,
        8,
        128,
        131072 * 4096 * V,
        basis="not checked against its config.json: (34 layers, 32/8 heads of 128, vocab 131072 untied); parameters "
        "from the BF16 file's size",
    ),
    "nemotron-3-nano-30B-A3B": Arch(
        r"Nemotron-3-Nano-30B",
        52,
        6,
        32,
        2,
        128,
        131072 * 2688 * V,
        params=31.6,
        active=3.5,
        experts=(6, 128),
        basis="NVIDIA's model card as quoted by NVIDIA-AI-IOT/jetson-generative-ai-playground and NeMo (52 layers: "
        "23 Mamba-2, 23 MoE, 6 attention; 128 experts, 3.5B active of 31.6B); attention 32/2 heads of 128 and "
        "vocab 131072 x 2688 not checked",
    ),
    "qwen3.6-27B": Arch(
        r"Qwen3\.6-27B",
        64,
        16,
        24,
        4,
        256,
        248320 * 5120 * V,
        params=26.9,
        basis="THUDM/slime scripts/models/qwen3.5-27B.sh (64 layers, 24 heads, 4 KV groups of 256, hidden 5120, vocab "
        "248320 untied), Qwen3.6-27B taken as the same shapes; 1 full-attention layer in 4",
    ),
    "qwen3.6-35B-A3B": Arch(
        r"Qwen3\.6-35B-A3B",
        40,
        10,
        16,
        2,
        256,
        248320 * 2048 * V,
        params=35.0,
        active=3.0,
        experts=(8, 256),
        basis="not checked against its config.json: 40 layers, 10 full-attention with 2 KV heads of 256 (20 KiB a "
        "token, as a third-party sizing note gives), 256 experts top 8, hidden 2048; 3B active from its name",
    ),
    "gpt-oss-20B": Arch(
        r"gpt-oss[- ]20[bB]",
        24,
        12,
        64,
        8,
        64,
        201088 * 2880 * V,
        params=20.9,
        active=3.6,
        swa=12,
        swa_kv_heads=8,
        swa_head_dim=64,
        window=128,
        experts=(4, 32),
        size_gib=11.27,
        basis="openai/gpt-oss-20b config (24 layers, 64/8 heads of 64, window 128 on every other layer, 32 experts "
        "top 4, vocab 201088 untied, 3.6B active of 20.9B); the PR's points take kyuz0's file size",
    ),
    "llama-2-7B": Arch(
        r"llama-2-7b",
        32,
        32,
        32,
        32,
        128,
        32000 * 4096 * V,
        params=6.74,
        basis="meta-llama/Llama-2-7b config (32 layers, 32 heads of 128, no GQA, vocab 32000 untied)",
    ),
    "qwen3-30B-A3B": Arch(
        r"qwen3moe 30B",
        48,
        48,
        32,
        4,
        128,
        151936 * 2048 * V,
        active=3.3,
        experts=(8, 128),
        basis="Qwen/Qwen3-30B-A3B config (48 layers, 32/4 heads of 128, 128 experts top 8, hidden 2048, vocab 151936 "
        "untied, 3.3B active)",
    ),
    "qwen2.5-vl-7B": Arch(
        r"Qwen2\.5-VL-7B",
        28,
        28,
        28,
        4,
        128,
        152064 * 3584 * V,
        params=7.62,
        size_gib=7.62e9 * 4.9 / 8 / GIB,
        basis="Qwen/Qwen2.5-VL-7B-Instruct text config (28 layers, 28/4 heads of 128, vocab 152064 untied, 7.6B); "
        "size at Q4_K_M's nominal 4.9 bits a weight (the data gives none)",
    ),
}
# A prior for each fitted constant and how hard a fit is pulled to it (a share of the fit's weight).
PRIOR = replace(
    FITTED,
    decode=dict.fromkeys(FAMILIES, 0.6),
    kv=0.5,
    layer_s=1e-4,
    layer_hop_s=1e-3,
    allreduce_s=5e-5,
    prefill=dict.fromkeys(FAMILIES, 0.4),
    attention=2.0,
)
# As if this many points sat at the prior, per constant.
PRIOR_POINTS = 0.3
# A family no dev point measured borrows another's rates (MXFP4: plain 4-bit blocks with a shared scale, like Q4_0).
BORROWED = {"mxfp4": "legacy"}
SPLIT_SERIALS = tuple(x / 100 for x in range(0, 81, 2))
SIGMAS = (0.02, 0.05, 0.08, 0.1, 0.12, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5, 0.6, 0.7, 0.85, 1.0)
SPREAD_PRIOR, SPREAD_PRIOR_WEIGHT = 0.2, 2.0


@dataclass(frozen=True)
class Point:
    id: str
    set: str
    source: str
    model: str
    kind: str  # decode | prefill
    tokens: int
    depth: int  # the mean context of a decoded token; the context before a prefill
    traffic: ModelTraffic
    setup: Setup
    backend: str
    measured: float  # tokens per second

    @property
    def family(self) -> str:
        return quant_family(self.traffic.quant)


def _gpu(name: str) -> Gpu:
    gpus = load_catalog().gpus
    if "16G" in name.upper() or "PRO VII" in name.upper():
        return gpus["mi50-16gb"]
    return gpus["mi50-32gb"]  # mixa3607's and kyuz0's MI50 32GB; the PR's "MI60 / MI50" taken at the MI50's rate


def _arch(row: dict[str, Any]) -> tuple[str, Arch] | None:
    name = f"{row.get('model_type') or ''} {row.get('model_file') or ''}"
    for key, a in ARCHS.items():
        if re.search(a.pattern, name):
            return key, a
    return None


def _traffic(a: Arch, row: dict[str, Any]) -> ModelTraffic:
    params = float(row.get("model_n_params") or (row.get("model_n_params_b") or a.params or 0) * 1e9)
    if params > 1e12:
        raise ValueError(row["id"])
    if params < 1e6:  # given in billions
        params *= 1e9
    size = float(row.get("model_size_bytes") or (row.get("model_size_gib") or a.size_gib or 0) * GIB)
    if not size:
        raise ValueError(f"{row['id']}: no model size")
    if not params:
        params = size / 2  # a 16-bit file: 2 bytes a parameter
    per_param = size / params
    active = (a.active * 1e9) if a.active else params
    read = active - a.unread * 1e9
    used, count = a.experts
    expert_params = (params - active) / (1 - used / count) if count else 0.0

    mix: tuple[tuple[str, float, float], ...] = ()
    quant = str(row["quant"])
    if quant.upper() == "UD-Q8_K_XL":  # Q8_0 (8.5 bits a weight) and BF16 (16): their shares from the file's size
        bf16 = min(1.0, max(0.0, (size * 8 / params - 8.5) / (16 - 8.5)))
        bytes_bf16 = bf16 * 16 / (bf16 * 16 + (1 - bf16) * 8.5)
        mix = (("q8_0", 1 - bytes_bf16, 1 - bf16), ("bf16", bytes_bf16, bf16))
    return ModelTraffic(
        n_layer=a.layers,
        quant=quant,
        weights_read_bytes=read * per_param,
        weights_bytes=(params - a.unread * 1e9) * per_param,
        active_parameters=read,
        kv_bytes_per_token=a.full * a.kv_heads * 2 * a.head_dim * 2.0,
        expert_bytes=expert_params * per_param,
        expert_used=used,
        expert_count=count,
        swa_kv_bytes_per_token=a.swa * a.swa_kv_heads * 2 * a.swa_head_dim * 2.0,
        swa_window=a.window,
        expert_parameters=expert_params,
        mix=mix,
    )


def _test(test: str) -> tuple[str, int, int]:
    m = re.fullmatch(r"(pp|tg)(\d+)(?:@d(\d+))?", test)
    if not m:
        raise ValueError(f"test {test!r}")
    return ("prefill" if m.group(1) == "pp" else "decode"), int(m.group(2)), int(m.group(3) or 0)


@functools.cache
def load() -> tuple[list[Point], dict[str, list[str]]]:
    """The points the model takes, and the others by reason."""
    rows = yaml.load(BENCH.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))["points"]
    out: list[Point] = []
    excluded: dict[str, list[str]] = {}
    for r in rows:
        reason = None
        found = _arch(r)
        if r["backend"] != "ROCm":
            reason = f"{r['backend']} (the model is ROCm's)"
        elif (r.get("concurrency") or 1) > 1:
            reason = "llama-server at more than one request (the model is one request's)"
        elif found is None:
            reason = "model not in ARCHS"
        if reason is not None:
            excluded.setdefault(f"{r['set']}: {reason}", []).append(r["id"])
            continue
        assert found is not None
        key, a = found
        kind, tokens, depth = _test(str(r["test"]))
        gpus = int(r.get("num_gpus") or 1)
        split = r.get("split_mode") or ("layer" if gpus > 1 else "none")
        setup = Setup(
            gpu=_gpu(str(r["gpu"])),
            num_gpus=gpus,
            split_mode=split,
            flash_attn=r.get("flash_attn") != 0,
            n_ubatch=int(r.get("n_ubatch") or 512),
            kv_scale=cache_type_scale(str(r.get("type_k") or "f16")),  # V taken as K's type
        )
        if kind == "decode":
            depth += tokens // 2
        group = r["source"].split("@")[0]
        out.append(
            Point(
                r["id"],
                r["set"],
                group,
                key,
                kind,
                tokens,
                depth,
                _traffic(a, r),
                setup,
                "ROCm",
                float(r["tokens_per_s"]),
            )
        )
    return out, excluded


# --- the fit ---------------------------------------------------------------------------------------------------


def _refuse_heldout(points: Sequence[Point]) -> None:
    held = [p.id for p in points if p.set != "dev"]
    if held:
        raise ValueError(
            f"a fit takes dev points only; held out: {', '.join(held[:3])}{'...' if len(held) > 3 else ''}"
        )


UNIT = replace(
    FITTED,
    decode=dict.fromkeys(FAMILIES, 1.0),
    kv=1.0,
    layer_s=1.0,
    layer_hop_s=1.0,
    allreduce_s=1.0,
    prefill=dict.fromkeys(FAMILIES, 1.0),
    attention=1.0,
    split_serial=0.0,
)
DECODE_TERMS = (*(f"decode:{f}" for f in FAMILIES), "kv", "layers", "hops", "allreduce")


def _decode_row(p: Point) -> list[float]:
    parts = decode_parts(p.traffic, p.setup, p.depth, UNIT)
    shares = {f: b for f, b, _ in p.traffic.families}
    return [
        *(parts["weights"] * shares.get(f, 0.0) for f in FAMILIES),
        parts["kv"],
        parts["layers"],
        parts["hops"],
        parts["allreduce"],
    ]


def _decode_prior(c: Constants) -> list[float]:
    return [*(1 / c.decode[f] for f in FAMILIES), 1 / c.kv, c.layer_s, c.layer_hop_s, c.allreduce_s]


def _ridge(rows: list[list[float]], targets: list[float], prior: list[float]) -> list[float]:
    """Least squares of rows . x = targets (relative rows), each x pulled towards its prior as by PRIOR_POINTS points."""
    k = len(prior)
    ata = [[sum(r[i] * r[j] for r in rows) for j in range(k)] for i in range(k)]
    atb = [sum(r[i] * t for r, t in zip(rows, targets, strict=True)) for i in range(k)]
    lam = PRIOR_POINTS
    for i in range(k):
        ata[i][i] += lam / prior[i] ** 2
        atb[i] += lam / prior[i]
    return [max(x, 1e-3 * q) for x, q in zip(_solve(ata, atb), prior, strict=True)]


def _fit_decode(points: Sequence[Point]) -> Constants:
    decode = [p for p in points if p.kind == "decode"]
    rows = [[x * p.measured for x in _decode_row(p)] for p in decode]  # feature / measured step time
    x = _ridge(rows, [1.0] * len(rows), _decode_prior(PRIOR))
    fams = dict(zip(FAMILIES, (1 / v for v in x[: len(FAMILIES)]), strict=True))
    measured = {f for p in decode for f, _, _ in p.traffic.families}
    for f in FAMILIES:
        if f not in measured:
            fams[f] = fams[BORROWED.get(f, "legacy")] if BORROWED.get(f, "legacy") in measured else PRIOR.decode[f]
    n = len(FAMILIES)
    return replace(FITTED, decode=fams, kv=1 / x[n], layer_s=x[n + 1], layer_hop_s=x[n + 2], allreduce_s=x[n + 3])


def _fit_prefill(points: Sequence[Point], c: Constants) -> Constants:
    prefill = [p for p in points if p.kind == "prefill"]
    measured = {f for p in prefill for f, _, _ in p.traffic.families}
    prior = [*(1 / PRIOR.prefill[f] for f in FAMILIES), 1 / PRIOR.attention]
    best: tuple[float, Constants] | None = None
    unit = replace(UNIT, decode=c.decode)
    cases = []  # per point: its parts per unit rate, family shares and measured time (the same for every serial)
    for p in prefill:
        parts = prefill_parts(p.traffic, p.setup, p.tokens, p.depth, unit)
        shares = {f: q for f, _, q in p.traffic.families}
        cases.append((p, parts, shares, p.tokens / p.measured))
    for serial in SPLIT_SERIALS:
        rows, targets = [], []
        for p, parts, shares, t in cases:
            share = split_share(p.setup, replace(c, split_serial=serial))
            rows.append(
                [*(parts["matmul"] * shares.get(f, 0.0) * share / t for f in FAMILIES), parts["attention"] * share / t]
            )
            targets.append(1.0 - parts["weights"] * share / t)
        x = _ridge(rows, targets, prior)
        loss = sum((sum(a * b for a, b in zip(r, x, strict=True)) - y) ** 2 for r, y in zip(rows, targets, strict=True))
        fams = {f: 1 / x[i] if f in measured else PRIOR.prefill[f] for i, f in enumerate(FAMILIES)}
        for f, to in BORROWED.items():
            if f not in measured and to in measured:
                fams[f] = fams[to]
        fitted = replace(c, prefill=fams, attention=1 / x[len(FAMILIES)], split_serial=serial)
        if best is None or loss < best[0]:
            best = (loss, fitted)
    assert best is not None
    return best[1]


def fit_constants(points: Sequence[Point]) -> Constants:
    """Steps 1 and 2: the decode and prefill constants, on dev points only (ValueError on a held-out one)."""
    _refuse_heldout(points)
    return _fit_prefill(points, _fit_decode(points))


def predict(p: Point, c: Constants) -> Rate:
    if p.kind == "decode":
        return decode_rate(p.traffic, p.setup, p.depth, c)
    return prefill_rate(p.traffic, p.setup, p.tokens, p.depth, c)


def fit_band(points: Sequence[Point], c: Constants) -> Constants:
    """Step 3: sigma, prefill_sigma and multi_sigma by maximum likelihood on leave-one-model-out residuals."""
    _refuse_heldout(points)
    residuals: list[tuple[float, str, float]] = []
    for model in sorted({p.model for p in points}):
        fold = fit_constants([p for p in points if p.model != model])
        for p in points:
            if p.model == model:
                residuals.append(
                    (math.log(p.measured / predict(p, fold).estimate), p.kind, spread_terms(p.traffic, p.setup)[0])
                )

    def nll(s: float, ps: float, ms: float) -> float:
        out = 0.0
        for r, kind, multi in residuals:
            v = math.hypot(s if kind == "decode" else ps, multi * ms) ** 2
            out += 0.5 * math.log(v) + r * r / (2 * v)
        for sig in (s, ps):
            out += SPREAD_PRIOR_WEIGHT * (0.5 * math.log(sig**2) + SPREAD_PRIOR**2 / (2 * sig**2))
        return out

    s, ps, ms = 0.2, 0.2, 0.2
    for _ in range(4):
        s = min(SIGMAS, key=lambda x: nll(x, ps, ms))
        ps = min(SIGMAS, key=lambda x: nll(s, x, ms))
        ms = min((0.0, *SIGMAS), key=lambda x: nll(s, ps, x))
    return replace(c, sigma=s, prefill_sigma=ps, multi_sigma=ms)


def calibrate(points: Sequence[Point]) -> Constants:
    """The whole procedure (1-3) on these dev points."""
    return fit_band(points, fit_constants(points))


# --- the figures -----------------------------------------------------------------------------------------------


COLUMNS = ("in sample", "leave one model out", "held out")


@dataclass(frozen=True)
class Evaluation:
    fitted: Constants
    columns: dict[str, dict[str, Rate]]
    points: list[Point]


def evaluate() -> Evaluation:
    points, _ = load()
    dev = [p for p in points if p.set == "dev"]
    held = [p for p in points if p.set != "dev"]
    c = calibrate(dev)
    inside = {p.id: predict(p, c) for p in dev}
    lomo: dict[str, Rate] = {}
    for model in sorted({p.model for p in dev}):
        fold = calibrate([p for p in dev if p.model != model])
        lomo.update({p.id: predict(p, fold) for p in dev if p.model == model})
    out = {p.id: predict(p, c) for p in held}
    return Evaluation(c, dict(zip(COLUMNS, (inside, lomo, out), strict=True)), points)


def classes(p: Point) -> list[str]:
    gpus = "1 GPU" if p.setup.num_gpus == 1 else f"multi-GPU ({p.setup.split_mode})"
    return [
        p.kind,
        f"{p.kind}, {p.family}",
        f"{p.kind}, {gpus}",
        f"{p.kind}, {p.source.removeprefix('https://github.com/').split('/')[0]}",
    ]


def _row(label: str, f: Figures) -> str:
    return (
        f"  {label:<36} n={f.total:<4} median error {f.median_error:6.1%} (worst {f.worst_error:6.1%}); inside the band "
        f"{f.inside:3}/{f.total:<3} ({f.inside / f.total:4.0%}); median width {f.median_width:.2f}x; "
        f"bound below measured {f.bound_below}"
    )


def main() -> None:
    e = evaluate()
    c = e.fitted
    _, excluded = load()
    print("fitted on the dev points (mixa3607/ML-gfx906):")
    print("  decode, share of HBM per family: " + ", ".join(f"{f} {c.decode[f]:.3f}" for f in FAMILIES))
    print(
        f"  KV {c.kv:.3f} of HBM; per layer {c.layer_s * 1e6:.0f} us; per layer-split hop {c.layer_hop_s * 1e3:.2f} ms;"
        f" per all-reduced layer {c.allreduce_s * 1e6:.0f} us"
    )
    print("  prefill, share of FP16 per family: " + ", ".join(f"{f} {c.prefill[f]:.3f}" for f in FAMILIES))
    print(
        f"  attention: K and V bytes at {c.attention:.3f} x HBM; row/tensor split leaves {c.split_serial:.2f} of the time unsplit"
    )
    print(
        f"  band (ln): decode {c.sigma:.2f}, prefill {c.prefill_sigma:.2f}, more than one GPU {c.multi_sigma:.2f} more; "
        f"borrowed: {BORROWED}"
    )
    print(f"\npoints left out ({sum(len(v) for v in excluded.values())}):")
    for reason, ids in sorted(excluded.items()):
        print(f"  {len(ids):3}  {reason}")
    for column in COLUMNS:
        results = [(p, e.columns[column][p.id]) for p in e.points if p.id in e.columns[column]]
        print(f"\n{column} ({len(results)} points):")
        labels = sorted({label for p, _ in results for label in classes(p)})
        for label in labels:
            print(_row(label, figures([(p, r) for p, r in results if label in classes(p)])))
    for column in COLUMNS[1:]:
        results = [(p, e.columns[column][p.id]) for p in e.points if p.id in e.columns[column]]
        f = figures(results)
        print(
            f"\nDone-when ({column}, {f.total} points): median error / 25% = {f.median_error / 0.25:.2f}; "
            f"band width / 2x = {f.median_width / 2:.2f}; share inside / 80% = {f.inside / f.total / 0.8:.2f} "
            "(<= 1, <= 1, >= 1 meet it)"
        )


def worst(column: str = "held out", n: int = 15, key: Callable[[Point], bool] = lambda p: True) -> None:
    """The points furthest from their estimate (for reading the data, not printed by main)."""
    e = evaluate()
    rows = [(p, e.columns[column][p.id]) for p in e.points if p.id in e.columns[column] and key(p)]
    for p, r in sorted(rows, key=lambda pr: -abs(math.log(pr[0].measured / pr[1].estimate)))[:n]:
        print(f"{p.id[:60]:<60} {p.measured:8.1f} {r.estimate:8.1f} {r.low:8.1f}-{r.high:<8.1f}")


if __name__ == "__main__":
    main()
