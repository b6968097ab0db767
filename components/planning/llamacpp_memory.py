"""The memory llama.cpp's llama-server allocates, per device and on the host, from a GGUF model's facts and the
server's sizing arguments: the model buffer (each tensor where the layer split and the overrides put it), the KV
buffer (per layer, the sliding-window layers' own cache), and the compute buffer (fitted on the real server).

Every rule cites llama.cpp at ggml-org/llama.cpp@0c1e57098bba43ac29e6e3b677cdceebdd22334f, the source vendored in
llama-cpp-python 0.3.36 (tests/engine/llama-cpp-requirements.txt), by file:line under its src/ or common/.
Pure: no Pulumi, no network, no files.

Checked on the CPU backend with rpc-servers as devices (tests/test_llamacpp_memory.py, bench/llamacpp_memory.py):
model and KV buffers to the log's rounding, compute buffers within 15% but where some layers' experts are kept on
the host and others not (up to 38%). Not checkable there, so not modelled: a GPU backend that runs a host-resident weight's operation
itself for large batches (ROCm and CUDA do from 32 tokens, op_offload; RPC does not) also holds a copy of that
weight in its compute buffer; and the host buffer a GPU backend gives for weights kept on the host with
--load-mode none (ROCm_Host rather than CPU).
"""

from __future__ import annotations

import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from components.planning.gguf import GgufFacts, Tensor, pad, row_bytes

MiB = 1 << 20

# Tensors of the input layer, always on the CPU (llama-model.cpp:1603-1605; llama-arch.cpp:728-730, 921).
INPUT_TENSORS = re.compile(r"^(token_embd|position_embd|token_types|per_layer_token_embd)\.")
# --n-cpu-moe N keeps blk.0..N-1's expert tensors on the host, --cpu-moe all of them (common/arg.cpp:2760-2777,
# common/common.h:1198).
EXPERTS = r"\.ffn_(up|down|gate|gate_up)_(ch|)exps"
# Buffers align each tensor (ggml-backend.cpp ggml_backend_alloc_ctx_tensors_from_buft); the CPU's is 32 bytes
# (ggml-cpu TENSOR_ALIGNMENT) and an RPC device reports its backend's.
TENSOR_ALIGNMENT = 32

# The layers with a sliding window when the GGUF has no sliding_window_pattern: (n, dense_first) as each
# architecture's loader sets it (src/models/*.cpp load_swa_pattern; llama-hparams.cpp:8-20).
SWA_PATTERN: dict[str, tuple[int, bool]] = {
    "gemma2": (2, False),  # models/gemma2.cpp:6
    "gemma3": (6, False),  # models/gemma3.cpp:7
    "gemma3n": (5, False),  # models/gemma3n.cpp:5
    "cohere2": (4, False),  # models/cohere2.cpp:5
    "gpt-oss": (2, False),  # models/openai-moe.cpp:9
    "llama4": (4, False),  # models/llama4.cpp:19
    "exaone4": (4, False),  # models/exaone4.cpp:7
    "olmo2": (4, False),  # models/olmo2.cpp:9
    "smallthinker": (4, True),  # models/smallthinker.cpp:9
}


class LlamaCppPlanError(Exception):
    """What llama.cpp would refuse, or what this plan cannot model; one line."""


@dataclass(frozen=True)
class LlamaCppArgs:
    """The sizing arguments of llama-server, each as the command line sets it."""

    n_ctx: int  # -c
    n_parallel: int = 1  # -np
    kv_unified: bool = False  # -kvu / -no-kvu
    n_gpu_layers: int = -1  # -ngl; -1: all
    devices: tuple[str, ...] = ()  # the GPUs, in llama.cpp's order
    tensor_split: tuple[float, ...] = ()  # -ts; empty: by the devices' memory (equal for equal GPUs)
    device_memory: tuple[int, ...] = ()  # bytes per device: the split when -ts is not given (llama-model.cpp:1559-1574)
    split_mode: str = "layer"  # -sm layer | none
    main_gpu: int = 0  # -mg, with -sm none
    cache_type_k: str = "F16"  # -ctk
    cache_type_v: str = "F16"  # -ctv
    flash_attn: bool = True  # -fa on | off
    n_batch: int = 2048  # -b
    n_ubatch: int = 512  # -ub
    cpu_overrides: tuple[str, ...] = ()  # -ot PATTERN=CPU, the patterns
    n_cpu_moe: int = 0  # --n-cpu-moe
    swa_full: bool = False  # --swa-full
    mmap: bool = True  # --load-mode mmap | none (common/arg.cpp:2690-2705)
    cache_ram_mib: int = 8192  # --cache-ram (common/common.h:634)
    offload_kqv: bool = True  # -nkvo turns it off


@dataclass(frozen=True)
class Buffers:
    """One device's (or the host's) allocations, in bytes."""

    name: str
    model: int = 0
    kv: int = 0
    compute: int = 0

    @property
    def total(self) -> int:
        return self.model + self.kv + self.compute


@dataclass(frozen=True)
class LlamaCppMemory:
    devices: tuple[Buffers, ...]
    host: Buffers  # model: the CPU's weights (mapped with mmap), kv: layers kept on the CPU, compute: the CPU's
    # The prompt cache's ceiling on the host (--cache-ram, MiB; 0 turns it off, -1 is no limit: None here;
    # tools/server/server-context.cpp:1332-1340): slots' KV states kept in host memory for reuse.
    host_cache_ram: int | None
    n_ctx: int
    n_ctx_seq: int
    n_stream: int
    kv_cells: int
    swa_cells: int
    layer_device: tuple[int, ...] = field(repr=False)  # per layer (and the output layer last): device index, -1 CPU
    # Without pipelining: when a pipelined compute buffer cannot be allocated, llama.cpp retries with one copy of the
    # inputs (llama-context.cpp:674-683). The same as `devices` when nothing is pipelined.
    unpipelined_compute: tuple[int, ...] = ()

    @property
    def host_total(self) -> int | None:
        """What the server may hold in host memory: the CPU's weights (mapped: the page cache holds what is read),
        KV and compute buffers, and the prompt cache at its ceiling; None when that cache has no limit."""
        if self.host_cache_ram is None:
            return None
        return self.host.total + self.host_cache_ram

    def over(self, memory: Sequence[int]) -> list[int]:
        """The indices of the devices whose buffers exceed their memory (bytes, one per device), after llama.cpp's
        retry without pipelining."""
        over = [i for i, (b, m) in enumerate(zip(self.devices, memory, strict=True)) if b.total > m]
        if not over or not self.unpipelined_compute:
            return over
        return [
            i
            for i, (b, c, m) in enumerate(zip(self.devices, self.unpipelined_compute, memory, strict=True))
            if b.model + b.kv + c > m
        ]


def server_arguments(args: LlamaCppArgs, model: str, rpc: Sequence[str] = ()) -> list[str]:
    """llama-server's arguments for `args`, every sizing argument explicit: recent builds pick the slots, flash
    attention, the unified KV cache and even the offload themselves when these are unset (--fit, common/arg.cpp:
    2868; -np -1, -fa auto, -kvu with automatic slots), so what is planned is what runs. `rpc`: rpc-servers as the
    devices (the tests' stand-ins for GPUs)."""
    cmd = ["-m", model, "-c", str(args.n_ctx), "-np", str(args.n_parallel), "--fit", "off"]
    cmd += ["-kvu" if args.kv_unified else "-no-kvu", "-fa", "on" if args.flash_attn else "off"]
    cmd += ["-b", str(args.n_batch), "-ub", str(args.n_ubatch)]
    cmd += ["-ctk", args.cache_type_k.lower(), "-ctv", args.cache_type_v.lower()]
    cmd += ["--cache-ram", str(args.cache_ram_mib), "-lm", "mmap" if args.mmap else "none"]
    cmd += ["-ngl", str(args.n_gpu_layers) if args.n_gpu_layers >= 0 else "all"]
    if rpc:
        cmd += ["--rpc", ",".join(rpc)]
    if args.devices:
        split = args.tensor_split or tuple(m / MiB for m in args.device_memory) or (1.0,) * len(args.devices)
        cmd += ["-sm", args.split_mode, "-mg", str(args.main_gpu), "-ts", ",".join(f"{x:g}" for x in split)]
    if not args.offload_kqv:
        cmd += ["-nkvo"]
    for pattern in args.cpu_overrides:
        cmd += ["-ot", f"{pattern}=CPU"]
    if args.n_cpu_moe:
        cmd += ["--n-cpu-moe", str(args.n_cpu_moe)]
    if args.swa_full:
        cmd += ["--swa-full"]
    return cmd


def _f32(x: float) -> float:
    return float(struct.unpack("f", struct.pack("f", x))[0])


def layer_devices(n_layer: int, args: LlamaCppArgs) -> list[int]:
    """The device of each repeating layer and, last, of the output layer (-1: the CPU), as
    llama-model.cpp:1555-1614 computes them: the tensor split's running sums normalized, the last -ngl layers
    (the output layer counting as one) offloaded, layer il to the first device whose split point exceeds
    (il - i_gpu_start) / act_gpu_layers, in float."""
    devices = list(args.devices)
    if args.split_mode == "none" and devices:
        devices = [devices[args.main_gpu]]  # llama.cpp:289-299
    n = len(devices)
    if n == 0:
        return [-1] * (n_layer + 1)
    if args.split_mode == "none":
        splits = [1.0]
    else:
        given = list(args.tensor_split) or list(args.device_memory) or [1.0] * n
        if len(given) != n:
            raise LlamaCppPlanError(f"the tensor split has {len(given)} entries for {n} devices")
        total, running = 0.0, []
        for x in given:
            total = _f32(total + _f32(x))
            running.append(total)
        splits = [_f32(r / total) for r in running]
    n_gpu = args.n_gpu_layers if args.n_gpu_layers >= 0 else n_layer + 1  # llama-model.cpp:2002-2005
    i_gpu_start = max(n_layer + 1 - n_gpu, 0)  # llama-model.cpp:1589
    act = min(n_gpu, n_layer + 1)
    out = []
    for il in range(n_layer + 1):
        if il < i_gpu_start or il - i_gpu_start >= act:
            out.append(-1)
            continue
        x = _f32(_f32(il - i_gpu_start) / act)
        index = next((i for i, s in enumerate(splits) if s > x), n - 1)  # std::upper_bound
        out.append(args.main_gpu if args.split_mode == "none" else index)
    return out


def swa_layers(facts: GgufFacts) -> list[bool]:
    """Which layers use the sliding window (llama-model.cpp:3434-3441, llama-hparams.cpp:8-20)."""
    n_layer = facts.n_layer
    if not facts.get("attention.sliding_window"):
        return [False] * n_layer
    pattern = facts.get("attention.sliding_window_pattern")
    if isinstance(pattern, list):
        return [bool(p) for p in pattern[:n_layer]]
    n, dense_first = SWA_PATTERN.get(facts.arch, (0, False))
    if isinstance(pattern, int):
        n = pattern
    elif facts.arch not in SWA_PATTERN:
        raise LlamaCppPlanError(f"{facts.arch} has a sliding window but no pattern this plan knows")
    if dense_first:
        return [n == 0 or il % n != 0 for il in range(n_layer)]
    return [n == 0 or il % n < n - 1 for il in range(n_layer)]


# Architectures whose every layer is recurrent (llama-arch.cpp:1071-1083, llama-model.cpp:1384), and those whose
# recurrent layers are the ones without KV heads (src/models/jamba.cpp:12, granite-hybrid.cpp:24, plamo2.cpp:19,
# lfm2.cpp:12) or all but every full_attention_interval-th (qwen3next.cpp:17-21, qwen35.cpp, qwen35moe.cpp,
# minimax-01.cpp), unless attention.recurrent_layers lists them.
RECURRENT = {"mamba", "mamba2", "falcon-h1"}
RECURRENT_WITHOUT_KV_HEADS = {"jamba", "granitehybrid", "plamo2", "bailingmoe3", "kimi-linear"}
RECURRENT_BY_INTERVAL = {"qwen3next", "qwen35", "qwen35moe", "minimax-01"}


def recurrent_layers(facts: GgufFacts) -> list[bool]:
    n_layer = facts.n_layer
    listed = facts.get("attention.recurrent_layers")
    if isinstance(listed, list):
        return [bool(x) for x in listed[:n_layer]]
    if facts.arch in RECURRENT:
        return [True] * n_layer
    if facts.arch in RECURRENT_WITHOUT_KV_HEADS:
        return [h == 0 for h in facts.per_layer("attention.head_count_kv")]
    if facts.arch in RECURRENT_BY_INTERVAL:
        interval = int(facts.get("full_attention_interval", 4) or 4)
        return [(il + 1) % interval != 0 for il in range(n_layer)]
    return [False] * n_layer


def state_bytes_per_sequence(facts: GgufFacts) -> tuple[int, int]:
    """One sequence's recurrent state in one layer, (R, S) in bytes at f32: Mamba's convolution and SSM states
    (llama-hparams.cpp:208-258: (d_conv - 1) x (d_inner + 2 x n_group x d_state), and d_state x d_inner)."""
    if not any(recurrent_layers(facts)):
        return 0, 0
    d_conv = int(facts.get("ssm.conv_kernel", 0) or 0)
    d_inner = int(facts.get("ssm.inner_size", 0) or 0)
    d_state = int(facts.get("ssm.state_size", 0) or 0)
    n_group = int(facts.get("ssm.group_count", 0) or 0)
    if not (d_conv and d_inner and d_state):
        raise LlamaCppPlanError(f"{facts.arch}'s recurrent state is not planned here (Mamba-style SSM layers are)")
    return 4 * (d_conv - 1) * (d_inner + 2 * n_group * d_state), 4 * d_state * d_inner


def _overrides(args: LlamaCppArgs) -> list[re.Pattern[str]]:
    patterns = [re.compile(p) for p in args.cpu_overrides]
    # llm_add_n_cpu_ffn_overrides: one pattern per layer below N (common/common.cpp)
    patterns += [re.compile(rf"blk\.{i}{EXPERTS}") for i in range(args.n_cpu_moe)]
    return patterns


def tensor_places(facts: GgufFacts, args: LlamaCppArgs) -> list[tuple[Tensor, int]]:
    """Every tensor llama.cpp loads with its device (-1 the CPU). A model without output.weight loads
    token_embd a second time as the output (TENSOR_DUPLICATED, llama-model-loader.cpp:1160-1166)."""
    places = layer_devices(facts.n_layer, args)
    overrides = _overrides(args)
    out: list[tuple[Tensor, int]] = []
    for t in facts.tensors:
        if INPUT_TENSORS.match(t.name):
            device = -1
        elif t.layer is not None:
            device = places[t.layer] if t.layer < facts.n_layer else places[-1]
        else:
            device = places[-1]
        if any(p.search(t.name) for p in overrides):  # llama-model-loader.cpp:1233-1256
            device = -1
        out.append((t, device))
    if "output.weight" not in facts.by_name and "token_embd.weight" in facts.by_name:
        out.append((facts.by_name["token_embd.weight"], places[-1]))
    return out


def _mapped(facts: GgufFacts, cpu: list[Tensor]) -> int:
    """The CPU_Mapped buffers: per file, from the first to the end of the last CPU tensor in it
    (llama-model.cpp:1852-1869, llama_model_loader::get_mapping_range)."""
    total = 0
    for f in range(len(facts.files)):
        spans = [(t.offset, t.offset + t.nbytes) for t in cpu if t.file == f]
        if spans:
            total += max(e for _, e in spans) - min(s for s, _ in spans)
    return total


def kv_cells(facts: GgufFacts, args: LlamaCppArgs) -> tuple[int, int, int, int]:
    """(n_ctx, n_ctx_seq, n_stream, SWA cells) as llama-context.cpp:290-304 and llama-kv-cache-iswa.cpp:66-75
    compute them: n_ctx padded to 256; one stream per slot unless unified, each of n_ctx / n_parallel padded to
    256; the SWA cache the window times the streams it serves plus a micro-batch, padded to 256."""
    n_ctx = pad(args.n_ctx or int(facts.get("context_length", 0)), 256)
    n_seq = max(1, args.n_parallel)
    n_batch = min(n_ctx, args.n_batch)
    n_ubatch = min(n_batch, args.n_ubatch or n_batch)  # llama-context.cpp:237-239
    if args.kv_unified:
        n_ctx_seq, n_stream = n_ctx, 1
    else:
        n_ctx_seq = pad(n_ctx // n_seq, 256)
        if n_ctx_seq == 0:
            raise LlamaCppPlanError("the context per slot is 0")
        n_ctx, n_stream = n_ctx_seq * n_seq, n_seq
    n_swa = int(facts.get("attention.sliding_window", 0) or 0)
    swa = n_ctx_seq if args.swa_full else pad(min(n_ctx_seq, n_swa * (n_seq if args.kv_unified else 1) + n_ubatch), 256)
    return n_ctx, n_ctx_seq, n_stream, swa


# Input copies per device when llama.cpp pipelines the micro-batches across devices (GGML_SCHED_MAX_COPIES,
# ggml/CMakeLists.txt:188): every device has the layers, more than one device, layer split, the KV cache offloaded
# and no tensor overrides (llama-context.cpp:428-434); the devices must also compute asynchronously (ROCm and RPC do).
PIPELINE_COPIES = 4


def pipelined(facts: GgufFacts, args: LlamaCppArgs) -> bool:
    n_gpu = args.n_gpu_layers if args.n_gpu_layers >= 0 else facts.n_layer + 1
    n_dev = 1 if args.split_mode == "none" else len(args.devices)
    overridden = bool(args.cpu_overrides) or args.n_cpu_moe > 0
    return n_dev > 1 and n_gpu > facts.n_layer and args.split_mode == "layer" and args.offload_kqv and not overridden


def compute_buffers(
    facts: GgufFacts,
    args: LlamaCppArgs,
    layer_dev: Sequence[int],
    swa: Sequence[bool],
    cells: tuple[int, int],
    copies: int,
) -> tuple[list[int], int]:
    """The compute buffers (per device, and the host's), fitted on the real server's allocations (CPU and RPC
    devices; tests/test_llamacpp_memory.py holds the comparison). ggml's allocator reuses memory along the worst-case
    graph of one micro-batch (llama-context.cpp:660-742), so a device needs its inputs (the attention masks of the
    layer kinds it holds, n_kv x n_ubatch, f16 with flash attention, f32 without; the hidden state coming in), once per
    pipeline copy, and the largest working set of its layers: the feed-forward's (up, gate, their product: 3 x n_ff
    per token, the experts' n_ff x n_used for a MoE, plus 3 x n_embd), or the attention's (without flash attention
    the scores, n_kv x n_head per token, with Q, K, V and the hidden states). The last layer computes its feed-forward
    only for the outputs (llama.cpp's inp_out_ids), which the server keeps to one per slot (n_outputs_max,
    tools/server/server-context.cpp:994-997). The host holds the inputs for every device."""
    n_ctx_seq, swa_cells = cells
    ub = min(args.n_ubatch, args.n_batch, n_ctx_seq * (1 if args.kv_unified else max(args.n_parallel, 1)))
    f32 = 4
    mask_bytes = 2 if args.flash_attn else 4
    n_embd = int(facts.get("embedding_length"))
    heads = facts.per_layer("attention.head_count")
    heads_kv = facts.per_layer("attention.head_count_kv", 0)
    n_expert_used = int(facts.get("expert_used_count", 0) or 0)
    n_ff = int(facts.get("expert_feed_forward_length", 0) or 0) * n_expert_used if n_expert_used else 0
    if not n_ff:
        ff = facts.get("feed_forward_length", 0)
        n_ff = max(ff) if isinstance(ff, list) else int(ff)
    n_expert = int(facts.get("expert_count", 0) or 0)
    n_layer = facts.n_layer
    e_in = ub * n_embd * f32

    recurrent = recurrent_layers(facts)
    state = sum(state_bytes_per_sequence(facts))
    n_seq = max(args.n_parallel, 1)

    def ssm(il: int) -> int:
        """A Mamba layer's working set: its input projection, the convolution's input and output, the scan's
        output and gate (d_in_proj + 2 conv + 2 d_inner per token), and the states of the batch's sequences."""
        d_inner = int(facts.get("ssm.inner_size", 0) or 0)
        conv = d_inner + 2 * int(facts.get("ssm.group_count", 0) or 0) * int(facts.get("ssm.state_size", 0) or 0)
        proj = facts.by_name.get(f"blk.{il}.ssm_in.weight")
        d_in_proj = proj.shape[1] if proj is not None else d_inner + conv
        return ub * f32 * (d_in_proj + 2 * conv + 2 * d_inner) + n_seq * state

    def masks(layers: Sequence[int]) -> int:
        kinds = {swa[il] for il in layers if not recurrent[il]}
        return sum((swa_cells if kind else n_ctx_seq) * ub * mask_bytes for kind in kinds)

    def work(layers: Sequence[int]) -> int:
        if not layers:
            return 0
        on_device = [il for il in layers if il < n_layer - 1 and il not in experts_on_host]
        # up, gate and their product; a MoE's experts' outputs (n_embd x n_used) may outgrow those
        ffn_width = max(3 * n_ff, n_ff + n_embd * n_expert_used) + 3 * n_embd + n_expert
        ffn = ub * f32 * ffn_width if on_device else 0
        attn = ub * f32 * 3 * n_embd
        attn = max([attn, *(ssm(il) for il in layers if recurrent[il])])
        # a layer whose experts the host computes gets their outputs back (n_embd x n_used per token, split inputs
        # seen with GGML_SCHED_DEBUG) beside its hidden states; the last layer only for its outputs
        routed = [il for il in layers if il in experts_on_host]
        if routed:
            held = 2 if any(il < n_layer - 1 for il in routed) else 1
            attn = max(attn, ub * f32 * n_embd * (n_expert_used + held))
        if not args.flash_attn:
            for il in layers:
                if recurrent[il]:
                    continue
                head_k = int(facts.get("attention.key_length", 0) or n_embd // heads[il])
                kv = (heads_kv[il] or heads[il]) * head_k
                scores = (swa_cells if swa[il] else n_ctx_seq) * heads[il] * ub * f32
                attn = max(attn, scores + ub * f32 * (2 * heads[il] * head_k + 2 * kv + 3 * n_embd))
        return max(ffn, attn)

    # layers whose experts the overrides keep on the host compute their experts there
    overrides = _overrides(args)
    experts_on_host = {
        t.layer
        for t in facts.tensors
        if t.layer is not None and "_exps" in t.name and any(p.search(t.name) for p in overrides)
    }
    per_device: list[list[int]] = [[] for _ in args.devices]
    on_cpu: list[int] = []
    for il in range(n_layer):
        (per_device[layer_dev[il]] if layer_dev[il] >= 0 else on_cpu).append(il)
    out = [copies * (masks(ls) + e_in) + work(ls) if ls else 0 for ls in per_device]
    # A recurrent layer reads its state before the previous layer has finished (the state copies come first in
    # the graph), so where a device boundary falls before one, the scheduler cuts the previous layer in two: the next
    # device takes its input projection's output as an input, and the previous one the scan's output back (ggml's
    # split inputs, seen with GGML_SCHED_DEBUG on two rpc devices), each once per pipeline copy.
    for il in range(1, n_layer):
        before, after = layer_dev[il - 1], layer_dev[il]
        if recurrent[il] and recurrent[il - 1] and before != after and before >= 0 and after >= 0:
            d_inner = int(facts.get("ssm.inner_size", 0) or 0)
            proj = facts.by_name.get(f"blk.{il - 1}.ssm_in.weight")
            out[after] += copies * ub * f32 * (proj.shape[1] if proj is not None else 2 * d_inner)
            out[before] += copies * ub * f32 * d_inner
    # the output layer, on a device of its own: the hidden state and the logits of one output per slot
    n_vocab = facts.by_name["token_embd.weight"].shape[1] if "token_embd.weight" in facts.by_name else 0
    n_out = max(args.n_parallel, 1)
    if layer_dev[n_layer] >= 0 and not per_device[layer_dev[n_layer]]:
        out[layer_dev[n_layer]] = (copies * n_embd + n_vocab) * n_out * f32
    every = list(range(n_layer))
    host = copies * (masks(every) + e_in) + (e_in if args.flash_attn else 3 * e_in) if args.devices else 0
    if on_cpu or not args.devices:
        host = max(host, masks(every) + e_in + work(on_cpu or every))
    if experts_on_host:
        host = max(host, masks(every) + e_in + ub * f32 * (3 * n_ff + n_embd + n_expert))
    # the logits of one output per slot, on the host (llama-context.cpp:2120-2142)
    host += n_vocab * n_out * f32
    return out, host


def plan(facts: GgufFacts, args: LlamaCppArgs) -> LlamaCppMemory:
    """The buffers llama-server allocates for `facts` with `args`."""
    if args.split_mode not in ("layer", "none"):
        raise LlamaCppPlanError(f"split mode {args.split_mode!r} is not planned here (layer and none are)")
    if not args.flash_attn and args.cache_type_v.upper() not in ("F16", "F32", "BF16"):
        raise LlamaCppPlanError(  # llama-context.cpp:3844-3847
            f"a quantized V cache ({args.cache_type_v}) needs flash attention: llama.cpp refuses it without"
        )
    n_dev = len(args.devices)
    places = tensor_places(facts, args)
    model = [0] * n_dev
    cpu: list[Tensor] = []
    for t, device in places:
        if device < 0:
            cpu.append(t)
        else:
            model[device] += pad(t.nbytes, TENSOR_ALIGNMENT)
    host_model = _mapped(facts, cpu) if args.mmap else sum(pad(t.nbytes, TENSOR_ALIGNMENT) for t in cpu)

    n_ctx, n_ctx_seq, n_stream, swa_cells = kv_cells(facts, args)
    layer_dev = layer_devices(facts.n_layer, args)
    swa = swa_layers(facts)
    heads = facts.per_layer("attention.head_count")
    heads_kv = facts.per_layer("attention.head_count_kv", 0)
    n_embd = int(facts.get("embedding_length"))
    kv = [0] * n_dev
    host_kv = 0
    # llama-kv-cache.cpp:182-225: per layer with a KV cache, K [n_embd_k_gqa, cells, streams] and V likewise; V is
    # stored transposed without flash attention, padded to the largest layer's width (llama-kv-cache.cpp:164-183).
    recurrent = recurrent_layers(facts)
    attention = [not recurrent[il] and (heads_kv[il] or heads[il]) > 0 for il in range(facts.n_layer)]
    k_dims, v_dims = [], []
    for il in range(facts.n_layer):
        head_k = int(facts.get("attention.key_length", 0) or n_embd // max(heads[il], 1))
        head_v = int(facts.get("attention.value_length", 0) or n_embd // max(heads[il], 1))
        kv_heads = heads_kv[il] if heads_kv[il] else heads[il]
        k_dims.append(head_k * kv_heads)
        v_dims.append(head_v * kv_heads)
    v_max = max((v for v, a in zip(v_dims, attention, strict=True) if a), default=0)
    state = state_bytes_per_sequence(facts)
    # the recurrent state: per recurrent layer R and S rows, f32, one per slot (llama-memory-recurrent.cpp:77-107;
    # rows max(1, n_seq_max) x (1 + n_rs_seq), llama-model.cpp:2747; n_rs_seq is 0 without speculative decoding)
    rows = max(1, args.n_parallel)
    for il in range(facts.n_layer):
        if recurrent[il]:
            size = sum(pad(b * rows, TENSOR_ALIGNMENT) for b in state)
        elif attention[il]:
            cells = swa_cells if swa[il] else n_ctx_seq
            v_width = v_dims[il] if args.flash_attn else v_max
            k = pad(row_bytes(args.cache_type_k.upper(), k_dims[il]) * cells * n_stream, TENSOR_ALIGNMENT)
            v = pad(row_bytes(args.cache_type_v.upper(), v_width) * cells * n_stream, TENSOR_ALIGNMENT)
            size = k + v
        else:
            continue  # a layer without attention or state (hparams.has_kv)
        device = layer_dev[il] if args.offload_kqv else -1
        if device < 0:
            host_kv += size
        else:
            kv[device] += size

    copies = PIPELINE_COPIES if pipelined(facts, args) else 1
    compute, host_compute = compute_buffers(facts, args, layer_dev, swa, (n_ctx_seq, swa_cells), copies)
    single = compute_buffers(facts, args, layer_dev, swa, (n_ctx_seq, swa_cells), 1)[0] if copies > 1 else []
    names = list(args.devices)
    devices = tuple(Buffers(names[i], model[i], kv[i], compute[i]) for i in range(n_dev))
    return LlamaCppMemory(
        devices=devices,
        host=Buffers("CPU", host_model, host_kv, host_compute),
        host_cache_ram=args.cache_ram_mib * MiB if args.cache_ram_mib >= 0 else None,
        n_ctx=n_ctx,
        n_ctx_seq=n_ctx_seq,
        n_stream=n_stream,
        kv_cells=n_ctx_seq,
        swa_cells=swa_cells if any(swa) else 0,
        layer_device=tuple(layer_dev),
        unpipelined_compute=tuple(single),
    )


def warnings(facts: GgufFacts, args: LlamaCppArgs) -> list[str]:
    """What llama.cpp only warns about with these arguments, one line each."""
    out = []
    n_ctx, n_ctx_seq, _, _ = kv_cells(facts, args)
    train = int(facts.get("context_length", 0) or 0)
    if train and n_ctx_seq > train:  # llama-context.cpp:327-330
        out.append(
            f"each slot's context ({n_ctx_seq} tokens) is beyond the {train} tokens {facts.arch} was trained on: "
            "llama.cpp runs it (without RoPE scaling) and warns of a possible training context overflow"
        )
    if args.cache_ram_mib < 0:
        out.append("the prompt cache has no limit (--cache-ram -1): it can grow into all of the host's memory")
    if args.n_ctx and n_ctx != pad(args.n_ctx, 256):  # llama-context.cpp:302-305
        out.append(
            f"the context {args.n_ctx} is not a multiple of 256 per slot for {args.n_parallel} slots: llama.cpp makes "
            f"it {n_ctx} ({n_ctx_seq} per slot)"
        )
    return out


def largest_context(facts: GgufFacts, args: LlamaCppArgs, memory: Sequence[int]) -> int:
    """The largest -c up to the one asked (the training context when 0), in llama.cpp's steps (256 per slot's
    stream), whose buffers fit every device's memory; 0 when not even one step does."""
    step = 256 if args.kv_unified else 256 * max(args.n_parallel, 1)
    lo, hi = 0, (args.n_ctx or int(facts.get("context_length", 0) or 0)) // step
    while lo < hi:  # the buffers grow with the context, so the last that fits is found by bisection
        mid = (lo + hi + 1) // 2
        if plan(facts, replace(args, n_ctx=mid * step)).over(memory):
            hi = mid - 1
        else:
            lo = mid
    return lo * step
