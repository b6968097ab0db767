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
  path on gfx906), that layer's fp16 copy; or the sampler's dummy run, min(max_num_seqs,
  max_num_batched_tokens) rows of full-vocabulary logits, whichever is larger. The sampler's bytes per
  logit are counted tensor by tensor for the top-k/top-p path vLLM takes (sampler_bytes_per_logit):
  28 on the PyTorch path (ROCm, the gfx906 image; CUDA from 0.11.2), 14 on FlashInfer's (CUDA up to
  0.11.1 with FlashInfer). The 28 matches the peak activation of a recorded vLLM 0.26 log (bench/data).
- non-torch memory: what the runtime allocates outside PyTorch (HIP/CUDA libraries' workspaces),
  and RCCL/NCCL buffers when TP > 1. Estimates, per engine profile below.
- CUDA/HIP graphs: captured after the KV cache in vLLM 0.11 (so they come out of the headroom,
  not out of the KV cache); budgeted before it from vLLM 0.21 on.

MoE, sliding window and vision, from the vLLM 0.11.2 code the gfx906 image runs (nlzy/vllm-gfx906
tag v0.11.2+gfx906):
- experts: FusedMoE (model_executor/layers/fused_moe/layer.py) keeps every expert on every rank and
  splits each expert's FFN: intermediate_size_per_partition = moe_intermediate_size // TP; w13 is
  (E, 2 x I/TP, H), w2 (E, H, I/TP). AWQ and GPTQ experts go through MoeWNA16Method.create_weights
  (quantization/moe_wna16.py; awq.py and gptq.py route FusedMoE there in the gfx906 fork): packed
  uint8 weights, fp16 scales per group, packed zeros when the checkpoint has them. The router
  (`gate`, ReplicatedLinear) is replicated; Qwen2-MoE's shared expert is a tensor-parallel MLP plus a
  1-wide gate. Dense layers: qwen2_moe/qwen3_moe `mlp_only_layers`, `decoder_sparse_step`;
  deepseek_v2 `first_k_dense_replace`, `moe_layer_freq`.
- sliding window: Attention.get_kv_cache_spec (attention/layer.py) gives sliding layers a
  SlidingWindowSpec. kv_cache_utils.get_kv_cache_groups: one spec for all layers -> one group; full
  and sliding layers with one page size -> _get_kv_cache_groups_uniform_page_size: group size = the
  smaller layer count, each type split into cdiv(count, group size) groups (padding the last);
  get_kv_cache_config_from_groups: num_blocks = available // page // group size;
  _report_kv_cache_config: "GPU KV cache size" = num_blocks // number of groups x block_size.
  check_enough_kv_cache_memory sums max_memory_usage_bytes over layers: full layers cdiv(L, 16)
  pages, sliding layers (cdiv(min(window - 1 + max_num_batched_tokens, L), 16) + 1) pages
  (kv_cache_interface.SlidingWindowSpec); estimate_max_model_len binary-searches the same sum.
- vision: GPUModelRunner.profile_run (v1/worker/gpu_model_runner.py:4067-4148) runs the encoder on
  max_items x the largest item of the modality with the most tokens per item (images and videos are
  both allowed, 999 per prompt by default), then pads each output shorter than the encoder budget
  (max(max_num_batched_tokens, that item's tokens): encoder_cache_manager.compute_mm_encoder_budget)
  to budget x output width in the encoder cache, where it stays through the text forward and the
  sampler, with the dummy batch's float32 pixel values and the unpadded output (encoder_profile,
  activation_bytes_per_rank). The largest image is the processor's (Qwen2/2.5-VL max_pixels 12845056,
  Qwen3-VL size.longest_edge 16777216: 16384 tokens); the largest video is frames of it while they fit
  max_model_len: Qwen2.5-VL up to 14 of them, Qwen3-VL up to 24576 sharing 25165824 px, 12288
  embeddings counted 12.5 times over with their timestamps (153600 tokens, as vLLM 0.11 logs).
  Qwen3-VL's output is out_hidden_size x (1 + deepstack layers) wide and each deepstack layer has its
  own merger. The encoder's own activations are an estimate (linear in patches: flash-style
  attention, unverified on gfx906); they peak before the cache is filled, so the reserve is the
  larger of the two phases.
- the profile run (profile_run -> _dummy_run(max_num_batched_tokens), then _dummy_sampler_run on
  min(max_num_seqs, max_num_batched_tokens) rows of full-vocabulary logits, gathered on every rank);
  KV memory = total x utilization - weights - torch peak increase - non-torch increase since the
  worker's first snapshot (gpu_worker.determine_available_memory, utils/mem_utils.memory_profiling).
  The snapshot is taken after RCCL/NCCL init, so only what grows after it counts. CUDA/HIP graphs are
  captured after the KV cache in 0.11 (compile_or_warm_up_model), so they are not subtracted.

Sources: vLLM's own startup logs ("Model loading took X GiB", "Available KV cache memory",
"GPU KV cache size: N tokens", "Maximum concurrency for L tokens per request"), reproduced in
tests/data/vllm_startup_logs.yaml and measured by bench/planner_error.py.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from functools import cache

from components.planning import hybrid
from components.planning.catalog import DTYPE_BYTES, Architecture, QuantizationConfig

GiB = 1 << 30
# vLLM's default max_num_batched_tokens / max_num_seqs for the OpenAI server (engine/arg_utils.py
# EngineArgs.get_batch_defaults): GPUs with at least 70 GiB get 8192 / 1024, except A100s (PR #17885),
# the rest 2048 / 256. max_num_seqs sets the rows of the profile run's sampler, so it moves the reserve.
LARGE_GPU_GIB = 70


@dataclass(frozen=True)
class EngineProfile:
    """How one vLLM version budgets memory besides weights and KV cache."""

    name: str
    non_torch_gib: float
    non_torch_tp_gib: float
    cudagraph_gib: float
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


# The top-k/top-p implementation the profile run's dummy sampler takes (vllm/v1/sample/ops/topk_topp_sampler.py
# TopKTopPSampler.__init__). "pytorch" (forward_native): every ROCm build, the gfx906 image included; CUDA
# builds from vLLM 0.11.2 on, where FlashInfer is opt-in (v0.11.2+gfx906 lines 34-47,
# VLLM_USE_FLASHINFER_SAMPLER); CUDA builds without FlashInfer ("Falling back to the PyTorch-native
# implementation of top-p & top-k sampling"). "flashinfer" (forward_cuda): CUDA builds up to 0.11.1 with
# FlashInfer installed, by default (v0.10.1+gfx906 lines 41-52: "Using FlashInfer for top-p & top-k sampling").
SAMPLERS = ("pytorch", "flashinfer")


def sampler_bytes_per_logit(sampler: str, dtype_bytes: int) -> int:
    """Bytes per logit alive at the peak of the profile run's _dummy_sampler_run, tensor by tensor.

    The dummy batch asks for top_k = vocab - 1 and top_p = 0.9 (gpu_model_runner.py:3904-3923, v0.11.2),
    so both filters run on every row. Both paths hold compute_logits' logits in the model dtype (kept by
    _dummy_sampler_run) and Sampler.forward's float32 copy (sampler.py:87).
    pytorch, apply_top_k_top_p at its scatter (topk_topp_sampler.py:152-194): the sorted values (4) and
    int64 indices (8, line 171), the top-k mask (bool, 178), the sorted softmax (4, 183, cumsum in place),
    the top-p mask (bool, 185) and the scatter's output (4, 191): dtype + 26, 28 in float16/bfloat16.
    flashinfer, top_k_top_p_sampling_from_logits with a tensor top_k (v0.10.1 topk_topp_sampler.py:109 and
    295; flashinfer/sampling.py, filter order "top_k_first"): top_k_mask_logits' masked copy (4) and its
    softmax (4): dtype + 12, 14 bytes.
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler is {sampler!r}: one of {', '.join(SAMPLERS)}")
    return dtype_bytes + (26 if sampler == "pytorch" else 12)


def default_batch(gpu_memory_gib: float, device_name: str = "") -> tuple[int, int]:
    """vLLM's default (max_num_batched_tokens, max_num_seqs) for the OpenAI server on this GPU."""
    large = gpu_memory_gib >= LARGE_GPU_GIB and "a100" not in device_name.lower()
    return (8192, 1024) if large else (2048, 256)


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
    # The dummy sampler's top-k/top-p path (SAMPLERS): the gfx906 image runs "pytorch".
    sampler: str = "pytorch"
    # Speculative decoding: k draft tokens a step, and the model's MTP draft layers it runs (0 for ngram).
    speculative_tokens: int = 0
    draft_layers: int = 0


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
    architecture_class: str = "dense"
    encoder_weights_gib_per_gpu: float = 0.0
    encoder_reserve_gib_per_gpu: float = 0.0
    kv_groups: int = 1
    sliding_layers: int = 0
    # Hybrid linear-attention models (components/planning/hybrid.py): the Gated DeltaNet layers, one sequence's
    # recurrent state on one GPU as allocated, and the attention block that holds a state's page.
    linear_layers: int = 0
    state_gib_per_sequence_per_gpu: float = 0.0
    hybrid_block_size: int = 0
    modelled: str = ""
    # Why the fit verdict is not given (an architecture or quantization the planner does not model).
    unmodelled: str = ""

    def as_json(self) -> dict[str, float | int | bool | str]:
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


def _expert_bytes(arch: Architecture, tp: int, dtype_bytes: int) -> float:
    """One MoE layer's experts on one rank: FusedMoE w13 (E, 2 x I/TP, H) and w2 (E, H, I/TP)."""
    e, h, i = arch.num_experts or 0, arch.hidden_size, arch.expert_intermediate_size // tp
    q = arch.quantization_config
    if q is None or q.quant_method == "fp8":
        return e * (_linear_bytes(h, 2 * i, q, dtype_bytes) + _linear_bytes(i, h, q, dtype_bytes))
    # moe_wna16.py MoeWNA16Method.create_weights: the group shrinks until it divides both I/TP and H.
    group = q.group_size if q.group_size > 0 else h
    while group > 1 and (i % group or h % group):
        group //= 2
    packed = (2 * i * h + h * i) * q.bits / 8
    scales = (2 * i * (h // group) + h * (i // group)) * dtype_bytes
    has_zp = q.zero_point if q.zero_point is not None else q.quant_method == "awq" or q.sym is False
    zeros = (2 * i * (h // group) + h * (i // group)) * q.bits / 8 if has_zp else 0
    return e * (packed + scales + zeros)


def expert_bytes_per_rank(arch: Architecture, tp: int, dtype_bytes: int) -> float:
    """Every MoE layer's experts on one rank (0 for a dense model)."""
    moe_layers = arch.num_hidden_layers - arch.dense_mlp_layers
    return moe_layers * _expert_bytes(arch, tp, dtype_bytes) if arch.is_moe else 0.0


def kv_heads_per_rank(arch: Architecture, tp: int) -> int:
    return max(1, arch.kv_heads // tp)


def encoder_weights_bytes_per_rank(arch: Architecture, tp: int, dtype_bytes: int) -> float:
    """The vision encoder: its blocks split by TP (Column/RowParallelLinear in qwen2_5_vl.py and
    siglip.py), patch embedding and projector replicated, all in the model dtype (AWQ/GPTQ releases
    leave the vision tower unquantized: modules_to_not_convert)."""
    v = arch.vision_config
    if v is None:
        return 0.0
    h, inter = v.hidden_size, v.intermediate_size
    gated = (v.hidden_act or "") == "silu"  # Qwen2.5-VL's SwiGLU MLP; SigLIP/Qwen2-VL use fc1/fc2
    block = (4 * h * h + (3 if gated else 2) * h * inter) / tp + 4 * h
    patch = v.in_channels * v.temporal_patch_size * v.patch_size**2 * h
    merge = v.spatial_merge_size**2
    out = v.out_hidden_size or arch.hidden_size
    projector = (h * merge) ** 2 + h * merge * out if merge > 1 else h * out
    # qwen3_vl.py Qwen3_VisionTransformer: one more merger per deepstack layer (deepstack_merger_list).
    mergers = 1 + len(v.deepstack_visual_indexes)
    return (v.num_hidden_layers * block + patch + mergers * projector) * dtype_bytes


def gated_delta_net_bytes(arch: Architecture, tp: int, dtype_bytes: int) -> float:
    """One Gated DeltaNet layer on one rank (qwen3_next.py / qwen3_5.py in the image's vLLM): the q, k, v and z
    projections and the b and a gates (column parallel), out_proj (row parallel), the depthwise conv1d in the
    model dtype, A_log and dt_bias in float32, its gated RMSNorm and the layer's two RMSNorms."""
    h, q = arch.hidden_size, arch.quantization_config
    kh, vh = arch.linear_num_key_heads or 0, arch.linear_num_value_heads or 0
    key, value = kh * (arch.linear_key_head_dim or 0), vh * (arch.linear_value_head_dim or 0)
    conv_dim = 2 * key + value
    return (
        _linear_bytes(h, (2 * key + 2 * value) // tp, q, dtype_bytes)
        + _linear_bytes(h, 2 * vh // tp, q, dtype_bytes)
        + _linear_bytes(value // tp, h, q, dtype_bytes)
        + conv_dim // tp * (arch.linear_conv_kernel_dim or 4) * dtype_bytes
        + 2 * vh // tp * 4
        + (arch.linear_value_head_dim or 0) * dtype_bytes
        + 2 * h * dtype_bytes
    )


def draft_layer_bytes(arch: Architecture, tp: int, dtype_bytes: int) -> float:
    """One MTP draft layer on one rank (qwen3_next_mtp.py / deepseek_mtp.py): a full-attention decoder layer with
    the model's MLP or experts, the fc joining the token's embedding and the hidden state (2 x hidden -> hidden,
    column parallel) and its norms; it shares the model's embeddings and LM head. Counted in the model's
    quantization (a checkpoint may keep it unquantized: then it is larger)."""
    h, q = arch.hidden_size, arch.quantization_config
    full = Architecture.model_validate(
        {**arch.model_dump(exclude_none=True), "num_hidden_layers": 1, "layer_types": ["full_attention"],
         "linear_num_value_heads": None, "vocab_size": 1, "tie_word_embeddings": True, "max_position_embeddings": 1,
         "vision_config": None}
    )  # fmt: skip
    layer = weights_bytes_per_rank(full, tp, dtype_bytes) - 3 * h * dtype_bytes
    return layer + _linear_bytes(2 * h, h // tp, q, dtype_bytes) + 3 * h * dtype_bytes


def weights_bytes_per_rank(arch: Architecture, tp: int, dtype_bytes: int) -> float:
    h, hd, q = arch.hidden_size, arch.head_size, arch.quantization_config
    heads = arch.num_attention_heads // tp
    kv = kv_heads_per_rank(arch, tp)
    vocab = math.ceil(arch.vocab_size / 64) * 64 // tp
    embedding = vocab * h * dtype_bytes
    lm_head = 0 if arch.tied_embeddings else embedding
    gate = heads if arch.attn_output_gate else 0  # Qwen3-Next/Qwen3.5: q_proj carries the output gate
    attention = (
        _linear_bytes(h, (heads + gate + 2 * kv) * hd, q, dtype_bytes)  # qkv_proj (column parallel)
        + _linear_bytes(heads * hd, h, q, dtype_bytes)  # o_proj (row parallel)
        + 2 * h * dtype_bytes  # two RMSNorms
    )

    def mlp(width: int) -> float:
        inter = width // tp
        return _linear_bytes(h, 2 * inter, q, dtype_bytes) + _linear_bytes(inter, h, q, dtype_bytes)

    dense_layers = arch.dense_mlp_layers
    linear = sum(arch.linear_attention_layers())
    total = (arch.num_hidden_layers - linear) * attention + linear * gated_delta_net_bytes(arch, tp, dtype_bytes)
    if dense_layers:
        total += dense_layers * mlp(arch.intermediate_size or arch.expert_intermediate_size)
    moe_layers = arch.num_hidden_layers - dense_layers
    if moe_layers:
        shared = arch.shared_expert_size
        router = h * (arch.num_experts or 0) * dtype_bytes  # ReplicatedLinear gate
        moe = _expert_bytes(arch, tp, dtype_bytes) + router
        if shared:
            moe += mlp(shared) + h * dtype_bytes  # shared expert and its 1-wide gate
        total += moe_layers * moe
    rotary = arch.max_position_embeddings * hd * dtype_bytes
    encoder = encoder_weights_bytes_per_rank(arch, tp, dtype_bytes)
    return embedding + lm_head + total + h * dtype_bytes + rotary + encoder


@dataclass(frozen=True)
class QwenVlProcessor:
    """What a Qwen-VL processor lets through (preprocessor_config.json, video_preprocessor_config.json)."""

    image_min_pixels: int
    image_max_pixels: int
    # None: videos go through the image processor, frame by frame (Qwen2/2.5-VL, qwen2_vl.py:973).
    video_min_pixels: int | None
    video_max_pixels: int | None
    max_frames: int  # _MAX_FRAMES_PER_VIDEO
    start_frames: int  # _get_max_video_frames' first count
    # get_max_video_tokens counts a video's placeholder text too: Qwen3-VL writes "<t seconds>" and
    # vision start/end around each frame's tokens, 12.5 tokens per embedding (qwen3_vl.py:700-716).
    video_tokens_per_embedding: float


# Qwen2/2.5-VL: Qwen2VLImageProcessor min_pixels 3136, max_pixels 12845056; qwen2_vl.py:116 caps a
# video at 14 frames. Qwen3-VL: image size {shortest_edge 65536, longest_edge 16777216}, video size
# {shortest_edge 4096, longest_edge 25165824} (the released preprocessor and video preprocessor
# configs, as public copies quote them; the 153600-token budget vLLM logs for Qwen3-VL = 12.5 x
# 25165824 / (32 x 32 x 2)), qwen3_vl.py:123 caps a video at 24576 frames and counts from 2 (line 686).
QWEN2_VL = QwenVlProcessor(3136, 12845056, None, None, 14, 1, 1.0)
QWEN3_VL = QwenVlProcessor(65536, 16777216, 4096, 25165824, 24576, 2, 12.5)
_QWEN_VL = {"qwen2_vl": QWEN2_VL, "qwen2_5_vl": QWEN2_VL, "qwen3_vl": QWEN3_VL, "qwen3_vl_moe": QWEN3_VL}
_LARGEST = 9999999  # qwen2_vl.py:1038 get_image_size_with_most_features asks for a 9999999 px square


def _smart_resize(
    height: int, width: int, factor: int, min_pixels: int, max_pixels: int, frames: int | None = None, temporal: int = 2
) -> tuple[int, int]:
    """transformers' smart_resize, as vLLM calls it: qwen2_vl image_processing (frames None) and, with
    frames, qwen3_vl video_processing (the pixel budget covers every frame)."""
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    t_bar = 1 if frames is None else round(frames / temporal) * temporal
    n = 1 if frames is None else frames
    if t_bar * h_bar * w_bar > max_pixels:
        beta = math.sqrt(n * height * width / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif t_bar * h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (n * height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


@cache
def _qwen_vl_patches(proc: QwenVlProcessor, patch: int, merge: int, temporal: int, frames: int, video: bool) -> int:
    """Patches of the largest image (frames 1) or video of `frames` frames: _get_vision_info
    (qwen2_vl.py:964-1005, qwen3_vl.py:631-684) on get_image_size_with_most_features' square."""
    factor = patch * merge
    side, _ = _smart_resize(_LARGEST, _LARGEST, factor, proc.image_min_pixels, proc.image_max_pixels)
    if video and proc.video_max_pixels is not None and proc.video_min_pixels is not None:
        h, w = _smart_resize(side, side, factor, proc.video_min_pixels, proc.video_max_pixels, frames, temporal)
    else:
        h, w = _smart_resize(side, side, factor, proc.image_min_pixels, proc.image_max_pixels)
    grid_t = max((frames + frames % temporal) // temporal, 1)
    return grid_t * (h // patch) * (w // patch)


@cache
def _qwen_vl_video_frames(proc: QwenVlProcessor, patch: int, merge: int, temporal: int, seq_len: int) -> int:
    """get_num_frames_with_most_features (qwen2_vl.py:1056-1090): frames are added while the video's
    tokens stay within max_model_len, up to max_frames."""
    frames = proc.start_frames
    while frames < proc.max_frames:
        if _qwen_vl_patches(proc, patch, merge, temporal, frames + 1, True) // merge**2 > seq_len:
            break
        frames += 1
    return max(frames, 1)


@dataclass(frozen=True)
class EncoderProfile:
    """What GPUModelRunner.profile_run feeds the vision encoder and keeps (gpu_model_runner.py:4067-4148)."""

    modality: str  # MultiModalBudget.get_modality_with_max_tokens: the modality of the most tokens per item
    frames: int
    items: int  # MultiModalBudget.get_max_items
    item_tokens: int  # tokens one item takes in the prompt, as the budget counts them
    item_embeddings: int  # rows the encoder outputs for one item
    item_patches: int  # patches the encoder runs for one item
    budget: int  # compute_mm_encoder_budget: max(max_num_batched_tokens, item_tokens)
    width: int  # one output row: out_hidden_size x (1 + deepstack layers)
    item_pixel_bytes: int  # the processor's float32 patch values of one item, on the GPU


def encoder_profile(i: MemoryInputs) -> EncoderProfile | None:
    """The dummy batch vLLM 0.11 profiles the vision encoder with, or None for a text-only model.

    Qwen-VL offers images and videos (limit_mm_per_prompt defaults to 999 each, config/multimodal.py:216-226);
    get_mm_max_tokens_per_item (qwen2_vl.py:955-962) gives each one's largest item and profile_run takes the
    larger (gpu_model_runner.py:4080-4096). A video wins once max_model_len lets it hold more tokens than an
    image: Qwen2.5-VL, up to 14 frames at the image's size; Qwen3-VL, up to 24576 frames sharing 25165824
    pixels, 12288 embeddings, counted 12.5 times over with their timestamps (153600 tokens: vLLM 0.11 logs
    "Encoder cache will be initialized with a budget of 153600 tokens, and profiled with 1 video items").
    SigLIP-style encoders (Gemma 3) take one fixed-size image.
    """
    arch, v = i.arch, i.arch.vision_config
    if v is None:
        return None
    width = encoder_output_width(arch)
    frames = 1
    modality = "image"
    if v.spatial_merge_size > 1:
        proc = _QWEN_VL.get(arch.model_type or "", QWEN2_VL)
        key = (proc, v.patch_size, v.spatial_merge_size, v.temporal_patch_size)
        patches = _qwen_vl_patches(*key, 1, False)
        tokens = embeddings = patches // v.spatial_merge_size**2
        video_frames = _qwen_vl_video_frames(*key, i.max_model_len)
        video_patches = _qwen_vl_patches(*key, video_frames, True)
        video_embeddings = video_patches // v.spatial_merge_size**2
        video_tokens = int(video_embeddings * proc.video_tokens_per_embedding)
        if video_tokens > tokens:  # max() keeps the image on a tie (dict order image, video)
            modality, frames, patches, tokens, embeddings = (
                "video",
                video_frames,
                video_patches,
                video_tokens,
                video_embeddings,
            )
        pixel_bytes = patches * v.in_channels * v.temporal_patch_size * v.patch_size**2 * 4
    else:
        side = v.image_size or 224
        patches = (side // v.patch_size) ** 2
        tokens = embeddings = arch.mm_tokens_per_image or patches
        pixel_bytes = v.in_channels * side * side * 4
    budget = max(i.max_num_batched_tokens, tokens)
    # utils.py:84-125 get_max_items, chunked prefill on: the budget's items, at most max_num_seqs prompts of
    # max_model_len // tokens items each.
    per_prompt = max(1, min(999, i.max_model_len // tokens))
    items = max(1, min(budget // tokens, i.max_num_seqs * per_prompt))
    return EncoderProfile(modality, frames, items, tokens, embeddings, patches, budget, width, pixel_bytes)


def encoder_tokens_per_item(arch: Architecture) -> int:
    """Tokens the largest image becomes: Gemma 3's fixed mm_tokens_per_image, or, for Qwen-VL, the
    processor's largest image over (patch x merge)^2 (Qwen2/2.5-VL 12845056 px, Qwen3-VL 16777216 px:
    vLLM logs "Encoder cache will be initialized with a budget of 16384 tokens" for a Qwen3-VL image)."""
    v = arch.vision_config
    if v is None:
        return 0
    if arch.mm_tokens_per_image:
        return arch.mm_tokens_per_image
    if v.spatial_merge_size > 1:
        proc = _QWEN_VL.get(arch.model_type or "", QWEN2_VL)
        patches = _qwen_vl_patches(proc, v.patch_size, v.spatial_merge_size, v.temporal_patch_size, 1, False)
        return patches // v.spatial_merge_size**2
    return ((v.image_size or 224) // v.patch_size) ** 2


def encoder_output_width(arch: Architecture) -> int:
    """Width of one encoder output token as the encoder cache holds it: the projector's output, and
    for Qwen3-VL one more of it per deepstack layer (qwen3_vl.py: out_hidden_size x (1 + deepstack))."""
    v = arch.vision_config
    if v is None:
        return 0
    return (v.out_hidden_size or arch.hidden_size) * (1 + len(v.deepstack_visual_indexes))


def _text_peak_bytes(i: MemoryInputs, dtype_bytes: int) -> float:
    """The text model's part of the profile run: its forward at max_num_batched_tokens, or the sampler."""
    arch, tp = i.arch, i.tensor_parallel_size
    h, t = arch.hidden_size, i.max_num_batched_tokens
    forward = 0.0
    if arch.dense_mlp_layers:
        inter = (arch.intermediate_size or arch.expert_intermediate_size) // tp
        forward = t * dtype_bytes * (3 * inter + 3 * h)
        if arch.quantization_config is not None and i.dequantizes_for_large_batches:
            forward += h * 2 * inter * 2  # the largest layer (gate_up) dequantized to fp16
    if arch.is_moe:
        # fused_moe.py fused_experts_impl: cache13 (M, topk, max(2I/TP, H)) and cache2 (M, topk, I/TP)
        inter, topk = arch.expert_intermediate_size // tp, arch.num_experts_per_tok or 1
        forward = max(forward, t * dtype_bytes * (topk * (max(2 * inter, h) + inter) + 3 * h))
    rows = min(i.max_num_seqs, t)
    sampler = rows * arch.vocab_size * sampler_bytes_per_logit(i.sampler, dtype_bytes)
    return max(forward, sampler)


def activation_bytes_per_rank(i: MemoryInputs, dtype_bytes: int) -> float:
    """The torch peak increase of profile_run (gpu_model_runner.py:4067-4148, v0.11.2), phase by phase.

    A vision model first runs its encoder on the dummy batch (4098-4106); then each output shorter than
    the budget is copied into a zeroed (budget x width) tensor and cached (4119-4132) while the text
    forward and the sampler run (4135-4143). Through that second phase profile_run's locals keep the
    dummy batch's pixel values (float32, as the processor returns them) and, through the loop variable
    `output`, the encoder's own output: all of it counts, on every rank (the encoder's weights are
    split by TP, its inputs and outputs are not).
    """
    text = _text_peak_bytes(i, dtype_bytes)
    e = encoder_profile(i)
    if e is None:
        return text
    v = i.arch.vision_config
    assert v is not None
    pixels = e.items * e.item_pixel_bytes
    outputs = e.items * e.item_embeddings * e.width * dtype_bytes
    padded = e.items * e.budget * e.width * dtype_bytes if e.item_embeddings < e.budget else 0
    # The encoder's own activations are an estimate: 8 live copies of the residual stream and the MLP's
    # split hidden layer per patch (flash-style attention, linear in patches; unverified on gfx906).
    per_patch = (8 * v.hidden_size + 2 * v.intermediate_size // i.tensor_parallel_size) * dtype_bytes
    encoding = pixels + e.items * e.item_patches * per_patch + outputs
    with_text = pixels + outputs + padded + text
    return max(encoding, with_text)


def encoder_reserve_bytes(i: MemoryInputs, dtype_bytes: int) -> float:
    """What the vision encoder's profiling adds to the text model's peak (0 for a text-only model)."""
    return activation_bytes_per_rank(i, dtype_bytes) - _text_peak_bytes(i, dtype_bytes)


def kv_bytes_per_token(arch: Architecture, tp: int, dtype_bytes: int) -> int:
    """KV bytes per token of all layers on one rank, as if every layer held every token."""
    return 2 * arch.num_hidden_layers * kv_heads_per_rank(arch, tp) * arch.head_size * dtype_bytes


@dataclass(frozen=True)
class KvLayout:
    """vLLM 0.11's KV cache layout for a model: layer page size and groups (kv_cache_utils)."""

    page_bytes: int  # one block of one layer
    layers: int  # layers sharing a pool (group size)
    groups: int  # KV cache groups; "GPU KV cache size" = num_blocks // groups x block_size
    windows: tuple[int | None, ...]

    def tokens(self, available: float, block_size: int) -> int:
        num_blocks = max(0, int(available // self.page_bytes // self.layers))
        return num_blocks // self.groups * block_size

    def needed_bytes(self, max_model_len: int, batched_tokens: int, block_size: int) -> int:
        """check_enough_kv_cache_memory: the sum of every layer's max_memory_usage_bytes."""
        total = 0
        for window in self.windows:
            if window is None:
                total += math.ceil(max_model_len / block_size) * self.page_bytes
            else:
                tokens = min(window - 1 + batched_tokens, max_model_len)
                total += (math.ceil(tokens / block_size) + 1) * self.page_bytes
        return total

    def max_concurrency(self, available: float, max_model_len: int, batched_tokens: int, block_size: int) -> float:
        """get_max_concurrency_for_kv_cache_config, for one group of each window."""
        num_blocks = max(0, int(available // self.page_bytes // self.layers))
        per_group = {
            w: math.ceil(self._group_usage(w, max_model_len, batched_tokens, block_size)) for w in self.windows
        }
        counts = {w: math.ceil(self.windows.count(w) / self.layers) for w in per_group}
        blocks_per_request = sum(per_group[w] * counts[w] for w in per_group)
        return num_blocks / blocks_per_request if blocks_per_request else 0.0

    @staticmethod
    def _group_usage(window: int | None, max_model_len: int, batched_tokens: int, block_size: int) -> int:
        if window is None:
            return math.ceil(max_model_len / block_size)
        return math.ceil(min(window - 1 + batched_tokens, max_model_len) / block_size) + 1


def kv_layout(
    arch: Architecture,
    tp: int,
    dtype_bytes: int,
    block_size: int,
    max_model_len: int = 0,
    speculative_tokens: int = 0,
    draft_layers: int = 0,
) -> KvLayout | hybrid.HybridLayout:
    if arch.is_linear_hybrid:
        return hybrid.hybrid_layout(
            arch, tp, dtype_bytes, kv_heads_per_rank(arch, tp), max_model_len, speculative_tokens, draft_layers
        )
    page = block_size * 2 * kv_heads_per_rank(arch, tp) * arch.head_size * dtype_bytes
    windows = arch.layer_windows()
    counts = {w: windows.count(w) for w in set(windows)}
    if len(counts) == 1:
        return KvLayout(page, len(windows), 1, windows)  # _get_kv_cache_groups_uniform_spec
    group = min(counts.values())  # _get_kv_cache_groups_uniform_page_size
    groups = sum(math.ceil(c / group) for c in counts.values())
    return KvLayout(page, group, groups, windows)


def _largest_len(layout: KvLayout | hybrid.HybridLayout, available: float, i: MemoryInputs) -> int:
    """estimate_max_model_len: the longest max_model_len whose KV need fits, by binary search."""
    lo, hi, best = 1, i.arch.max_position_embeddings, 0
    while lo <= hi:
        mid = (lo + hi) // 2
        if layout.needed_bytes(mid, i.max_num_batched_tokens, i.profile.block_size) <= available:
            best, lo = mid, mid + 1
        else:
            hi = mid - 1
    return best


def plan(i: MemoryInputs) -> Capacity:
    dtype_bytes = DTYPE_BYTES[i.dtype]
    tp, p = i.tensor_parallel_size, i.profile
    total = i.gpu_memory_gib * GiB
    usable = total * i.gpu_memory_utilization
    weights = weights_bytes_per_rank(i.arch, tp, dtype_bytes) + i.draft_layers * draft_layer_bytes(
        i.arch, tp, dtype_bytes
    )
    activations = activation_bytes_per_rank(i, dtype_bytes)
    non_torch = (p.non_torch_gib + (p.non_torch_tp_gib if tp > 1 else 0.0)) * GiB
    graphs = p.cudagraph_gib * GiB
    reserve = activations + non_torch + graphs
    kv = usable - weights - reserve
    return capacity_from_available(i, kv, weights, activations, non_torch, graphs)


def capacity_from_available(
    i: MemoryInputs,
    kv: float,
    weights: float = 0.0,
    activations: float = 0.0,
    non_torch: float = 0.0,
    graphs: float = 0.0,
) -> Capacity:
    """What vLLM makes of `kv` bytes of available KV cache memory: tokens, fit, largest length."""
    dtype_bytes = DTYPE_BYTES[i.dtype]
    tp, p = i.tensor_parallel_size, i.profile
    total = i.gpu_memory_gib * GiB
    usable = total * i.gpu_memory_utilization
    reserve = activations + non_torch + graphs
    layout = kv_layout(i.arch, tp, dtype_bytes, p.block_size, i.max_model_len, i.speculative_tokens, i.draft_layers)
    hybrid_of = layout if isinstance(layout, hybrid.HybridLayout) else None
    tokens = layout.tokens(max(0.0, kv), p.block_size)
    needed_kv = layout.needed_bytes(i.max_model_len, i.max_num_batched_tokens, p.block_size)
    needed = (weights + reserve + needed_kv) / total if total else 0.0
    return Capacity(
        gpu_memory_gib=i.gpu_memory_gib,
        usable_gib=usable / GiB,
        weights_gib_per_gpu=weights / GiB,
        reserve_gib_per_gpu=reserve / GiB,
        activations_gib_per_gpu=activations / GiB,
        non_torch_gib_per_gpu=non_torch / GiB,
        cudagraph_gib_per_gpu=graphs / GiB,
        kv_cache_gib_per_gpu=max(0.0, kv) / GiB,
        kv_bytes_per_token_per_gpu=(
            hybrid.kv_bytes_per_token(i.arch, kv_heads_per_rank(i.arch, tp), dtype_bytes)
            if isinstance(layout, hybrid.HybridLayout)
            else kv_bytes_per_token(i.arch, tp, dtype_bytes)
        ),
        kv_cache_tokens=tokens,
        max_model_len=i.max_model_len,
        max_concurrency=layout.max_concurrency(max(0.0, kv), i.max_model_len, i.max_num_batched_tokens, p.block_size),
        fits=0 < needed_kv <= kv,
        largest_max_model_len=_largest_len(layout, max(0.0, kv), i),
        utilization_needed=math.ceil(needed * 100) / 100,
        tensor_parallel_size=tp,
        architecture_class=i.arch.architecture_class,
        encoder_weights_gib_per_gpu=encoder_weights_bytes_per_rank(i.arch, tp, dtype_bytes) / GiB,
        encoder_reserve_gib_per_gpu=encoder_reserve_bytes(i, dtype_bytes) / GiB,
        kv_groups=layout.groups,
        sliding_layers=sum(1 for w in layout.windows if w is not None),
        modelled=describe(i, layout),
        linear_layers=hybrid_of.linear_layers if hybrid_of else 0,
        state_gib_per_sequence_per_gpu=hybrid_of.state_gib_per_sequence() if hybrid_of else 0.0,
        hybrid_block_size=hybrid_of.block_size if hybrid_of else 0,
    )


def describe(i: MemoryInputs, layout: KvLayout | hybrid.HybridLayout) -> str:
    """One line on what the memory model counted for this server, and what it leaves out."""
    arch, p = i.arch, i.profile
    parts = [f"{arch.architecture_class} ({arch.model_type or 'decoder'}, {arch.num_hidden_layers} layers)"]
    if arch.is_moe:
        moe_layers = arch.num_hidden_layers - arch.dense_mlp_layers
        shared = f", shared expert {arch.shared_expert_size}" if arch.shared_expert_size else ""
        parts.append(
            f"{arch.num_experts} experts of {arch.expert_intermediate_size} split by TP in {moe_layers} layers{shared}"
            + (f", {arch.dense_mlp_layers} dense layers" if arch.dense_mlp_layers else "")
        )
    if isinstance(layout, hybrid.HybridLayout):
        parts.append(
            f"{layout.linear_layers} Gated DeltaNet layers, each sequence's recurrent state "
            f"{layout.state_bytes / (1 << 20):.2f} MiB a layer per GPU, and {len(layout.windows)} full-attention "
            f"layers: {layout.block_size}-token blocks whose page holds one state, {layout.groups} groups of "
            f"{layout.layers} layers (vLLM 0.23's hybrid KV cache, mamba cache mode none: prefix caching off)"
        )
    sliding = sum(1 for w in layout.windows if w is not None)
    if sliding:
        window = next(w for w in layout.windows if w is not None)
        parts.append(
            f"{sliding} sliding-window layers (window {window}) and {len(layout.windows) - sliding} full: "
            f"{layout.groups} KV cache groups of {layout.layers} layers, tokens counted as vLLM 0.11 reports them"
        )
    e = encoder_profile(i)
    if arch.vision_config is not None and e is not None:
        v = arch.vision_config
        item = f"{e.modality}{'s' if e.items > 1 else ''}" + (f" of {e.frames} frames" if e.modality == "video" else "")
        counted = f" ({e.item_tokens} with its placeholder text)" if e.item_tokens != e.item_embeddings else ""
        if e.item_embeddings < e.budget:
            held = (
                f"each output padded to {e.items} x {e.budget} x {e.width} in the encoder cache, held through the "
                "text run with the unpadded output and the pixel values"
            )
        else:
            held = f"its output ({e.items} x {e.item_embeddings} x {e.width}) cached through the text run with the pixel values"
        parts.append(
            f"vision encoder ({v.num_hidden_layers} layers, hidden {v.hidden_size}) weights and its profiling run: "
            f"{e.items} {item}, {e.item_embeddings} embeddings each{counted}, encoder budget {e.budget} tokens; {held}"
        )
    rows = min(i.max_num_seqs, i.max_num_batched_tokens)
    per_logit = sampler_bytes_per_logit(i.sampler, DTYPE_BYTES[i.dtype])
    parts.append(
        f"profile run at {i.max_num_batched_tokens} tokens, sampler on {rows} rows "
        f"({i.sampler} top-k/top-p, {per_logit} bytes per logit)"
    )
    parts.append(
        "CUDA/HIP graphs budgeted"
        if p.cudagraph_gib
        else "CUDA/HIP graphs outside the budget (captured after the KV cache)"
    )
    non_torch = p.non_torch_gib + (p.non_torch_tp_gib if i.tensor_parallel_size > 1 else 0.0)
    estimated = [
        f"non-torch memory {non_torch:.2f} GiB (library workspaces"
        + (", RCCL/NCCL buffers" if i.tensor_parallel_size > 1 else "")
        + f": a constant of engine profile {p.name})"
    ]
    if arch.vision_config is not None:
        estimated.append("the vision encoder's own activations")
    parts.append("estimated: " + ", ".join(estimated))
    parts.append(
        "not modelled: memory other processes hold on the GPU "
        "(vLLM refuses to start when free memory is below utilization x total)"
    )
    return "; ".join(parts)
