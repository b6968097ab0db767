"""The KV cache of hybrid linear-attention models (Qwen3-Next, Qwen3.5: Gated DeltaNet layers with a full-attention
layer every few), as vLLM 0.23 allocates it: pure arithmetic, free of Pulumi.

Read in the aiinfos/vllm-gfx906-mobydick image's vLLM (branch gfx906/v0.23.1rc0.x at
e12fe369826311029355f070e32f94fcfc8c663a):
- a linear layer keeps, per sequence, a conv state of (conv_dim / TP) x (kernel - 1) in the model dtype and a
  temporal (SSM) state of (value heads / TP) x value dim x key dim, with conv_dim = 2 x key heads x key dim +
  value heads x value dim (model_executor/layers/mamba/mamba_utils.py lines 213-234); the temporal state takes the
  config's mamba_ssm_dtype (model_executor/models/config.py lines 603-626; float32 in Qwen3.5), else the conv's
  dtype (mamba_utils.py lines 84-96).
- page sizes are unified: the attention block grows to the smallest multiple of the backend's kernel alignment
  whose page (block x K and V of one layer on one rank) holds one layer's state, and the state's page is padded
  to it (platforms/interface.py lines 532-703, _align_hybrid_block_size; the alignment is taken as vLLM's default
  block of 16 tokens, with which the published figures below reproduce exactly).
- layers are grouped: the smaller layer count is the group size when the larger is at least 1.5 times it, each
  type split into groups of that size (v1/core/kv_cache_utils.py lines 1074-1193); one pool of blocks, each
  block one page per layer of a group (num_blocks = available // page // group size, lines 952-969).
- a request holds cdiv(max_model_len, block) blocks in each full-attention group and, in each linear group, one
  block with the mamba cache mode `none` (two with `align`, a block per block_size tokens with `all`;
  v1/kv_cache_interface.py MambaSpec.max_memory_usage_bytes, lines 627-636); "Maximum concurrency" = blocks /
  a request's blocks, and "GPU KV cache size" = concurrency x max_model_len (kv_cache_utils.py lines 899-918,
  1720-1730, 2066-2083).
- prefix caching is off by default for hybrid models in this vLLM (config/model.py lines 1830-1835), which keeps
  the mamba cache mode `none` (model_executor/models/config.py lines 454-457): the mode this plan counts. The
  server's command does not turn prefix caching on.

Checked against the fork's published Qwen3.8-27B run (docs/gfx906/README.md at
a2df265ba8b5ffb407aadf6d71ea83767bb38158, "Long-context prefill sweep"): a 10 GiB pool at TP 2 and 262144 tokens
holds 323,414 tokens, and 262144 tokens need at least 8.09 GiB (tests/test_hybrid_memory.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from components.planning.catalog import DTYPE_BYTES, Architecture

# The gfx906 attention backends' kernel block alignment (tokens): vLLM's default block size.
KERNEL_BLOCK_ALIGNMENT = 16
STATE_BLOCKS = {"none": 1, "align": 2}


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def state_bytes(arch: Architecture, tp: int, dtype_bytes: int, speculative_tokens: int = 0) -> int:
    """One sequence's recurrent state in one linear layer on one rank: the conv state (k more columns with k
    speculative tokens, qwen3_next.py lines 838-858) and the temporal state."""
    kh, vh = arch.linear_num_key_heads or 0, arch.linear_num_value_heads or 0
    kd, vd = arch.linear_key_head_dim or 0, arch.linear_value_head_dim or 0
    conv_dim = 2 * kh * kd + vh * vd
    conv = conv_dim // tp * ((arch.linear_conv_kernel_dim or 4) - 1 + speculative_tokens) * dtype_bytes
    ssm_bytes = DTYPE_BYTES[arch.mamba_ssm_dtype] if arch.mamba_ssm_dtype else dtype_bytes
    temporal = vh // tp * vd * kd * ssm_bytes
    return conv + temporal


@dataclass(frozen=True)
class HybridLayout:
    """vLLM 0.23's hybrid KV cache layout on one rank (the memory planner's KvLayout interface; the block size
    passed to its methods is the engine profile's and is ignored: a hybrid model's block is its own)."""

    page_bytes: int  # one block of one layer: attention page, the state's page padded to it
    layers: int  # group size
    groups: int  # full-attention groups + linear groups
    windows: tuple[int | None, ...]  # the full-attention layers (no window)
    block_size: int  # attention tokens per block
    full_groups: int
    linear_groups: int
    linear_layers: int
    state_bytes: int  # one sequence's state in one linear layer, unpadded
    max_model_len: int
    state_blocks: int = STATE_BLOCKS["none"]

    def request_blocks(self, max_model_len: int) -> int:
        """Blocks of one group-slot a max_model_len request holds: its KV in the full groups, its state in the
        linear ones."""
        return self.full_groups * _ceil_div(max_model_len, self.block_size) + self.linear_groups * self.state_blocks

    def num_blocks(self, available: float) -> int:
        return max(0, int(available // self.page_bytes // self.layers))

    def max_concurrency(self, available: float, max_model_len: int, batched_tokens: int, block_size: int) -> float:
        return self.num_blocks(available) / self.request_blocks(max_model_len)

    def tokens(self, available: float, block_size: int) -> int:
        """vLLM's "GPU KV cache size": the concurrency at max_model_len times max_model_len."""
        return int(self.max_concurrency(available, self.max_model_len, 0, 0) * self.max_model_len)

    def needed_bytes(self, max_model_len: int, batched_tokens: int, block_size: int) -> int:
        """What one max_model_len request needs: vLLM refuses to start below it."""
        return self.request_blocks(max_model_len) * self.page_bytes * self.layers

    def state_gib_per_sequence(self) -> float:
        """One sequence's recurrent state on one rank, as allocated (padded pages, every linear layer)."""
        return self.linear_layers * self.state_blocks * self.page_bytes / (1 << 30)


def hybrid_layout(
    arch: Architecture,
    tp: int,
    dtype_bytes: int,
    kv_heads_per_rank: int,
    max_model_len: int,
    speculative_tokens: int = 0,
    draft_layers: int = 0,
) -> HybridLayout:
    """The layout on one rank. With k speculative tokens each linear layer holds 1 + k state blocks per request
    (layers/mamba/abstract.py lines 44-60: num_speculative_blocks = k) and its conv state k more columns; MTP's
    draft layers are full-attention layers of the same KV cache (their KV counted with the model's)."""
    linear = arch.linear_attention_layers()
    n_linear = sum(linear)
    n_full = len(linear) - n_linear + draft_layers
    attn_token = 2 * kv_heads_per_rank * arch.head_size * dtype_bytes
    state = state_bytes(arch, tp, dtype_bytes, speculative_tokens)
    a = KERNEL_BLOCK_ALIGNMENT
    block = a * _ceil_div(state, a * attn_token)
    page = block * attn_token
    small, large = min(n_full, n_linear), max(n_full, n_linear)
    group = large if large < small * 1.5 else small
    return HybridLayout(
        page_bytes=page,
        layers=group,
        groups=_ceil_div(n_full, group) + _ceil_div(n_linear, group),
        windows=(None,) * n_full,
        block_size=block,
        full_groups=_ceil_div(n_full, group),
        linear_groups=_ceil_div(n_linear, group),
        linear_layers=n_linear,
        state_bytes=state,
        max_model_len=max_model_len,
        state_blocks=STATE_BLOCKS["none"] + speculative_tokens,
    )


def kv_bytes_per_token(arch: Architecture, kv_heads_per_rank: int, dtype_bytes: int) -> int:
    """KV bytes per token on one rank: the full-attention layers only (linear layers keep a fixed state)."""
    n_full = sum(1 for linear in arch.linear_attention_layers() if not linear)
    return 2 * n_full * kv_heads_per_rank * arch.head_size * dtype_bytes
