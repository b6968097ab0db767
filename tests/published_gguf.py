"""A published GGUF's facts block derived from its model's config.json and llama-quantize's type rules, for test
stacks whose model file cannot be read here: Qwen3-30B-A3B in Q4_K_M (unsloth/Qwen3-30B-A3B-GGUF,
Qwen3-30B-A3B-Q4_K_M.gguf, published as about 18.6 GB).

The shapes are those the qwen3moe loader creates (src/models/qwen3moe.cpp:17-54 at the llama.cpp commit
components/planning/llamacpp_memory.py cites) from tests/data/configs/Qwen--Qwen3-30B-A3B.json. The types are
llama-quantize's for LLAMA_FTYPE_MOSTLY_Q4_K_M on a model that is not Falcon and has more than 8 experts
(src/llama-quant.cpp llama_tensor_get_type): Q4_K by default; Q6_K for output.weight, and for attn_v and ffn_down
(the experts' too, counted per layer) in the layers use_more_bits picks; the 1-D norms and ffn_gate_inp stay F32.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from components.planning.gguf import GgufFacts, Tensor

CONFIG = Path(__file__).parent / "data" / "configs" / "Qwen--Qwen3-30B-A3B.json"
FILE = "Qwen3-30B-A3B-Q4_K_M.gguf"
LLAMA_FTYPE_MOSTLY_Q4_K_M = 15  # include/llama.h llama_ftype


def use_more_bits(i_layer: int, n_layer: int) -> bool:
    """llama-quant.cpp use_more_bits: the first and last eighth, and every third layer between."""
    return i_layer < n_layer // 8 or i_layer >= 7 * n_layer // 8 or (i_layer - n_layer // 8) % 3 == 2


def qwen3_30b_a3b_q4_k_m() -> GgufFacts:
    c = json.loads(CONFIG.read_text())
    n_embd, n_layer, vocab = c["hidden_size"], c["num_hidden_layers"], c["vocab_size"]
    head, n_head, n_kv = c["head_dim"], c["num_attention_heads"], c["num_key_value_heads"]
    n_exp, n_ff_exp = c["num_experts"], c["moe_intermediate_size"]
    metadata: dict[str, Any] = {
        "general.architecture": "qwen3moe",
        "general.file_type": LLAMA_FTYPE_MOSTLY_Q4_K_M,
        "general.alignment": 32,
        "qwen3moe.block_count": n_layer,
        "qwen3moe.context_length": c["max_position_embeddings"],
        "qwen3moe.embedding_length": n_embd,
        "qwen3moe.feed_forward_length": c["intermediate_size"],
        "qwen3moe.expert_feed_forward_length": n_ff_exp,
        "qwen3moe.expert_count": n_exp,
        "qwen3moe.expert_used_count": c["num_experts_per_tok"],
        "qwen3moe.attention.head_count": n_head,
        "qwen3moe.attention.head_count_kv": n_kv,
        "qwen3moe.attention.key_length": head,
        "qwen3moe.attention.value_length": head,
    }
    tensors = [Tensor("token_embd.weight", "Q4_K", (n_embd, vocab))]
    for il in range(n_layer):
        more = "Q6_K" if use_more_bits(il, n_layer) else "Q4_K"
        for suffix, typ, shape in (
            ("attn_norm.weight", "F32", (n_embd,)),
            ("attn_q.weight", "Q4_K", (n_embd, head * n_head)),
            ("attn_k.weight", "Q4_K", (n_embd, head * n_kv)),
            ("attn_v.weight", more, (n_embd, head * n_kv)),
            ("attn_output.weight", "Q4_K", (head * n_head, n_embd)),
            ("attn_q_norm.weight", "F32", (head,)),
            ("attn_k_norm.weight", "F32", (head,)),
            ("ffn_norm.weight", "F32", (n_embd,)),
            ("ffn_gate_inp.weight", "F32", (n_embd, n_exp)),
            ("ffn_gate_exps.weight", "Q4_K", (n_embd, n_ff_exp, n_exp)),
            ("ffn_up_exps.weight", "Q4_K", (n_embd, n_ff_exp, n_exp)),
            ("ffn_down_exps.weight", more, (n_ff_exp, n_embd, n_exp)),
        ):
            tensors.append(Tensor(f"blk.{il}.{suffix}", typ, shape))
    tensors += [Tensor("output_norm.weight", "F32", (n_embd,)), Tensor("output.weight", "Q6_K", (n_embd, vocab))]
    packed = 0
    placed = []
    for t in tensors:
        placed.append(Tensor(t.name, t.type, t.shape, 0, packed))
        packed = -(-(packed + placed[-1].nbytes) // 32) * 32
    return GgufFacts((FILE,), metadata, tuple(placed), 32)
