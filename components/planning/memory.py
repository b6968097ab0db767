"""GPU memory planning for a vLLM tensor-parallel server: pure arithmetic, free of Pulumi.

The model follows how vLLM itself sizes its KV cache at startup (vLLM V1,
`gpu_worker.determine_available_memory` and `kv_cache_utils`):

    usable        = GPU memory x gpu_memory_utilization          (of the total, not of what is free)
    kv cache      = usable - weights - peak activations - non-torch memory [- CUDA graphs]
    KV bytes/token on a rank = 2 (K and V) x layers x KV heads on that rank x head_dim x cache dtype bytes
    KV heads on a rank = max(1, kv_heads // TP)                   (replicated when TP exceeds them)
    blocks        = floor(kv cache / (block_size x KV bytes/token)); tokens = blocks x block_size
    "Maximum concurrency for L tokens per request" = tokens / L
    vLLM refuses to start when one max_model_len request does not fit in the KV cache.

Each piece, per GPU (one tensor-parallel rank each):
- weights: every linear layer from config.json's shapes, split by TP the way vLLM's
  Column/RowParallelLinear and VocabParallelEmbedding split them (vocab padded to 64); AWQ/GPTQ
  layers as packed `bits`-bit weights plus fp16 scales and packed zeros per `group_size`
  (GPTQ act-order adds an int32 g_idx); embeddings, lm_head (unless tied), norms and the rotary
  cos/sin cache stay in the model dtype. Biases are left out (< 0.1%).
- peak activations of the profiling run at max_num_batched_tokens T: the MLP's gate_up output,
  its activation and the residual stream, T x dtype x (3 x intermediate/TP + 3 x hidden),
  plus, where the image's kernels dequantize a layer for large batches (exllama's reconstruct
  path on gfx906), that layer's fp16 copy; or the sampler's dummy run, max_num_seqs x vocab
  fp32 logits and the sampler's copies, whichever is larger. The sampler's 28 bytes per logit
  (7 float32 copies) are calibrated on a recorded vLLM 0.26 log (bench/data).
- non-torch memory: what the runtime allocates outside PyTorch (HIP/CUDA libraries' workspaces),
  and RCCL/NCCL buffers when TP > 1. Estimates, per engine profile below.
- CUDA/HIP graphs: captured after the KV cache in vLLM 0.11 (so they come out of the headroom,
  not out of the KV cache); budgeted before it from vLLM 0.21 on.

Sources: vLLM's own startup logs ("Model loading took X GiB", "Available KV cache memory",
"GPU KV cache size: N tokens", "Maximum concurrency for L tokens per request"), reproduced in
tests/data/vllm_startup_logs.yaml and measured by bench/planner_error.py.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from components.planning.catalog import Architecture, QuantizationConfig

GiB = 1 << 30
DTYPE_BYTES = {"float16": 2, "bfloat16": 2, "float32": 4}
# vLLM's default max_num_batched_tokens / max_num_seqs for the OpenAI server (engine/arg_utils.py):
# GPUs with at least 70 GiB get 8192 / 1024, the rest 2048 / 256.
LARGE_GPU_GIB = 70


@dataclass(frozen=True)
class EngineProfile:
    """How one vLLM version budgets memory besides weights and KV cache."""

    name: str
    non_torch_gib: float
    non_torch_tp_gib: float
    cudagraph_gib: float
    sampler_bytes_per_logit: int = 28
    block_size: int = 16


PROFILES: dict[str, EngineProfile] = {
    # V1 engine as in the gfx906 image (vLLM 0.11.2): graphs are captured after the KV cache.
    "vllm-0.11": EngineProfile("vllm-0.11", non_torch_gib=0.1, non_torch_tp_gib=0.4, cudagraph_gib=0.0),
    # vLLM >= 0.21 profiles CUDA graph memory before sizing the KV cache.
    "vllm-0.21": EngineProfile("vllm-0.21", non_torch_gib=0.1, non_torch_tp_gib=0.4, cudagraph_gib=0.5),
    # The V0 engine counted the whole non-torch memory (driver context included) and had no chunked prefill.
    "vllm-v0": EngineProfile("vllm-v0", non_torch_gib=0.35, non_torch_tp_gib=0.4, cudagraph_gib=0.0),
}
DEFAULT_PROFILE = "vllm-0.11"


def default_batch(gpu_memory_gib: float) -> tuple[int, int]:
    """vLLM's default (max_num_batched_tokens, max_num_seqs) for the OpenAI server on this GPU."""
    return (8192, 1024) if gpu_memory_gib >= LARGE_GPU_GIB else (2048, 256)


@dataclass(frozen=True)
class MemoryInputs:
    arch: Architecture
    gpu_memory_gib: float
    gpu_memory_utilization: float
    tensor_parallel_size: int
    max_model_len: int
    max_num_batched_tokens: int
    max_num_seqs: int
    dtype: str = "float16"
    profile: EngineProfile = PROFILES[DEFAULT_PROFILE]
    dequantizes_for_large_batches: bool = False


@dataclass(frozen=True)
class Capacity:
    gpu_memory_gib: float
    usable_gib: float
    weights_gib_per_gpu: float
    reserve_gib_per_gpu: float
    activations_gib_per_gpu: float
    non_torch_gib_per_gpu: float
    cudagraph_gib_per_gpu: float
    kv_cache_gib_per_gpu: float
    kv_bytes_per_token_per_gpu: int
    kv_cache_tokens: int
    max_model_len: int
    max_concurrency: float
    fits: bool
    largest_max_model_len: int
    utilization_needed: float
    tensor_parallel_size: int

    def as_json(self) -> dict[str, float | int | bool]:
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def _linear_bytes(in_features: int, out_features: int, quant: QuantizationConfig | None, dtype_bytes: int) -> float:
    if quant is None:
        return in_features * out_features * dtype_bytes
    if quant.quant_method == "fp8":
        return in_features * out_features + out_features * 4
    group = in_features if quant.group_size <= 0 else quant.group_size
    groups = math.ceil(in_features / group)
    packed = in_features * out_features * quant.bits / 8
    scales = groups * out_features * 2
    zeros = groups * out_features * quant.bits / 8
    g_idx = in_features * 4 if quant.quant_method == "gptq" and quant.desc_act else 0
    return packed + scales + zeros + g_idx


def kv_heads_per_rank(arch: Architecture, tp: int) -> int:
    return max(1, arch.kv_heads // tp)


def weights_bytes_per_rank(arch: Architecture, tp: int, dtype_bytes: int) -> float:
    h, hd, q = arch.hidden_size, arch.head_size, arch.quantization_config
    heads = arch.num_attention_heads // tp
    kv = kv_heads_per_rank(arch, tp)
    inter = arch.intermediate_size // tp
    vocab = math.ceil(arch.vocab_size / 64) * 64 // tp
    embedding = vocab * h * dtype_bytes
    lm_head = 0 if arch.tie_word_embeddings else embedding
    layer = (
        _linear_bytes(h, (heads + 2 * kv) * hd, q, dtype_bytes)  # qkv_proj (column parallel)
        + _linear_bytes(heads * hd, h, q, dtype_bytes)  # o_proj (row parallel)
        + _linear_bytes(h, 2 * inter, q, dtype_bytes)  # gate_up_proj (column parallel)
        + _linear_bytes(inter, h, q, dtype_bytes)  # down_proj (row parallel)
        + 2 * h * dtype_bytes  # two RMSNorms
    )
    rotary = arch.max_position_embeddings * hd * dtype_bytes
    return embedding + lm_head + arch.num_hidden_layers * layer + h * dtype_bytes + rotary


def activation_bytes_per_rank(i: MemoryInputs, dtype_bytes: int) -> float:
    arch, tp = i.arch, i.tensor_parallel_size
    inter, h = arch.intermediate_size // tp, arch.hidden_size
    forward = i.max_num_batched_tokens * dtype_bytes * (3 * inter + 3 * h)
    if arch.quantization_config is not None and i.dequantizes_for_large_batches:
        forward += h * 2 * inter * 2  # the largest layer (gate_up) dequantized to fp16
    sampler = i.max_num_seqs * arch.vocab_size * i.profile.sampler_bytes_per_logit
    return max(forward, sampler)


def kv_bytes_per_token(arch: Architecture, tp: int, dtype_bytes: int) -> int:
    return 2 * arch.num_hidden_layers * kv_heads_per_rank(arch, tp) * arch.head_size * dtype_bytes


def plan(i: MemoryInputs) -> Capacity:
    dtype_bytes = DTYPE_BYTES[i.dtype]
    tp, p = i.tensor_parallel_size, i.profile
    total = i.gpu_memory_gib * GiB
    usable = total * i.gpu_memory_utilization
    weights = weights_bytes_per_rank(i.arch, tp, dtype_bytes)
    activations = activation_bytes_per_rank(i, dtype_bytes)
    non_torch = (p.non_torch_gib + (p.non_torch_tp_gib if tp > 1 else 0.0)) * GiB
    graphs = p.cudagraph_gib * GiB
    reserve = activations + non_torch + graphs
    kv = usable - weights - reserve
    per_token = kv_bytes_per_token(i.arch, tp, dtype_bytes)
    block = p.block_size * per_token
    blocks = max(0, math.floor(kv / block))
    tokens = blocks * p.block_size
    needed_kv = math.ceil(i.max_model_len / p.block_size) * block
    needed = (weights + reserve + needed_kv) / total
    return Capacity(
        gpu_memory_gib=i.gpu_memory_gib,
        usable_gib=usable / GiB,
        weights_gib_per_gpu=weights / GiB,
        reserve_gib_per_gpu=reserve / GiB,
        activations_gib_per_gpu=activations / GiB,
        non_torch_gib_per_gpu=non_torch / GiB,
        cudagraph_gib_per_gpu=graphs / GiB,
        kv_cache_gib_per_gpu=max(0.0, kv) / GiB,
        kv_bytes_per_token_per_gpu=per_token,
        kv_cache_tokens=tokens,
        max_model_len=i.max_model_len,
        max_concurrency=tokens / i.max_model_len,
        fits=needed_kv <= kv,
        largest_max_model_len=min(tokens, i.arch.max_position_embeddings),
        utilization_needed=math.ceil(needed * 100) / 100,
        tensor_parallel_size=tp,
    )
