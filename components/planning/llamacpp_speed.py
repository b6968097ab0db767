"""How fast llama.cpp's llama-server serves one request on gfx906: pure, bands from constants fitted on published runs.

The llama.cpp counterpart of components/planning/performance.py (vLLM): the same physics, the same band notion (an
estimate x/÷ exp(z x spread), `spread_terms` naming what widens it), the same out-of-sample discipline
(bench/llamacpp_speed.py fits the constants on data/llamacpp/bench.yaml's `dev` points only and prints how they do
leaving a model out and on the held-out points no fit saw).

Decode, one token of one request at `depth` tokens of context:

    step = weights read / (HBM x decode[family])        every weight on the GPUs a token runs through, once
         + layers x layer_s                             the per-layer kernels' launches and small ops
         + depth x KV bytes per token / (HBM x kv)      flash attention walks the context
         + (GPUs - 1) x layer_hop_s                     split by layer: the token crosses each device boundary
         + layers x allreduce_s                         split by row/tensor: an all-reduce per layer over PCIe

- Split by layer, the layers run one after the other: one request reads every weight at one GPU's bandwidth, and
  pays a hop at each boundary (mixa3607's 1/2/4 x MI50 runs: 1 GPU is the fastest for one request).
- Split by row or tensor, each GPU reads its share of the weights at once (the bytes divide by the GPU count); the
  layer latency does not divide, and each layer pays an all-reduce.
- The weight rate depends on the quantization family (`quant_family`): unpacking a K-quant's super-blocks costs
  more ALU per byte on gfx906 (no matrix cores) than Q8_0's or Q4_0's plain blocks, so a K-quant streams slower.

Prefill, `tokens` prompt tokens after `depth` tokens of context:

    time = 2 x active parameters x tokens / (FP16 x prefill[family])      the matmuls (dequantize + GEMM or MMQ)
         + K and V bytes the queries run through / (HBM x attention)      per (token, earlier token) pair, one
                                                                           token's K and V a layer (sliding window:
                                                                           within it)
         + micro-batches x (weights a micro-batch reads / (HBM x decode))  each micro-batch streams the weights again

- A MoE layer's expert runs the tokens routed to it in tiles of MMQ_TILE: a micro-batch that routes fewer to it
  pays a whole tile (`expert_padding`), why a small -ub slows a MoE prefill many times over.
- Flash attention's prefill on gfx906 follows the KV bytes (GQA heads share them), not the query heads' FLOPs
  (`attention_bytes`); `attention` is above 1: a query tile reuses the K and V it loads from the caches.

- Split by row or tensor: the time divides by the GPU count except a share `split_serial` (the all-reduces, the
  unsplit ops): time x (1/G + split_serial x (G - 1)/G). Split by layer: no speed-up for one request (the layers
  run in turn; llama.cpp pipelines micro-batches only when a batch holds several).

The band: ln(measured / estimate) spreads by `sigma` (decode) or `prefill_sigma`, by `multi_sigma` more when the
request runs on more than one GPU (the boxes and builds disagree most there), and twice as wide in log for a
quantization family no dev point measured (MXFP4). `spread_terms` gives these terms. A GPU family other than
gfx906 borrows these constants with the band twice as wide again (performance.UNMEASURED_WIDENING).

The constants (`FITTED`) are bench/llamacpp_speed.py's fit on the 204 dev points (mixa3607/ML-gfx906, 4x MI50), each
set by the runs that vary it:
- decode per family: the ten quantizations of Qwen3.5-9B on one MI50 (one model, so their spread is the families'):
  Q8_0 0.86 of HBM, the legacy blocks and i-quants 0.80, the K-quants 0.49 (Q6_K's 7.5 GB decodes slower than
  Q8_0's 9.8 GB); f16 and bf16 0.64-0.65 from the 2025 readme's Gemma-3-27B F16 and Qwen3-14B BF16.
- layer_s (0.22 ms): what a token costs beyond its bytes, across models of 30 to 62 layers.
- kv (0.45): Qwen3.5-9B Q8_0 and Gemma-4-26B-A4B at 0, 16K and 32K tokens of context.
- layer_hop_s (1.4 ms) and allreduce_s (81 us): the same two models on 1, 2 and 4 GPUs split by layer and by tensor.
- prefill per family: the same sweep at 2048 tokens (Q8_0 and Q4_0 0.60 of FP16, K-quants 0.39, i-quants 0.37);
  bf16 0.22 from the 2025 readme's Qwen3-14B BF16 alone.
- attention (1.8 x HBM) from the prefills at depth; split_serial (0.2) from the tensor-split prefills.
- sigma, prefill_sigma, multi_sigma: the leave-one-model-out residuals.
A calibration on the box (`calibrated`: one decode and one prefill timed on the running server) scales the fitted
estimate by what it measured (`decode_factor`, `prefill_factor`, the block's keys in `CALIBRATION_KEYS`) with
calibration.CALIBRATED_BAND as its band; any fitted constant can be replaced the same way (`dataclasses.replace`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from components.planning.catalog import Gpu
from components.planning.gguf import GgufFacts, type_traits
from components.planning.llamacpp_memory import EXPERTS, INPUT_TENSORS, LlamaCppArgs, recurrent_layers, swa_layers
from components.planning.performance import UNMEASURED_WIDENING, Rate, _z, is_measured

# The tokens one quantized matmul kernel (MMQ) takes at a time on gfx906: 64 under HIP without matrix cores
# (ggml-org/llama.cpp ggml/src/ggml-cuda/mmq.cuh get_mmq_x_max_host / get_mmq_x_max_device). An expert that a
# micro-batch routes fewer tokens to costs a whole tile.
MMQ_TILE = 64
# The quantization families, by how gfx906 runs them (see `quant_family`).
FAMILIES = ("f16", "bf16", "q8_0", "legacy", "k", "iq", "mxfp4")
SPLIT_MODES = ("none", "layer", "row", "tensor")


def quant_family(quant: str) -> str:
    """The family of a GGUF quantization by its name ("Q4_K_M", "UD-Q4_K_XL", "IQ4_XS", "BF16"):
    f16 (and f32), bf16 (no native BF16 on gfx906), q8_0, legacy (Q4_0, Q4_1, Q5_0, Q5_1: plain blocks), k (the
    K-quants' super-blocks), iq (the i-quants' lookup tables), mxfp4. unsloth's UD-Q8_K_XL is Q8_0 with a few
    tensors kept wider, so q8_0."""
    q = quant.upper().removeprefix("UD-")
    if q in ("F16", "F32"):
        return "f16"
    if q == "BF16":
        return "bf16"
    if q.startswith("Q8"):
        return "q8_0"
    if q in ("Q4_0", "Q4_1", "Q5_0", "Q5_1"):
        return "legacy"
    if q.startswith("IQ"):
        return "iq"
    if q.startswith("MXFP4"):
        return "mxfp4"
    if q.startswith(("Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K")):
        return "k"
    raise ValueError(f"quantization {quant!r} is not one this speed model knows (families: {', '.join(FAMILIES)})")


@dataclass(frozen=True)
class ModelTraffic:
    """What one token moves and computes, from the model's tensors (`traffic`), for the model on the GPUs.

    weights_read_bytes: the weight bytes one decoded token reads: every GPU tensor but the input embedding (a
    row lookup), a MoE layer's experts at expert_used / expert_count. weights_bytes: every GPU weight (what a
    long micro-batch reads); expert_bytes: of which experts. active_parameters: the weights one token's matmuls
    run through (experts at expert_used). kv_bytes_per_token: K and V of one token over the full-attention layers
    (f16 cache: 2 bytes an element); swa_*: the same over the sliding-window layers, and their window."""

    n_layer: int
    quant: str
    weights_read_bytes: float
    weights_bytes: float
    active_parameters: float
    kv_bytes_per_token: float
    expert_bytes: float = 0.0
    expert_used: int = 0
    expert_count: int = 0
    swa_kv_bytes_per_token: float = 0.0
    swa_window: int = 0
    expert_parameters: float = 0.0  # every expert's, all layers
    # A file mixing families (unsloth's UD-Q8_K_XL keeps many tensors BF16): (family, share of the bytes read, share
    # of the parameters); empty: all of `quant`'s family.
    mix: tuple[tuple[str, float, float], ...] = ()

    @property
    def families(self) -> tuple[tuple[str, float, float], ...]:
        return self.mix or ((quant_family(self.quant), 1.0, 1.0),)


@dataclass(frozen=True)
class Setup:
    """Where and how the model runs: the GPU kind and count, the split (-sm), flash attention (-fa), the micro-batch
    (-ub) and the KV cache's bytes per element relative to f16 (q8_0: 34/64, q4_0: 18/64)."""

    gpu: Gpu
    num_gpus: int = 1
    split_mode: str = "layer"
    flash_attn: bool = True
    n_ubatch: int = 512
    kv_scale: float = 1.0

    @property
    def split_gpus(self) -> int:
        """How many GPUs divide one layer's weights (row/tensor split), else 1."""
        return self.num_gpus if self.split_mode in ("row", "tensor") else 1

    @property
    def hops(self) -> int:
        """How many device boundaries a token crosses (layer split)."""
        return self.num_gpus - 1 if self.split_mode == "layer" else 0


@dataclass(frozen=True)
class Constants:
    """The fitted rates (module docstring). Efficiencies are shares of the board's peak (catalog hbm_gbps,
    fp16_tflops); latencies in seconds. `band`: a calibration's own x/÷ band; None is the fitted one."""

    decode: Mapping[str, float]
    kv: float
    layer_s: float
    layer_hop_s: float
    allreduce_s: float
    prefill: Mapping[str, float]
    attention: float
    split_serial: float
    sigma: float
    prefill_sigma: float
    multi_sigma: float
    coverage: float = 0.8
    # The families no dev point measured, borrowing another's rate (bench/llamacpp_speed.py BORROWED).
    unmeasured: tuple[str, ...] = field(default=("mxfp4",))
    # A calibration's: measured over fitted time, for a decoded token and for a prefill, and its own x/÷ band.
    decode_factor: float = 1.0
    prefill_factor: float = 1.0
    band: float | None = None


# bench/llamacpp_speed.py's fit on the 204 dev points (mixa3607/ML-gfx906, 4x MI50); tests/test_llamacpp_speed.py
# checks these are its fit. The families no dev point has (MXFP4) borrow the legacy blocks' rates.
FITTED = Constants(
    decode={"f16": 0.644, "bf16": 0.652, "q8_0": 0.857, "legacy": 0.797, "k": 0.488, "iq": 0.809, "mxfp4": 0.797},
    kv=0.445,
    layer_s=2.23e-4,
    layer_hop_s=1.42e-3,
    allreduce_s=8.13e-5,
    prefill={"f16": 0.499, "bf16": 0.216, "q8_0": 0.600, "legacy": 0.593, "k": 0.393, "iq": 0.374, "mxfp4": 0.593},
    attention=1.81,
    split_serial=0.20,
    sigma=0.25,
    prefill_sigma=0.35,
    multi_sigma=0.30,
)


def decode_parts(m: ModelTraffic, s: Setup, depth: int, c: Constants = FITTED) -> dict[str, float]:
    """The seconds of each term of one decoded token at `depth` tokens of context (module docstring)."""
    hbm = s.gpu.hbm_gbps * 1e9
    swa = min(depth, m.swa_window) * m.swa_kv_bytes_per_token
    kv = (depth * m.kv_bytes_per_token + swa) * s.kv_scale
    weights = sum(share / c.decode[f] for f, share, _ in m.families) * m.weights_read_bytes
    return {
        "weights": weights / s.split_gpus / hbm,
        "layers": m.n_layer * c.layer_s,
        "kv": kv / s.split_gpus / (hbm * c.kv),
        "hops": s.hops * c.layer_hop_s,
        "allreduce": m.n_layer * c.allreduce_s if s.split_gpus > 1 else 0.0,
    }


def spread_terms(m: ModelTraffic, s: Setup, c: Constants = FITTED) -> tuple[float, float]:
    """What a band spreads by besides sigma: 1 when the request runs on more than one GPU (else 0), and 1 when no
    dev point measured the model's quantization family (else 0)."""
    unmeasured = sum(share for f, share, _ in m.families if f in c.unmeasured)
    return (1.0 if s.num_gpus > 1 else 0.0), unmeasured


def band_factor(m: ModelTraffic, s: Setup, sigma: float, c: Constants = FITTED) -> float:
    """The factor an estimate is multiplied and divided by for its band."""
    if c.band is not None:
        return c.band
    multi, unmeasured = spread_terms(m, s, c)
    spread = math.hypot(sigma, multi * c.multi_sigma) * (1 + unmeasured)
    widening = 1.0 if is_measured(s.gpu) else UNMEASURED_WIDENING
    return math.exp(_z(c.coverage) * spread * widening)


def decode_rate(m: ModelTraffic, s: Setup, depth: int = 0, c: Constants = FITTED) -> Rate:
    """Decoded tokens per second of one request at `depth` tokens of context, with its band and the roofline (the
    weights and KV at peak HBM) as `bound`."""
    step = sum(decode_parts(m, s, depth, c).values()) * c.decode_factor
    f = band_factor(m, s, c.sigma, c)
    ideal = replace(c, decode=dict.fromkeys(FAMILIES, 1.0), kv=1.0)
    floor = decode_parts(m, s, depth, ideal)
    bound = 1 / (floor["weights"] + floor["kv"])
    return Rate(1 / step, 1 / (step * f), f / step, bound)


def _pairs(first: int, last: int, window: int | None) -> float:
    """Sum over x = first..last of min(x, window): the (query, key) pairs of queries that each see x keys."""
    if last < first:
        return 0.0
    top = last if window is None else min(last, window)
    inside = (first + top) * (top - first + 1) / 2 if top >= first else 0.0
    capped = 0 if window is None else max(0, last - max(first - 1, window))
    return inside + (window or 0) * capped


def attention_bytes(m: ModelTraffic, tokens: int, depth: int) -> float:
    """The K and V bytes (f16) the attention of `tokens` prompt tokens after `depth` of context runs through: each
    query over every key it sees (a query at position p sees p + 1 keys, a sliding-window layer's at most its
    window), one key's K and V per layer. Query heads sharing a KV head (GQA) share its loads: on gfx906 flash
    attention's prefill cost follows the KV bytes, not the query heads (bench/llamacpp_speed.py: Llama-2-7B, 32 KV
    heads, slows at 32K of context as its KV bytes say, four times what its query heads' FLOPs would at Qwen3.5-9B's
    rate)."""
    full = _pairs(depth + 1, depth + tokens, None) * m.kv_bytes_per_token
    swa = _pairs(depth + 1, depth + tokens, m.swa_window) * m.swa_kv_bytes_per_token if m.swa_window else 0.0
    return full + swa


def weights_per_ubatch(m: ModelTraffic, ubatch: int) -> float:
    """The weight bytes one micro-batch of `ubatch` tokens reads: the dense ones, and the experts its tokens reach
    (routing taken as uniform)."""
    if not m.expert_count:
        return m.weights_bytes
    reached = 1 - (1 - min(1.0, m.expert_used / m.expert_count)) ** ubatch
    return m.weights_bytes - m.expert_bytes + m.expert_bytes * reached


def expert_padding(m: ModelTraffic, ubatch: int) -> float:
    """How many times its routed tokens' FLOPs an expert's matmul costs in a micro-batch of `ubatch` tokens: the
    experts reached share the ubatch x expert_used tokens, and each runs at least one MMQ_TILE of them."""
    if not m.expert_count or not m.expert_used:
        return 1.0
    reached = m.expert_count * (1 - (1 - min(1.0, m.expert_used / m.expert_count)) ** ubatch)
    return max(1.0, MMQ_TILE * reached / (ubatch * m.expert_used))


def prefill_parts(m: ModelTraffic, s: Setup, tokens: int, depth: int = 0, c: Constants = FITTED) -> dict[str, float]:
    """The seconds of each term of one prefill on one GPU (before a row/tensor split divides it)."""
    flops, hbm = s.gpu.fp16_tflops * 1e12, s.gpu.hbm_gbps * 1e9
    ubatch = max(1, min(s.n_ubatch, tokens))
    batches = math.ceil(tokens / ubatch)
    routed = m.expert_parameters * min(1.0, m.expert_used / m.expert_count) if m.expert_count else 0.0
    work = m.active_parameters - routed + routed * expert_padding(m, ubatch)
    matmul = sum(share / c.prefill[f] for f, _, share in m.families) * 2 * work * tokens / flops
    read = sum(share / c.decode[f] for f, share, _ in m.families) * batches * weights_per_ubatch(m, ubatch) / hbm
    return {"matmul": matmul, "attention": attention_bytes(m, tokens, depth) / (hbm * c.attention), "weights": read}


def split_share(s: Setup, c: Constants = FITTED) -> float:
    """The share of a one-GPU prefill's time the split leaves: 1/G + split_serial x (G-1)/G for row/tensor."""
    g = s.split_gpus
    return 1 / g + c.split_serial * (g - 1) / g


def prefill_rate(m: ModelTraffic, s: Setup, tokens: int, depth: int = 0, c: Constants = FITTED) -> Rate:
    """Prompt tokens per second of one prefill of `tokens` after `depth` tokens of context, with its band and the
    roofline (the matmuls at peak FP16 on every GPU) as `bound`."""
    seconds = sum(prefill_parts(m, s, tokens, depth, c).values()) * split_share(s, c) * c.prefill_factor
    f = band_factor(m, s, c.prefill_sigma, c)
    peak = s.gpu.fp16_tflops * 1e12 * s.split_gpus
    bound = tokens / (2 * m.active_parameters * tokens / peak)
    return Rate(tokens / seconds, tokens / (seconds * f), tokens * f / seconds, bound)


def traffic(facts: GgufFacts, kv_type_bytes: float = 2.0) -> ModelTraffic:
    """A GGUF model's traffic (ModelTraffic) from its tensors and metadata, all of it on the GPUs: the input
    tensors stay on the CPU (llamacpp_memory.INPUT_TENSORS), experts are the tensors llamacpp_memory.EXPERTS
    matches, recurrent layers hold no KV (their state is not counted), sliding-window layers as
    llamacpp_memory.swa_layers says."""
    import re

    experts_re = re.compile(EXPERTS)
    used = int(facts.get("expert_used_count", 0) or 0)
    count = int(facts.get("expert_count", 0) or 0)
    share = min(1.0, used / count) if count else 1.0
    weights = experts = read = params = expert_params = 0.0
    by_family_bytes: dict[str, float] = {}
    by_family_params: dict[str, float] = {}
    # A tied output layer: llama.cpp loads token_embd again as the output's matrix, on the GPU (the tests' synthetic
    # models, tests/llama_cpp_models.py `tied`, check that the plan counts it there too).
    tied = "output.weight" not in facts.by_name and "token_embd.weight" in facts.by_name
    tensors = (
        [*facts.tensors, replace(facts.by_name["token_embd.weight"], name="output.weight")] if tied else facts.tensors
    )
    for t in tensors:
        if INPUT_TENSORS.match(t.name):
            continue
        weights += t.nbytes
        scale = share if count and experts_re.search(t.name) else 1.0
        if scale < 1.0:
            experts += t.nbytes
        if len(t.shape) < 2:  # norms and biases: read, but no matmul and no family of their own
            read += t.nbytes
            continue
        elements = math.prod(t.shape) * scale
        if scale < 1.0:
            expert_params += math.prod(t.shape)
        read += t.nbytes * scale
        params += elements
        family = quant_family(t.type)
        by_family_bytes[family] = by_family_bytes.get(family, 0.0) + t.nbytes * scale
        by_family_params[family] = by_family_params.get(family, 0.0) + elements
    kv_heads = facts.per_layer("attention.head_count_kv")
    embd = int(facts.get("embedding_length", 0) or 0)
    head = facts.per_layer("attention.head_count")[0] or 1
    k_len = int(facts.get("attention.key_length", 0) or embd // head)
    v_len = int(facts.get("attention.value_length", 0) or embd // head)
    recurrent, swa = recurrent_layers(facts), swa_layers(facts)
    kv = swa_kv = 0.0
    for il in range(facts.n_layer):
        if recurrent[il] or not kv_heads[il]:
            continue
        per_token = kv_heads[il] * (k_len + v_len) * kv_type_bytes
        if swa[il]:
            swa_kv += per_token
        else:
            kv += per_token
    mix = _mix(by_family_bytes, by_family_params, params)
    return ModelTraffic(
        n_layer=facts.n_layer,
        quant=_file_type_name(facts),
        weights_read_bytes=read,
        weights_bytes=weights,
        active_parameters=params,
        kv_bytes_per_token=kv,
        expert_bytes=experts,
        expert_used=used,
        expert_count=count,
        swa_kv_bytes_per_token=swa_kv,
        swa_window=int(facts.get("attention.sliding_window", 0) or 0) if any(swa) else 0,
        expert_parameters=expert_params,
        mix=mix,
    )


def _mix(
    by_bytes: dict[str, float], by_params: dict[str, float], params: float
) -> tuple[tuple[str, float, float], ...]:
    """The families' shares of the matrices' bytes read and of the parameters (norms and biases, read too, count
    as the matrices do); empty when one family holds nearly all (99%)."""
    total = sum(by_bytes.values())
    if not total or not params or max(by_bytes.values()) >= 0.99 * total:
        return ()
    return tuple((f, by_bytes[f] / total, by_params.get(f, 0.0) / params) for f in sorted(by_bytes))


def _file_type_name(facts: GgufFacts) -> str:
    """The quantization a GGUF is named by: the type of most of its weight bytes (a K-quant mix names its main
    type, a Q8_0 file with a few F16 tensors Q8_0)."""
    by_type: dict[str, int] = {}
    for t in facts.tensors:
        if len(t.shape) > 1 and not INPUT_TENSORS.match(t.name):
            by_type[t.type] = by_type.get(t.type, 0) + t.nbytes
    if not by_type:
        return "F16"
    name = max(by_type, key=lambda k: by_type[k])
    return {"F32": "F16"}.get(name, name)


@dataclass(frozen=True)
class ServerSpeed:
    """A planned llama-server's speed for one request of `prompt_tokens` in and `output_tokens` out: its decode at
    the request's mean context (the prompt and half the output) and its prompt's prefill. `caveat`: what the
    planned server does that the model does not cover (the bands then say less)."""

    prompt_tokens: int
    output_tokens: int
    decode_tokens_per_s: Rate
    prefill_tokens_per_s: Rate
    caveat: str | None = None

    def as_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "workload": {"prompt_tokens": self.prompt_tokens, "output_tokens": self.output_tokens, "concurrency": 1},
            "decode_tokens_per_s": self.decode_tokens_per_s.as_json(),
            "prefill_tokens_per_s": self.prefill_tokens_per_s.as_json(),
        }
        if self.caveat is not None:
            out["caveat"] = self.caveat
        return out


def cache_type_scale(name: str) -> float:
    """A KV cache type's bytes per element relative to f16 (ggml's type sizes: q8_0 34 bytes per 32)."""
    block, size = type_traits(name.upper())
    return size / block / 2


def kv_scale(args: LlamaCppArgs) -> float:
    """The KV cache's bytes per element relative to f16, K and V averaged."""
    return (cache_type_scale(args.cache_type_k) + cache_type_scale(args.cache_type_v)) / 2


def server_speed(
    facts: GgufFacts,
    args: LlamaCppArgs,
    gpu: Gpu,
    prompt_tokens: int,
    output_tokens: int,
    c: Constants = FITTED,
) -> ServerSpeed:
    """The speed bands of a planned llama-server (its GGUF's facts and its sizing arguments) on GPUs of this kind."""
    caveats = []
    if args.n_cpu_moe or args.cpu_overrides:
        caveats.append("tensors kept in host memory are read at the GPUs' rate here: the host's is far lower")
    if 0 <= args.n_gpu_layers <= facts.n_layer:
        caveats.append("layers left on the CPU are not modelled")
    setup = Setup(
        gpu=gpu,
        num_gpus=1 if args.split_mode == "none" else max(1, len(args.devices)),
        split_mode=args.split_mode,
        flash_attn=args.flash_attn,
        n_ubatch=args.n_ubatch,
        kv_scale=kv_scale(args),
    )
    if not args.flash_attn:
        caveats.append("attention without flash attention was measured at short contexts only")
    m = traffic(facts)
    return ServerSpeed(
        prompt_tokens,
        output_tokens,
        decode_rate(m, setup, prompt_tokens + output_tokens // 2, c),
        prefill_rate(m, setup, max(1, prompt_tokens), 0, c),
        "; ".join(caveats) or None,
    )


# The calibration block's keys: the Constants fields a calibration sets.
CALIBRATION_KEYS = ("decode_factor", "prefill_factor")


def calibrated(
    m: ModelTraffic,
    s: Setup,
    decode: tuple[int, float],
    prefill: tuple[int, int, float],
    c: Constants = FITTED,
) -> Constants:
    """The constants a server timed on its box gives: `decode` (depth, measured tokens/s of one request) and
    `prefill` (prompt tokens, depth, measured tokens/s) against the fitted estimates. ValueError when a factor is
    outside calibration.SANE (a measurement gone wrong, not a box)."""
    from components.planning.calibration import CALIBRATED_BAND, SANE

    base = replace(c, decode_factor=1.0, prefill_factor=1.0, band=None)
    decode_factor = decode_rate(m, s, decode[0], base).estimate / decode[1]
    prefill_factor = prefill_rate(m, s, prefill[0], prefill[1], base).estimate / prefill[2]
    for name, value in (("decode", decode_factor), ("prefill", prefill_factor)):
        if not SANE[0] <= value <= SANE[1]:
            raise ValueError(
                f"the measured {name} time is {value:.2f}x the model's: outside {SANE[0]}-"
                f"{SANE[1]}x, a measurement gone wrong (a stalled request, another server on the GPUs), not a calibration"
            )
    return replace(base, decode_factor=decode_factor, prefill_factor=prefill_factor, band=CALIBRATED_BAND)


def block_values(c: Constants) -> dict[str, float]:
    """A calibration block's values (4 significant digits)."""
    return {key: float(f"{getattr(c, key):.4g}") for key in CALIBRATION_KEYS}


def constants_of(block: Mapping[str, float], c: Constants = FITTED) -> Constants:
    """The constants a calibration block holds, with the calibrated band."""
    from components.planning.calibration import CALIBRATED_BAND

    return replace(
        c,
        decode_factor=float(block["decode_factor"]),
        prefill_factor=float(block["prefill_factor"]),
        band=CALIBRATED_BAND,
    )
