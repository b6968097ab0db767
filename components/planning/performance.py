"""How fast a planned vLLM server serves on gfx906: pure, bands from constants fitted on published runs.

Decode: one step of a batch of B running sequences, each `context` tokens long, costs on one rank

    step = dense weights read / (HBM x weights)                the layers and the LM head
         + experts read / (HBM x experts)                      a MoE layer's experts the B tokens reach
         + (B + kv_serial) x one sequence's KV / (HBM x kv)     paged attention
         + quantized weights read x dequant / FP16                unpacking them
         + MoE layers x moe_layer_s                              routing and the fused-MoE kernels
         + 2 x layers x allreduce_s                             (TP > 1) a latency each over PCIe
         + B x (2 x weights a token runs through / (FP16 x matmul) + sequence_s)

- The weights read are what the step touches: the layers and the LM head, not the embedding table
  (B rows of it), the vision encoder or the rotary cache. A MoE layer reads the experts B tokens are
  routed to (num_experts x (1 - (1 - top_k / num_experts)^B), routing taken as uniform), at the dense
  rate (`experts`, fitted equal to `weights`), and each MoE layer pays a latency besides (`moe_layer_s`:
  the router's top-k, sorting the tokens to their experts, the fused-MoE kernels' launches, which at a
  small batch run far below the bandwidth). Two published MoE runs agree on it within 1.5x (276 and 418 us
  a layer: Qwen3-235B-A22B at TP 4, MiniMax-M2.7 at TP 8), where a rate for the experts' bytes would
  differ 3.6x between them (bench/speed_model.py).
- A sequence's KV read is its whole context on each layer (kv_read_bytes). The decode attention kernel
  walks each sequence's context in order, so a step pays `kv_serial` sequences' worth of KV time beyond
  the bytes: one request alone reads its KV at a lower rate than four together (mixa3607's gemma-3-27b
  and Qwen3-VL-8B alike, bench/speed_model.py).
- The ALUs are not free on gfx906 (26.5 TFLOPs FP16, no matrix cores). A 4- or 8-bit weight costs a
  few operations to unpack once per step (`dequant`): per byte, an int8 checkpoint (Seed-OSS-36B) and an
  fp16 one (Llama-3.1-8B) stream faster than the AWQ 4-bit ones. The matmuls cost 2 FLOPs per weight per
  token at the rate prefills reach (prefill.MATMUL_EFFICIENCY, fitted on prefills, not here): a batch
  of 64 on Llama-3.1-8B fp16 spends about as long multiplying as reading.
- sequence_s: per running sequence and step, the rest (sampling, scheduling, the batch's small kernels).

The efficiencies are the catalog's (catalog.yaml `speed`, with their source), fitted by
bench/speed_model.py. The spec-sheet roofline is the bound, never the estimate: the bytes at peak HBM or
the matmuls at peak FP16, whichever is longer, no latency. Prefill is the project's one prefill
estimate (components/planning/prefill.py).

The band: measured over estimated decode rates spread, in natural log, by `sigma` for any estimate, by
`single_sigma` more for a single request on more than one GPU, and by `experts_sigma` per unit share of the
step the MoE layers' experts and latency take: the boxes measured disagree most on a single request at tensor parallel (at TP 2 it
runs 40-45% below the model on mixa3607's box, slower even than four requests together there, while at TP 4
it runs 0-50% above it on nlzy's), and the MoE latency rests on two reports. So a band is narrow for one
GPU's decode and for a batch, wide for one request alone across GPUs. The band is the
estimate x/÷ exp(z x that spread), z holding `coverage` of a normal spread. A calibrated plan (an
Efficiency measured on the box) gives its own `band` instead. A GPU family without measurements (no
`speed` entry) borrows gfx906's efficiencies with the band twice as wide in log.

Concurrency: at most max_num_seqs sequences run, and no more than the planned KV cache holds at the
workload's full length; the rest queue (`queued` says how many).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

from components.planning.catalog import DTYPE_BYTES, Architecture, Gpu, load_catalog
from components.planning.memory import (
    encoder_weights_bytes_per_rank,
    expert_bytes_per_rank,
    kv_heads_per_rank,
    weights_bytes_per_rank,
)
from components.planning.prefill import MATMUL_EFFICIENCY, Seconds, prefill_seconds

_SPEED = load_catalog().speed
# gfx906's, the family measured: catalog.yaml `speed.gfx906` (bench/speed_model.py fits them).
_DECODE, _BAND = _SPEED["gfx906"].decode, _SPEED["gfx906"].decode_band
WEIGHTS_EFFICIENCY = _DECODE.weights  # share of HBM bandwidth reached reading the dense weights
EXPERTS_EFFICIENCY = _DECODE.experts  # ... reading a MoE layer's routed experts
KV_EFFICIENCY = _DECODE.kv  # ... reading the KV cache (paged attention)
KV_SERIAL = _DECODE.kv_serial  # sequences' worth of KV time a step pays for walking one
ALLREDUCE_S = _DECODE.allreduce_s  # one all-reduce between TP ranks over PCIe, a latency floor
SEQUENCE_S = _DECODE.sequence_s  # per running sequence and step, besides its matmuls
DEQUANT_OPS = _DECODE.dequant_ops  # FP16 operations to unpack one quantized weight
MOE_LAYER_S = _DECODE.moe_layer_s  # per MoE layer and step, besides its experts' bytes
# A GPU family nothing was measured on: its band is this many times as wide (in log).
UNMEASURED_WIDENING = 2.0


def _z(coverage: float) -> float:
    """z of a two-sided normal interval holding `coverage` (bisection on erf; no statistics import)."""
    lo, hi = 0.0, 10.0
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if math.erf(mid / math.sqrt(2)) < coverage else (lo, mid)
    return (lo + hi) / 2


_Z = _z(_BAND.coverage)


@dataclass(frozen=True)
class Workload:
    """What the server is asked to do: `concurrency` requests at once, each `prompt_tokens` in and
    `output_tokens` out. `cached_tokens` of each prompt hit the prefix cache (prefilled already)."""

    prompt_tokens: int
    output_tokens: int
    concurrency: int
    cached_tokens: int = 0

    def as_json(self) -> dict[str, int]:
        out = {k: v for k, v in asdict(self).items() if k != "cached_tokens"}
        if self.cached_tokens:
            out["cached_prompt_tokens"] = self.cached_tokens
        return out


@dataclass(frozen=True)
class Server:
    """The facts of one planned server the speed depends on."""

    arch: Architecture
    gpu: Gpu
    tensor_parallel_size: int
    max_model_len: int
    max_num_seqs: int
    kv_cache_tokens: int
    dtype: str = "float16"


@dataclass(frozen=True)
class Rate:
    estimate: float
    low: float
    high: float
    bound: float | None = None

    def as_json(self) -> dict[str, float]:
        out = {"estimate": self.estimate, "low": self.low, "high": self.high}
        if self.bound is not None:
            out["bound"] = self.bound
        return {k: _round(v) for k, v in out.items()}


@dataclass(frozen=True)
class Performance:
    workload: Workload
    running: int  # sequences that run at once at the workload
    queued: int  # requests of the workload that wait for a slot (max_num_seqs or the KV cache)
    decode_tokens_per_s: Rate
    output_tokens_per_s: Rate
    prefill_tokens_per_s: Rate
    ttft_s: Rate
    longest_prefill_s: Rate
    # When the efficiencies come from a calibration on the box: the day it was measured.
    calibrated: str | None = None

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "workload": self.workload.as_json(),
            "decode_tokens_per_s": self.decode_tokens_per_s.as_json(),
            "output_tokens_per_s": self.output_tokens_per_s.as_json(),
            "prefill_tokens_per_s": self.prefill_tokens_per_s.as_json(),
            "ttft_s": self.ttft_s.as_json(),
            "longest_prefill_s": self.longest_prefill_s.as_json(),
        }
        if self.calibrated is not None:
            out["calibrated"] = self.calibrated
        return out


def _round(x: float) -> float:
    return float(f"{x:.3g}")


def weights_read_bytes(arch: Architecture, tp: int, dtype_bytes: int, batch: int) -> float:
    """The weight bytes one decode step of `batch` sequences reads on one rank, routed experts included."""
    total = weights_bytes_per_rank(arch, tp, dtype_bytes)
    untouched = encoder_weights_bytes_per_rank(arch, tp, dtype_bytes)
    untouched += arch.max_position_embeddings * arch.head_size * dtype_bytes  # rotary cos/sin cache
    if not arch.tied_embeddings:
        untouched += -(-arch.vocab_size // 64) * 64 // tp * arch.hidden_size * dtype_bytes  # embedding rows
    experts = expert_bytes_per_rank(arch, tp, dtype_bytes)
    return total - untouched - experts + expert_read_bytes(arch, tp, dtype_bytes, batch)


def expert_read_bytes(arch: Architecture, tp: int, dtype_bytes: int, batch: int) -> float:
    """The expert bytes one decode step of `batch` sequences reads on one rank (0 for a dense model)."""
    experts = expert_bytes_per_rank(arch, tp, dtype_bytes)
    if not experts:
        return 0.0
    e, k = arch.num_experts or 1, arch.num_experts_per_tok or 1
    return experts * (1 - (1 - min(1.0, k / e)) ** batch)


def moe_layers(arch: Architecture) -> int:
    """How many of the model's layers route to experts (0 for a dense model)."""
    return arch.num_hidden_layers - arch.dense_mlp_layers if arch.is_moe else 0


def kv_read_bytes(arch: Architecture, tp: int, dtype_bytes: int, context: int) -> float:
    """The KV cost of one sequence of `context` tokens per decode step on one rank, in bytes as if every
    layer read the whole context. Sliding layers too: gemma-3-27b's decode (5 of 6 layers slide over
    1024 tokens) slows from 16 to 16K tokens of context by the same bytes-per-second as Qwen3-VL-8B's
    (every layer full) does, as if the decode kernel walked the whole context; counting the window
    instead leaves gemma's slowdown a third explained (bench/speed_model.py)."""
    return context * 2 * arch.num_hidden_layers * kv_heads_per_rank(arch, tp) * arch.head_size * dtype_bytes


def token_flops(arch: Architecture, tp: int) -> float:
    """The matmul FLOPs of one token's decode on one rank: 2 per weight it runs through (experts at top_k)."""
    return 2 * weights_read_bytes(arch.model_copy(update={"quantization_config": None}), tp, 1, 1)


def quantized_weights_read(arch: Architecture, tp: int, batch: int) -> float:
    """How many quantized weights one decode step of `batch` sequences unpacks on one rank (the LM head
    stays in the model's dtype)."""
    if arch.quantization_config is None:
        return 0.0
    elements = weights_read_bytes(arch.model_copy(update={"quantization_config": None}), tp, 1, batch)
    return elements - -(-arch.vocab_size // 64) * 64 // tp * arch.hidden_size


@dataclass(frozen=True)
class Efficiency:
    """The rates a decode step reaches (see the module's docstring); the defaults are the catalog's fit.
    `band`: a calibrated plan's own band, the estimate x/÷ band; None is the fitted band."""

    weights: float = WEIGHTS_EFFICIENCY
    kv: float = KV_EFFICIENCY
    allreduce_s: float = ALLREDUCE_S
    sequence_s: float = SEQUENCE_S
    experts: float = EXPERTS_EFFICIENCY
    kv_serial: float = KV_SERIAL
    matmul: float = MATMUL_EFFICIENCY
    dequant: float = DEQUANT_OPS
    moe_layer_s: float = MOE_LAYER_S
    # A prefill takes this times the fitted estimate (a calibration on the box measures it).
    prefill: float = 1.0
    band: float | None = None


ROOFLINE = Efficiency(1.0, 1.0, 0.0, 0.0, experts=1.0, kv_serial=0.0, matmul=1.0, dequant=0.0, moe_layer_s=0.0)


def step_parts(s: Server, batch: int, context: int, eff: Efficiency = Efficiency()) -> dict[str, float]:
    """The seconds of each term of one decode step of `batch` sequences, each `context` tokens long."""
    tp, dtype_bytes = s.tensor_parallel_size, DTYPE_BYTES[s.dtype]
    hbm = s.gpu.hbm_gbps * 1e9
    experts = expert_read_bytes(s.arch, tp, dtype_bytes, batch)
    dense = weights_read_bytes(s.arch, tp, dtype_bytes, batch) - experts
    kv = kv_read_bytes(s.arch, tp, dtype_bytes, context) / (hbm * eff.kv)
    return {
        "weights": dense / (hbm * eff.weights),
        "experts": experts / (hbm * eff.experts),
        "kv": batch * kv,
        "kv_serial": eff.kv_serial * kv,
        "moe": moe_layers(s.arch) * eff.moe_layer_s,
        "allreduce": 2 * s.arch.num_hidden_layers * eff.allreduce_s if tp > 1 else 0.0,
        "sequence": batch * eff.sequence_s,
        "compute": batch * token_flops(s.arch, tp) / (s.gpu.fp16_tflops * 1e12 * eff.matmul),
        "dequant": quantized_weights_read(s.arch, tp, batch) * eff.dequant / (s.gpu.fp16_tflops * 1e12),
    }


def step_seconds(s: Server, batch: int, context: int, eff: Efficiency = Efficiency()) -> float:
    """One decode step of `batch` sequences, each `context` tokens long."""
    return sum(step_parts(s, batch, context, eff).values())


def bound_seconds(s: Server, batch: int, context: int) -> float:
    """The roofline of one decode step: its bytes at peak HBM or its matmuls at peak FP16, the longer."""
    p = step_parts(s, batch, context, ROOFLINE)
    return max(p["weights"] + p["experts"] + p["kv"], p["compute"])


def is_measured(gpu: Gpu) -> bool:
    """Whether published runs on this GPU's family were fitted (catalog.yaml `speed`); others borrow gfx906's."""
    return gpu.gfx in _SPEED


def spread_terms(s: Server, parts: dict[str, float], batch: int) -> tuple[float, float]:
    """What a step's band spreads by besides `sigma`: 1 for a single request on more than one GPU (else 0), and
    the share of the step the MoE layers take (bench/speed_model.py fits the band on the same terms)."""
    single = 1.0 if batch == 1 and s.tensor_parallel_size > 1 else 0.0
    return single, (parts["experts"] + parts["moe"]) / sum(parts.values())


def band_factor(s: Server, parts: dict[str, float], batch: int, eff: Efficiency = Efficiency()) -> float:
    """The factor a step of `batch` sequences is multiplied and divided by for its band (see the docstring)."""
    if eff.band is not None:
        return eff.band
    single, moe = spread_terms(s, parts, batch)
    spread = math.hypot(_BAND.sigma, single * _BAND.single_sigma, moe * _BAND.experts_sigma)
    widening = 1.0 if is_measured(s.gpu) else UNMEASURED_WIDENING
    return math.exp(_Z * spread * widening)


def scaled_prefill(fitted: Seconds, eff: Efficiency) -> Seconds:
    """A prefill with these efficiencies: the fitted time times `eff.prefill`, in the fitted band, or in the
    calibration's own band (`eff.band`) where it has one."""
    estimate = fitted.estimate * eff.prefill
    if eff.band is None:
        return Seconds(estimate, fitted.low * eff.prefill, fitted.high * eff.prefill)
    return Seconds(estimate, estimate / eff.band, estimate * eff.band)


def _prefill(s: Server, tokens: int, eff: Efficiency = Efficiency()) -> Seconds:
    if tokens <= 0:
        return Seconds(0.0, 0.0, 0.0)
    return scaled_prefill(prefill_seconds(s.arch, tokens, s.tensor_parallel_size, s.gpu), eff)


def performance(s: Server, w: Workload, eff: Efficiency = Efficiency(), calibrated: str | None = None) -> Performance:
    """The server's speed bands for the workload (`calibrated`: the day `eff` was measured on the box)."""
    return replace(_performance(s, w, eff), calibrated=calibrated)


def _performance(s: Server, w: Workload, eff: Efficiency) -> Performance:
    length = w.prompt_tokens + w.output_tokens
    # The mean context over a request's decode: the prompt and half the output.
    context = w.prompt_tokens + w.output_tokens // 2
    kv_holds = max(1, s.kv_cache_tokens // max(1, length))
    running = max(1, min(w.concurrency, s.max_num_seqs, kv_holds))
    queued = max(0, w.concurrency - running)

    alone = step_parts(s, 1, context, eff)
    one, f1 = sum(alone.values()), band_factor(s, alone, 1, eff)
    decode = Rate(1 / one, 1 / (one * f1), f1 / one, 1 / bound_seconds(s, 1, context))

    prompt = _prefill(s, w.prompt_tokens, eff)
    new = _prefill(s, w.prompt_tokens - w.cached_tokens, eff)
    parts = step_parts(s, running, context, eff)
    step, f = sum(parts.values()), band_factor(s, parts, running, eff)
    # A request's first token: its own prefill, and a step of the running batch it joins.
    ttft = new.estimate + step
    request = ttft + (w.output_tokens - 1) * step
    fast, slow = new.low + w.output_tokens * step / f, new.high + w.output_tokens * step * f
    tokens = running * w.output_tokens
    output = Rate(tokens / request, tokens / slow, tokens / fast, running / bound_seconds(s, running, context))
    # Requests beyond the running ones wait, on average, half a request's time for a slot.
    share = queued / w.concurrency / 2
    ttft_rate = Rate(ttft + request * share, new.low + step / f + fast * share, new.high + step * f + slow * share)
    longest = _prefill(s, s.max_model_len, eff)
    return Performance(
        workload=w,
        running=running,
        queued=queued,
        decode_tokens_per_s=decode,
        output_tokens_per_s=output,
        prefill_tokens_per_s=Rate(
            w.prompt_tokens / prompt.estimate, w.prompt_tokens / prompt.high, w.prompt_tokens / prompt.low
        ),
        ttft_s=ttft_rate,
        longest_prefill_s=Rate(longest.estimate, longest.low, longest.high),
    )
