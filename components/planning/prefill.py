"""How long one prefill can take on gfx906, from published measurements: pure.

The one prefill estimate in the project: `prefill_seconds` gives its band, the performance model
(components/planning/performance.py) shows it in the plan, and the stall window sizes from its slow
end (`longest_prefill_seconds`).

Two costs, fitted apart because they scale apart. The matrix multiplies cost 2 FLOPs per parameter
per prompt token. Attention costs 4 x heads x head size FLOPs per layer for each (token, earlier
token) pair, within the layer's sliding window if it has one (vLLM's Triton unified attention, the
kernel the gfx906 fork runs, skips the tiles outside the window:
vllm/attention/ops/triton_unified_attention.py:206-222 at v0.11.2+gfx906). gfx906 has no flash
attention kernels: attention runs far below the matrix multiplies' rate, which is why the prefill
rate falls as the prompt grows, and why models whose every layer attends the whole prompt (Llama,
Qwen) prefill long prompts more than 2x slower per FLOP than Gemma 3 (5 of 6 layers slide).

The rates come from mixa3607/ML-gfx906's `vllm bench serve` prefill runs (gemma-3-27b AWQ, tensor
parallel 2 on 2x MI50 32GB at 225 W, vLLM 0.11.0 gfx906; 8K, 16K and 24K prompts, one output token,
three runs; see `data/throughput/mixa3607-2xmi50.json`). A least-squares fit of
each run to the two costs above gives, per GPU, 60-70% of peak FP16 for the matrix multiplies and
7.3-9.8% for attention; the slowest run's figures (60%, 7.3%) are taken, rounded down. The same run
repeated elsewhere differs by up to 60% in prefill rate at 24K tokens, and hosts differ in power
caps and PCIe lanes: SLOW_END divides both rates by 1.6. tests/test_prefill.py checks the estimate
against those runs, and the stall window against them scaled to big-chat's 70B at 32K.

Mixture-of-experts models: the estimate counts the experts each token is routed to (num_experts_per_tok
of num_experts), the slow end every expert (a chunk of a long prompt reaches them all, and gfx906's
fused-MoE kernels run far below the dense rate, unmeasured here): the stall window keeps the safe side.
The fast end is the estimate over FAST_END (the fastest run fitted, see bench/speed_model.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from components.planning.catalog import Architecture, Gpu, load_catalog
from components.planning.memory import expert_bytes_per_rank, weights_bytes_per_rank

# The catalog's gfx906 figures (catalog.yaml `speed`, with their source), the only family measured.
_PREFILL = load_catalog().speed["gfx906"].prefill
# Shares of one board's peak FP16 rate (catalog fp16_tflops) reached in a prefill on gfx906.
MATMUL_EFFICIENCY = _PREFILL.matmul
ATTENTION_EFFICIENCY = _PREFILL.attention
# How much slower than the slowest fitted run a prefill may run on another box or another run.
SLOW_END = _PREFILL.slow_end
# How much faster than the estimate a prefill may run (bench/speed_model.py: the fastest published run).
FAST_END = _PREFILL.fast_end


@dataclass(frozen=True)
class Seconds:
    """A time as an estimate and the band that should hold a measurement of it."""

    estimate: float
    low: float
    high: float


def parameters(arch: Architecture) -> float:
    """The model's parameter count, from its layer shapes (every expert counted)."""
    return weights_bytes_per_rank(arch.model_copy(update={"quantization_config": None}), 1, 1)


def active_parameters(arch: Architecture) -> float:
    """The parameters one token runs through: a MoE model's experts counted at num_experts_per_tok."""
    if not arch.is_moe:
        return parameters(arch)
    unquantized = arch.model_copy(update={"quantization_config": None})
    experts = expert_bytes_per_rank(unquantized, 1, 1)
    share = min(1.0, (arch.num_experts_per_tok or 1) / (arch.num_experts or 1))
    return parameters(arch) - experts * (1 - share)


def attention_flops(arch: Architecture, tokens: int) -> float:
    """The attention FLOPs of one causal prefill of `tokens`: QK^T and PV over the pairs each layer sees."""
    width = arch.num_attention_heads * arch.head_size
    pairs = 0.0
    for window in arch.layer_windows():
        if window is None or window >= tokens:
            pairs += tokens * tokens / 2
        else:
            pairs += window * window / 2 + window * (tokens - window)
    return 4 * width * pairs


def prefill_seconds(arch: Architecture, prompt_tokens: int, tp: int, gpu: Gpu) -> Seconds:
    """One prefill of `prompt_tokens` alone on `tp` GPUs of this kind (tensor parallel)."""
    peak = tp * gpu.fp16_tflops * 1e12
    attention = attention_flops(arch, prompt_tokens) / (peak * ATTENTION_EFFICIENCY)
    active = 2 * active_parameters(arch) * prompt_tokens / (peak * MATMUL_EFFICIENCY)
    every = 2 * parameters(arch) * prompt_tokens / (peak * MATMUL_EFFICIENCY)
    estimate = active + attention
    return Seconds(estimate, estimate / FAST_END, SLOW_END * (every + attention))


def longest_prefill_seconds(arch: Architecture, prompt_tokens: int, tp: int, gpu: Gpu) -> float:
    """The slow end of one prefill of `prompt_tokens` on `tp` GPUs of this kind (tensor parallel)."""
    return prefill_seconds(arch, prompt_tokens, tp, gpu).high
