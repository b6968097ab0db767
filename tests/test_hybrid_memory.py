"""Hybrid linear-attention models' KV cache and recurrent state, laid out as the image line's vLLM 0.23 does
(components/planning/hybrid.py), checked against the pool sizes the fork publishes for a fixed pool.

The figures: ai-infos/vllm-gfx906-mobydick docs/gfx906/README.md at a2df265ba8b5ffb407aadf6d71ea83767bb38158,
"Long-context prefill sweep (TP=2, 2x MI50)": Qwen3.8-27B-AWQ-INT4 at tensor parallel 2, float16,
--max-model-len 262144, prefix caching off, no speculative decoding, a 10 GiB pool (--kv-cache-memory-bytes
10737418240): a 323,414-token pool, and 262144 tokens need at least 8.09 GiB. A fixed pool checks the layout
(tokens and requests from bytes), not the pool's size from gpu_memory_utilization, which the plan leaves
unchecked for these models (its warning says so).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from components.planning import hybrid
from components.planning.catalog import Architecture
from components.planning.memory import GiB, capacity_from_available, draft_layer_bytes, kv_layout
from components.tools.plan import render_capacities
from tests.stacks import load, plan_values, set_key, values_of
from tests.test_image_line import _on_mobydick

# The 27B Qwen3.5-class topology (Qwen3.5/3.6/3.8-27B share it): docs/gfx906/README.md at a2df265b, "Test models":
# 64 layers, 48 Gated DeltaNet and 16 full attention, 24 query heads, 4 KV heads of 256; the linear attention's
# 16 key and 48 value heads of 128, its conv kernel 4 and float32 state as public copies of the model's
# config.json give them (no repository holding the model's own config.json was readable here). Reproducing the
# two published figures below exactly is what vouches for them.
QWEN_27B: dict[str, Any] = {
    "architectures": ["Qwen3_5ForConditionalGeneration"],
    "model_type": "qwen3_5",
    "text_config": {
        "hidden_size": 5120,
        "intermediate_size": 17408,
        "num_hidden_layers": 64,
        "num_attention_heads": 24,
        "num_key_value_heads": 4,
        "head_dim": 256,
        "vocab_size": 248320,
        "max_position_embeddings": 262144,
        "full_attention_interval": 4,
        "layer_types": (["linear_attention"] * 3 + ["full_attention"]) * 16,
        "linear_num_key_heads": 16,
        "linear_num_value_heads": 48,
        "linear_key_head_dim": 128,
        "linear_value_head_dim": 128,
        "linear_conv_kernel_dim": 4,
        "mamba_ssm_dtype": "float32",
        "attn_output_gate": True,
        "mtp_num_hidden_layers": 1,
        "tie_word_embeddings": False,
    },
    "quantization_config": {"quant_method": "awq", "bits": 4, "group_size": 128, "zero_point": True},
}


def _layout(arch: dict[str, Any], tp: int, max_len: int) -> hybrid.HybridLayout:
    layout = kv_layout(Architecture.model_validate(arch), tp, 2, 16, max_len)
    assert isinstance(layout, hybrid.HybridLayout)
    return layout


def test_the_published_10_gib_pool_holds_the_published_tokens() -> None:
    layout = _layout(QWEN_27B, 2, 262144)
    # a GDN layer's state on one of two GPUs: conv 5120 x 3 fp16 + temporal 24 x 128 x 128 fp32
    assert layout.state_bytes == 5120 * 3 * 2 + 24 * 128 * 128 * 4 == 1_603_584
    # the attention block grows to 784 tokens (16 x 49) so that its page (784 x 2 KiB) holds one state
    assert (layout.block_size, layout.page_bytes) == (784, 1_605_632)
    # 16 full + 48 linear layers: groups of 16, one of full attention, three of linear
    assert (layout.layers, layout.full_groups, layout.linear_groups) == (16, 1, 3)
    pool = 10 * GiB
    assert layout.tokens(pool, 16) == 323_414  # the published "KV pool"
    # a 262144-token request holds 335 KV blocks and 3 state blocks; the pool has 417
    assert layout.request_blocks(262144) == 338 and layout.num_blocks(pool) == 417


def test_the_published_minimum_pool_for_262144_tokens() -> None:
    needed = _layout(QWEN_27B, 2, 262144).needed_bytes(262144, 0, 16)
    assert round(needed / GiB, 2) == 8.09  # "256k max-len needs >= 8.09 GiB"


def test_state_is_per_sequence_and_independent_of_context_kv_is_per_token() -> None:
    short, long = _layout(QWEN_27B, 2, 4096), _layout(QWEN_27B, 2, 131072)
    assert short.state_gib_per_sequence() == long.state_gib_per_sequence() == pytest.approx(48 * 1_605_632 / GiB)
    # one GPU of two holds half the state and, per token, the K and V of the 16 full-attention layers only
    one = _layout(QWEN_27B, 1, 4096)
    assert one.state_bytes == 10240 * 3 * 2 + 48 * 128 * 128 * 4
    arch = Architecture.model_validate(QWEN_27B)
    assert hybrid.kv_bytes_per_token(arch, 2, 2) == 2 * 16 * 2 * 256 * 2
    # more requests fit at a shorter context: blocks of a request shrink with max_model_len, the state does not
    assert short.max_concurrency(10 * GiB, 4096, 0, 16) > 10 * long.max_concurrency(10 * GiB, 131072, 0, 16)


def test_the_plan_shows_the_state_the_layout_and_that_the_pool_size_is_unchecked(tmp_path: Path) -> None:
    values = set_key(_on_mobydick(values_of("big-chat")), "vllm.architecture", QWEN_27B)
    values = set_key(values, "vllm.model", "QuantTrio/Qwen3.5-27B-AWQ")
    loaded = load(values)
    assert any(
        "Gated DeltaNet (linear attention) layers, whose pool size from gpu_memory_utilization is unchecked" in w
        and "vLLM 0.23's hybrid layout" in w
        for w in loaded.warnings
    ), loaded.warnings
    whole = plan_values(values, tmp_path)
    planned = whole.capacity_of("vllm")
    assert planned is not None and (planned.linear_layers, planned.hybrid_block_size, planned.kv_groups) == (48, 784, 4)
    # the plan's text: per GPU the weights, the KV cache and its tokens, the state per sequence, the requests held
    kv_line = next(line for line in render_capacities(whole) if line.lstrip().startswith("KV cache:"))
    assert "32 KiB per token per GPU, and 0.072 GiB of recurrent state per sequence per GPU" in kv_line, kv_line
    assert "requests of max_model_len 32,768 at once; fit not judged" in kv_line, kv_line
    s = loaded.settings.servers["vllm"]
    arch = Architecture.model_validate(QWEN_27B)
    from components.planning.memory import MemoryInputs

    capacity = capacity_from_available(
        MemoryInputs(arch, 31.984375, 0.9, s.tensor_parallel_size, s.max_model_len, 2048, 256), 10 * GiB
    )
    assert (capacity.linear_layers, capacity.hybrid_block_size) == (48, 784)
    assert capacity.kv_bytes_per_token_per_gpu == 32768
    assert capacity.state_gib_per_sequence_per_gpu == pytest.approx(48 * 1_605_632 / GiB)
    assert "48 Gated DeltaNet layers" in capacity.modelled and "784-token blocks" in capacity.modelled


def test_a_dense_model_keeps_its_layout() -> None:
    arch = Architecture.model_validate({**QWEN_27B["text_config"], "layer_types": None, "linear_num_value_heads": None})
    assert not arch.is_linear_hybrid and not isinstance(kv_layout(arch, 2, 2, 16, 4096), hybrid.HybridLayout)


def _published_k3(speculative_tokens: int, draft_layers: int) -> tuple[hybrid.HybridLayout, float]:
    """docs/gfx906/README.md at a2df265b, "post-0.30.0 re-measure": Qwen3.8-27B-AWQ-INT4 at TP 2, MTP k=3,
    prefix caching off, --max-model-len 131072, util 0.82, max-seqs 4: a "KV pool 365,661 tok". Its pool's bytes
    are not published; the pool is a whole number of blocks, so concurrency x a request's blocks must be one."""
    arch = Architecture.model_validate(QWEN_27B)
    layout = kv_layout(arch, 2, 2, 16, 131072, speculative_tokens, draft_layers)
    assert isinstance(layout, hybrid.HybridLayout)
    return layout, 365_661 / 131072 * layout.request_blocks(131072)


def test_mtp_k3_widens_the_state_and_holds_k_plus_one_state_blocks_as_the_published_pool_shows() -> None:
    layout, blocks = _published_k3(3, 1)
    # the conv state gains 3 columns: 5120 x 6 fp16 + the temporal state, so the block grows to 800 tokens
    assert layout.state_bytes == 5120 * 6 * 2 + 24 * 128 * 128 * 4 and layout.block_size == 800
    # 17 full-attention layers (16 and the MTP layer) and 48 linear: groups of 17, one full and three linear
    assert (layout.layers, layout.full_groups, layout.linear_groups) == (17, 1, 3)
    # a request: 164 KV blocks and 3 x (1 + 3) state blocks; the published pool is then 491 whole blocks
    assert layout.request_blocks(131072) == 176 and abs(blocks - 491) < 0.01
    assert layout.tokens(491 * layout.page_bytes * layout.layers, 16) == 365_661
    # without the speculative state blocks, or without the wider conv state, no whole number of blocks gives it
    for k_blocks, k_conv in ((0, 3), (3, 0)):
        other = kv_layout(Architecture.model_validate(QWEN_27B), 2, 2, 16, 131072, k_conv, 1)
        assert isinstance(other, hybrid.HybridLayout)
        other = hybrid.HybridLayout(**{**other.__dict__, "state_blocks": 1 + k_blocks})
        ratio = 365_661 / 131072 * other.request_blocks(131072)
        assert abs(ratio - round(ratio)) > 0.05, (k_blocks, k_conv, ratio)


def test_the_plan_counts_the_draft_layers_weights_and_the_speculative_state(tmp_path: Path) -> None:
    values = set_key(_on_mobydick(values_of("big-chat")), "vllm.architecture", QWEN_27B)
    plain = plan_values(values, tmp_path / "plain").capacity_of("vllm")
    mtp = set_key(values, "vllm.speculative", {"method": "mtp", "num_speculative_tokens": 3})
    drafted = plan_values(mtp, tmp_path / "mtp").capacity_of("vllm")
    ngram = set_key(values, "vllm.speculative", {"method": "ngram", "num_speculative_tokens": 3})
    looked_up = plan_values(ngram, tmp_path / "ngram").capacity_of("vllm")
    assert plain is not None and drafted is not None and looked_up is not None
    arch = Architecture.model_validate(QWEN_27B)
    assert drafted.weights_gib_per_gpu - plain.weights_gib_per_gpu == pytest.approx(draft_layer_bytes(arch, 2, 2) / GiB)
    # one draft layer: a full-attention decoder layer and its 2h -> h fc, AWQ 4-bit: tens of MiB per GPU
    assert 50 < draft_layer_bytes(arch, 2, 2) / (1 << 20) < 400
    # ngram runs no draft layer but holds the same speculative state
    assert looked_up.weights_gib_per_gpu == plain.weights_gib_per_gpu
    assert (plain.hybrid_block_size, drafted.hybrid_block_size, looked_up.hybrid_block_size) == (784, 800, 800)
    assert drafted.state_gib_per_sequence_per_gpu == pytest.approx(48 * 4 * 800 * 2048 / GiB)
