"""Refuse what would fail on the GPUs: the model rules and the memory plan of a stack, before deployment.

Each rule is one that vLLM enforces at startup, after the image pull, the ~40 GB download and the
model load: here it is checked against the catalog (or the stack's inline architecture) instead.
Pure logic, free of Pulumi.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from components.planning.catalog import Architecture, Catalog, Gpu, Image, load_catalog
from components.planning.memory import DEFAULT_PROFILE, PROFILES, Capacity, MemoryInputs, default_batch, plan
from components.settings import Problem, StackSettings, suggestion


@dataclass(frozen=True)
class Assessment:
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    capacity: Capacity | None = None


def effective_dtype(requested: str, arch: Architecture, gpu: Gpu) -> str:
    """`auto` is the checkpoint's dtype, or float16 where the GPU lacks it (the gfx906 image does that)."""
    if requested != "auto":
        return requested
    return arch.torch_dtype if arch.torch_dtype in gpu.dtypes else "float16"


def architecture_of(s: StackSettings, catalog: Catalog) -> tuple[Architecture | None, str]:
    """The model's architecture (inline, else from the catalog) and where it came from."""
    if s.vllm.architecture is not None:
        return s.vllm.architecture, "rocm-inference:vllm.architecture"
    return catalog.models.get(s.vllm.model), "the model catalog"


def _tensor_parallel_rules(arch: Architecture, tp: int, where: str) -> list[Problem]:
    key = "vllm.tensor_parallel_size"
    out = []
    if arch.num_attention_heads % tp:
        out.append(
            Problem(
                key,
                f"must divide the model's {arch.num_attention_heads} attention heads ({where}): vLLM splits the "
                f"heads across GPUs and refuses otherwise, got {tp}",
            )
        )
    kv = arch.kv_heads
    if (kv >= tp and kv % tp) or (kv < tp and tp % kv):
        out.append(
            Problem(
                key,
                f"must divide the model's {kv} KV heads, or be a multiple of them (vLLM replicates KV heads "
                f"only when TP exceeds them), got {tp}",
            )
        )
    if arch.intermediate_size % tp:
        out.append(Problem(key, f"must divide intermediate_size {arch.intermediate_size} ({where}), got {tp}"))
    q = arch.quantization_config
    if q is not None and q.quant_method in ("awq", "gptq", "compressed-tensors") and q.group_size > 0 and tp > 1:
        g = q.group_size
        # Row-parallel layers (down_proj, o_proj) get 1/TP of their input per GPU; packed weights
        # are grouped along the input, so each GPU's share must be whole groups.
        for name, size in (
            ("intermediate_size", arch.intermediate_size),
            ("num_attention_heads x head_dim", arch.num_attention_heads * arch.head_size),
        ):
            if size % tp == 0 and (size // tp) % g:
                out.append(
                    Problem(
                        key,
                        f"splits {name} {size} into {size // tp} per GPU, not a multiple of the {q.quant_method} "
                        f"group_size {g}: vLLM fails with 'input size not aligned with the quantized weight shape' "
                        f"({name} must be divisible by group_size x TP = {g * tp}), got {tp}",
                    )
                )
    return out


def assess(s: StackSettings, catalog: Catalog) -> Assessment:
    """The model rules and the memory plan of a stack whose structure is already valid."""
    problems: list[Problem] = []
    warnings: list[Problem] = []
    gpu = catalog.gpus.get(s.host.gpu)
    if gpu is None:
        hint = suggestion(s.host.gpu, catalog.gpus)
        return Assessment([Problem("host.gpu", f"is {s.host.gpu!r}: not a GPU of the catalog{hint}")])
    arch, where = architecture_of(s, catalog)
    if arch is None:
        keys = ", ".join(Architecture.model_fields)
        return Assessment(
            [
                Problem(
                    "vllm.model",
                    f"is {s.vllm.model!r}, which is not in the model catalog: give the facts of its config.json "
                    f"under rocm-inference:vllm.architecture ({keys})",
                )
            ]
        )
    image = catalog.image(s.vllm.image)
    if image is None:
        warnings.append(
            Problem(
                "vllm.image",
                f"is {s.vllm.image!r}, not in the image catalog: its GPU and quantization support are unchecked",
            )
        )
    elif gpu.gfx not in image.gfx:
        problems.append(
            Problem(
                "vllm.image",
                f"is built for {', '.join(image.gfx)}, but rocm-inference:host.gpu {s.host.gpu!r} is {gpu.gfx}",
            )
        )
    if s.vllm.dtype != "auto" and s.vllm.dtype not in gpu.dtypes:
        problems.append(
            Problem(
                "vllm.dtype",
                f"is {s.vllm.dtype!r}, which {gpu.product} ({gpu.gfx}) does not run: allowed {', '.join(gpu.dtypes)} or auto",
            )
        )
    problems += _quantization_rules(arch, image, s, warnings)
    problems += _tensor_parallel_rules(arch, s.vllm.tensor_parallel_size, where)
    if s.vllm.max_model_len > arch.max_position_embeddings:
        problems.append(
            Problem(
                "vllm.max_model_len",
                f"must be at most the model's max_position_embeddings {arch.max_position_embeddings} "
                f"(vLLM refuses longer contexts), got {s.vllm.max_model_len}",
            )
        )
    if problems:
        return Assessment(problems, warnings)
    capacity = plan_capacity(s, gpu, arch, image)
    if not capacity.fits:
        problems.append(_no_fit(s, capacity))
    return Assessment(problems, warnings, capacity)


def _quantization_rules(
    arch: Architecture, image: Image | None, s: StackSettings, warnings: list[Problem]
) -> list[Problem]:
    q = arch.quantization_config
    if image is None:
        return []
    if q is None:
        if "gfx906" in image.gfx:
            warnings.append(
                Problem("vllm.model", "is not quantized: unquantized models are slow on gfx906 (use AWQ or GPTQ)")
            )
        return []
    if q.quant_method not in image.quantizations:
        return [
            Problem(
                "vllm.model",
                f"is quantized with {q.quant_method}, which {s.vllm.image} does not run: "
                f"it supports {', '.join(image.quantizations)}",
            )
        ]
    if q.quant_method == "gptq" and q.desc_act and s.vllm.tensor_parallel_size > 1:
        warnings.append(
            Problem(
                "vllm.tensor_parallel_size",
                "with GPTQ desc_act=True under tensor parallel is very slow on gfx906 (the maintainer recommends pipeline parallel)",
            )
        )
    return []


def plan_capacity(s: StackSettings, gpu: Gpu, arch: Architecture, image: Image | None) -> Capacity:
    memory = s.host.gpu_memory_gib or gpu.memory_gib
    tokens, seqs = default_batch(memory)
    profile = PROFILES[image.engine if image else DEFAULT_PROFILE]
    return plan(
        MemoryInputs(
            arch=arch,
            gpu_memory_gib=memory,
            gpu_memory_utilization=s.vllm.gpu_memory_utilization,
            tensor_parallel_size=s.vllm.tensor_parallel_size,
            max_model_len=s.vllm.max_model_len,
            max_num_batched_tokens=s.vllm.max_num_batched_tokens or tokens,
            max_num_seqs=s.vllm.max_num_seqs or seqs,
            dtype=effective_dtype(s.vllm.dtype, arch, gpu),
            profile=profile,
            dequantizes_for_large_batches=bool(image and image.dequantizes_for_large_batches),
        )
    )


def _no_fit(s: StackSettings, c: Capacity) -> Problem:
    per_request = s.vllm.max_model_len * c.kv_bytes_per_token_per_gpu / (1 << 30)
    if c.weights_gib_per_gpu + c.reserve_gib_per_gpu >= c.usable_gib:
        return Problem(
            "vllm.max_model_len",
            f"cannot be served: the weights alone take {c.weights_gib_per_gpu:.1f} GiB per GPU and the runtime "
            f"{c.reserve_gib_per_gpu:.1f} GiB, more than the {c.usable_gib:.1f} GiB that gpu_memory_utilization "
            f"{s.vllm.gpu_memory_utilization} leaves of {c.gpu_memory_gib:.1f} GiB: spread the model over more GPUs "
            f"(tensor_parallel_size) or use a smaller or quantized model",
        )
    util = (
        f"or raise gpu_memory_utilization to {c.utilization_needed}"
        if c.utilization_needed <= 1
        else "(no gpu_memory_utilization is enough)"
    )
    return Problem(
        "vllm.max_model_len",
        f"is {s.vllm.max_model_len}, but the KV cache holds {c.kv_cache_tokens} tokens per GPU "
        f"({c.kv_cache_gib_per_gpu:.2f} GiB; one request needs {per_request:.2f} GiB) and vLLM refuses to start: "
        f"use max_model_len {c.largest_max_model_len} or less, {util}",
    )


def check_stack(s: StackSettings) -> tuple[list[Problem], list[Problem]]:
    """The model and memory rules, for settings.validate: (errors, warnings)."""
    a = assess(s, load_catalog())
    return a.problems, a.warnings
