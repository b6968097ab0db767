"""Tiny synthetic GGUF models, written with the `gguf` package, that the real llama-server loads: a few layers of
small dimensions in the shapes the llama.cpp memory plan must get right (GQA, sliding window, MoE, tied output).

The weights are zeros (the tests read allocations, not answers). The tokenizer is a minimal SentencePiece-style
vocabulary (`llama`): <unk>, <s>, </s>, the 256 byte tokens, and filler tokens up to the vocabulary size. The
tensor names and shapes are those the architectures' loaders create (vendor/llama.cpp src/models/llama.cpp,
gemma3.cpp:37-69, qwen3moe.cpp:17-54); `gguf`'s numpy shapes are the reverse of ggml's ne.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import gguf
import numpy as np


@dataclass(frozen=True)
class Shape:
    arch: str = "llama"
    n_layer: int = 4
    n_embd: int = 256
    n_head: int = 4
    n_head_kv: int = 2
    head_dim: int = 64
    n_ff: int = 512
    n_vocab: int = 512
    n_ctx_train: int = 4096
    n_expert: int = 0
    n_expert_used: int = 0
    n_ff_exp: int = 128
    n_swa: int = 0
    tied: bool = False  # no output.weight: llama.cpp duplicates token_embd for the output layer
    weights: str = "F16"  # the matrices' type (F16, Q8_0)
    description: int = 0  # a general.description of this many characters, to make the header long
    ssm_state: int = 0  # Mamba2 (arch "mamba2"): the state size; inner size 2 x n_embd, conv kernel 4, one group


def _name(kind: gguf.MODEL_TENSOR, layer: int | None = None) -> str:
    name = gguf.TENSOR_NAMES[kind]
    return (name.format(bid=layer) if layer is not None else name) + ".weight"


def _matrix(ne0: int, ne1: int, typ: str, ne2: int = 0) -> tuple[np.ndarray, gguf.GGMLQuantizationType | None]:
    shape = (ne2, ne1, ne0) if ne2 else (ne1, ne0)
    if typ == "F16":
        return np.zeros(shape, dtype=np.float16), None
    if typ == "F32":
        return np.zeros(shape, dtype=np.float32), None
    qtype = gguf.GGMLQuantizationType[typ]
    return gguf.quants.quantize(np.zeros(shape, dtype=np.float32), qtype), qtype


def write_model(path: Path, s: Shape, split_max_tensors: int = 0) -> list[Path]:
    """Write the model (split into files of at most `split_max_tensors` tensors when given); its files."""
    T = gguf.MODEL_TENSOR
    w = gguf.GGUFWriter(path, s.arch, split_max_tensors=split_max_tensors)
    w.add_name(f"synthetic-{s.arch}")
    if s.description:
        w.add_description("x" * s.description)
    w.add_block_count(s.n_layer)
    w.add_context_length(s.n_ctx_train)
    w.add_embedding_length(s.n_embd)
    if s.arch == "mamba2":  # src/models/mamba2.cpp:4-10
        w.add_ssm_conv_kernel(4)
        w.add_ssm_inner_size(2 * s.n_embd)
        w.add_ssm_state_size(s.ssm_state)
        w.add_ssm_time_step_rank(2 * s.n_embd // s.head_dim)
        w.add_ssm_group_count(1)
    else:
        w.add_feed_forward_length(s.n_ff)
        w.add_head_count(s.n_head)
        w.add_head_count_kv(s.n_head_kv)
        w.add_key_length(s.head_dim)
        w.add_value_length(s.head_dim)
        w.add_rope_dimension_count(s.head_dim)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16 if s.weights == "F16" else gguf.LlamaFileType.MOSTLY_Q8_0)
    if s.n_expert:
        w.add_expert_count(s.n_expert)
        w.add_expert_used_count(s.n_expert_used)
        w.add_expert_feed_forward_length(s.n_ff_exp)
    if s.n_swa:
        w.add_sliding_window(s.n_swa)
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    tokens += [f"t{i}" for i in range(s.n_vocab - len(tokens))]
    types = [2, 3, 3] + [6] * 256 + [1] * (s.n_vocab - 259)
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores([0.0] * s.n_vocab)
    w.add_token_types(types)
    w.add_unk_token_id(0)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)

    def add(name: str, ne0: int, ne1: int = 0, ne2: int = 0, typ: str | None = None) -> None:
        if not ne1:
            w.add_tensor(name, np.zeros((ne0,), dtype=np.float32))
            return
        data, raw = _matrix(ne0, ne1, typ or s.weights, ne2)
        w.add_tensor(name, data, raw_dtype=raw)

    q, kv = s.n_head * s.head_dim, s.n_head_kv * s.head_dim
    add(_name(T.TOKEN_EMBD), s.n_embd, s.n_vocab)
    for i in range(s.n_layer if s.arch == "mamba2" else 0):  # src/models/mamba2.cpp:36-85
        inner, heads = 2 * s.n_embd, 2 * s.n_embd // s.head_dim
        conv = inner + 2 * s.ssm_state
        add(_name(T.ATTN_NORM, i), s.n_embd)
        add(_name(T.SSM_IN, i), s.n_embd, inner + conv + heads)
        add(_name(T.SSM_CONV1D, i), 4, conv, typ="F32")
        add(gguf.TENSOR_NAMES[T.SSM_CONV1D].format(bid=i) + ".bias", conv)
        add(gguf.TENSOR_NAMES[T.SSM_DT].format(bid=i) + ".bias", heads)
        add(gguf.TENSOR_NAMES[T.SSM_A].format(bid=i), 1, heads, typ="F32")
        add(gguf.TENSOR_NAMES[T.SSM_D].format(bid=i), 1, heads, typ="F32")
        add(_name(T.SSM_NORM, i), inner, 1, typ="F32")
        add(_name(T.SSM_OUT, i), inner, s.n_embd)
    for i in range(0 if s.arch == "mamba2" else s.n_layer):
        add(_name(T.ATTN_NORM, i), s.n_embd)
        add(_name(T.ATTN_Q, i), s.n_embd, q)
        add(_name(T.ATTN_K, i), s.n_embd, kv)
        add(_name(T.ATTN_V, i), s.n_embd, kv)
        add(_name(T.ATTN_OUT, i), q, s.n_embd)
        if s.arch in ("gemma3", "qwen3moe"):
            add(_name(T.ATTN_Q_NORM, i), s.head_dim)
            add(_name(T.ATTN_K_NORM, i), s.head_dim)
        if s.arch == "gemma3":
            add(_name(T.ATTN_POST_NORM, i), s.n_embd)
        add(_name(T.FFN_NORM, i), s.n_embd)
        if s.n_expert:
            add(_name(T.FFN_GATE_INP, i), s.n_embd, s.n_expert, typ="F32")
            add(_name(T.FFN_GATE_EXP, i), s.n_embd, s.n_ff_exp, s.n_expert)
            add(_name(T.FFN_UP_EXP, i), s.n_embd, s.n_ff_exp, s.n_expert)
            add(_name(T.FFN_DOWN_EXP, i), s.n_ff_exp, s.n_embd, s.n_expert)
        else:
            add(_name(T.FFN_GATE, i), s.n_embd, s.n_ff)
            add(_name(T.FFN_UP, i), s.n_embd, s.n_ff)
            add(_name(T.FFN_DOWN, i), s.n_ff, s.n_embd)
        if s.arch == "gemma3":
            add(_name(T.FFN_POST_NORM, i), s.n_embd)
    add(_name(T.OUTPUT_NORM), s.n_embd)
    if not s.tied:
        add(_name(T.OUTPUT), s.n_embd, s.n_vocab)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    if split_max_tensors:
        return sorted(path.parent.glob(path.stem + "-*-of-*.gguf"))
    return [path]
