"""How fast a planned vLLM server serves on gfx906: pure, bands from constants fitted on published runs.

Decode: each step of a batch of B running sequences reads the rank's weights and the B sequences' KV
from HBM, and, under tensor parallel, waits on two all-reduces per layer (a latency floor each over
PCIe):

    step = weights read / (HBM x WEIGHTS_EFFICIENCY) + B x KV read per sequence / (HBM x KV_EFFICIENCY)
           + 2 x layers x ALLREDUCE_S  (TP > 1)  + B x SEQUENCE_S

The weights read are what the step touches: the layers and the LM head, not the embedding table
(B rows of it), the vision encoder or the rotary cache; a MoE layer reads the experts B tokens are
routed to (num_experts x (1 - (1 - top_k / num_experts)^B), routing taken as uniform). A sequence's KV
read is its whole context on each layer (see kv_read_bytes). Prefill is the project's one
prefill estimate (components/planning/prefill.py). The spec-sheet roofline (every efficiency 1, no
latency) is the bound, never the estimate: on gfx906 it overestimates decode several-fold.

Concurrency: at most max_num_seqs sequences run, and no more than the planned KV cache holds at the
workload's full length; the rest queue (`queued` says how many).

The constants are fitted by bench/speed_model.py on the shared data (throughput/mixa3607-2xmi50.json:
gemma-3-27b AWQ at TP 2 and Qwen3-VL-8B AWQ at TP 1 on 2x MI50 32GB at 225 W, vLLM 0.11.0 gfx906,
`vllm bench serve`); DECODE_BAND is the spread of its leave-one-model-out errors. Two models on one box:
another box's power cap, PCIe lanes and fork version move these by 25-50% (operations-facts.md §9).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from components.planning.catalog import Architecture, Gpu
from components.planning.memory import (
    DTYPE_BYTES,
    encoder_weights_bytes_per_rank,
    expert_bytes_per_rank,
    kv_heads_per_rank,
    weights_bytes_per_rank,
)
from components.planning.prefill import Seconds, prefill_seconds

# Fitted by bench/speed_model.py (all decode points of throughput/mixa3607-2xmi50.json).
WEIGHTS_EFFICIENCY = 0.32  # share of HBM bandwidth reached reading the weights
KV_EFFICIENCY = 0.19  # share of HBM bandwidth reached reading the KV cache (paged attention)
ALLREDUCE_S = 64e-6  # one all-reduce between TP ranks over PCIe, a latency floor
SEQUENCE_S = 1.03e-3  # per running sequence and step: sampling, scheduling, the batch's small kernels
# The band around a decode estimate: (estimate / DECODE_BAND, estimate x DECODE_BAND).
DECODE_BAND = 1.35


@dataclass(frozen=True)
class Workload:
    """What the server is asked to do: `concurrency` requests at once, each `prompt_tokens` in and
    `output_tokens` out. `cached_tokens` of each prompt hit the prefix cache (prefilled already)."""

    prompt_tokens: int
    output_tokens: int
    concurrency: int
    cached_tokens: int = 0

    def as_json(self) -> dict[str, int]:
        return {k: v for k, v in asdict(self).items() if k != "cached_tokens"}


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
    """The weight bytes one decode step of `batch` sequences reads on one rank."""
    total = weights_bytes_per_rank(arch, tp, dtype_bytes)
    untouched = encoder_weights_bytes_per_rank(arch, tp, dtype_bytes)
    untouched += arch.max_position_embeddings * arch.head_size * dtype_bytes  # rotary cos/sin cache
    if not arch.tied_embeddings:
        untouched += -(-arch.vocab_size // 64) * 64 // tp * arch.hidden_size * dtype_bytes  # embedding rows
    experts = expert_bytes_per_rank(arch, tp, dtype_bytes)
    if experts:
        e, k = arch.num_experts or 1, arch.num_experts_per_tok or 1
        touched = 1 - (1 - min(1.0, k / e)) ** batch
        untouched += experts * (1 - touched)
    return total - untouched


def kv_read_bytes(arch: Architecture, tp: int, dtype_bytes: int, context: int) -> float:
    """The KV cost of one sequence of `context` tokens per decode step on one rank, in bytes as if every
    layer read the whole context. Sliding layers too: gemma-3-27b's decode (5 of 6 layers slide over
    1024 tokens) slows from 16 to 16K tokens of context by the same bytes-per-second as Qwen3-VL-8B's
    (every layer full) does, ~12% of HBM, as if the decode kernel walked the whole context; counting
    the window instead leaves gemma's slowdown a third explained (bench/speed_model.py)."""
    return context * 2 * arch.num_hidden_layers * kv_heads_per_rank(arch, tp) * arch.head_size * dtype_bytes


@dataclass(frozen=True)
class Efficiency:
    weights: float = WEIGHTS_EFFICIENCY
    kv: float = KV_EFFICIENCY
    allreduce_s: float = ALLREDUCE_S
    sequence_s: float = SEQUENCE_S
    # A prefill takes this times the fitted estimate (a calibration on the box measures it).
    prefill: float = 1.0
    # The band around every estimate, high/low = band^2: None is the fitted one; a calibration narrows it.
    band: float | None = None


ROOFLINE = Efficiency(1.0, 1.0, 0.0, 0.0)


def step_seconds(s: Server, batch: int, context: int, eff: Efficiency = Efficiency()) -> float:
    """One decode step of `batch` sequences, each `context` tokens long."""
    tp, dtype_bytes = s.tensor_parallel_size, DTYPE_BYTES[s.dtype]
    hbm = s.gpu.hbm_gbps * 1e9
    weights = weights_read_bytes(s.arch, tp, dtype_bytes, batch) / (hbm * eff.weights)
    kv = batch * kv_read_bytes(s.arch, tp, dtype_bytes, context) / (hbm * eff.kv)
    allreduce = 2 * s.arch.num_hidden_layers * eff.allreduce_s if tp > 1 else 0.0
    return weights + kv + allreduce + batch * eff.sequence_s


def _band(estimate: float, bound: float | None = None, band: float = DECODE_BAND) -> Rate:
    return Rate(estimate, estimate / band, estimate * band, bound)


def _prefill(s: Server, tokens: int, eff: Efficiency = Efficiency()) -> Seconds:
    if tokens <= 0:
        return Seconds(0.0, 0.0, 0.0)
    fitted = prefill_seconds(s.arch, tokens, s.tensor_parallel_size, s.gpu)
    if eff.band is None and eff.prefill == 1.0:
        return fitted
    estimate = fitted.estimate * eff.prefill
    band = eff.band or 1.0
    return Seconds(estimate, min(estimate / band, fitted.low * eff.prefill), estimate * band)


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

    spread = eff.band or DECODE_BAND
    one = step_seconds(s, 1, context, eff)
    decode = _band(1 / one, 1 / step_seconds(s, 1, context, ROOFLINE), spread)

    prompt = _prefill(s, w.prompt_tokens, eff)
    new = _prefill(s, w.prompt_tokens - w.cached_tokens, eff)
    step = step_seconds(s, running, context, eff)
    # A request's first token: its own prefill, and a step of the running batch it joins.
    ttft = new.estimate + step
    request = ttft + (w.output_tokens - 1) * step
    output = running * w.output_tokens / request
    bound_step = step_seconds(s, running, context, ROOFLINE)
    output_bound = running * w.output_tokens / (w.output_tokens * bound_step)
    # Requests beyond the running ones wait, on average, half a request's time for a slot.
    wait = request / 2 * queued / w.concurrency if queued else 0.0
    ttft_rate = Rate(
        ttft + wait,
        new.low + step / spread + wait / spread,
        new.high + step * spread + wait * spread,
    )
    longest = _prefill(s, s.max_model_len, eff)
    return Performance(
        workload=w,
        running=running,
        queued=queued,
        decode_tokens_per_s=decode,
        output_tokens_per_s=_band(output, output_bound, spread),
        prefill_tokens_per_s=Rate(
            w.prompt_tokens / prompt.estimate, w.prompt_tokens / prompt.high, w.prompt_tokens / prompt.low
        ),
        ttft_s=ttft_rate,
        longest_prefill_s=Rate(longest.estimate, longest.low, longest.high),
    )
