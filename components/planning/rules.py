"""Refuse what would fail on the GPUs: the model rules and the memory plan of a stack, before deployment.

Each rule is one that vLLM enforces at startup, after the image pull, the ~40 GB download and the
model load: here it is checked against the catalog (or the stack's inline architecture) instead.
Pure logic, free of Pulumi.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from components.planning import advice
from components.planning.calibration import BLOCK_UNITS, efficiency_of, implausible, plausible_range
from components.planning.catalog import Architecture, Catalog, Gpu, Image, load_catalog
from components.planning.formats import foreign_format, not_served
from components.planning.health import RESTART_DEADLINE_S, STALL_MIN_S, stall_seconds
from components.planning.memory import DEFAULT_PROFILE, PROFILES, Capacity, MemoryInputs, default_batch, plan
from components.planning.performance import Efficiency, Performance, Server, Workload, performance, scaled_prefill
from components.planning.prefill import prefill_seconds
from components.planning.timing import load_estimate, whole_minutes
from components.settings import HostSettings, Problem, ServerSettings, StackSettings, suggestion
from components.settings.models import MAX_STARTUP_S


@dataclass(frozen=True)
class ServerContext:
    """One vLLM server and the host it runs on. The rules key their problems `vllm.<field>` and
    `host.<field>`; `server_key` and `host_key` are where those stand in the stack file."""

    host: HostSettings
    vllm: ServerSettings
    server_key: str = "vllm"
    host_key: str = "host"

    def full_key(self, relative: str) -> str:
        """`vllm.max_model_len` -> `servers.chat-a.max_model_len` (as the stack file writes it)."""
        head, _, rest = relative.partition(".")
        prefix = {"vllm": self.server_key, "host": self.host_key}.get(head)
        return f"{prefix}.{rest}" if prefix else relative


@dataclass(frozen=True)
class Assessment:
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    capacity: Capacity | None = None
    performance: Performance | None = None
    advice: list[str] = field(default_factory=list)


def effective_dtype(requested: str, arch: Architecture, gpu: Gpu) -> str:
    """`auto` is the checkpoint's dtype, or float16 where the GPU lacks it (the gfx906 image does that)."""
    if requested != "auto":
        return requested
    return arch.torch_dtype if arch.torch_dtype in gpu.dtypes else "float16"


def architecture_of(s: ServerContext, catalog: Catalog) -> tuple[Architecture | None, str]:
    """The model's architecture (inline, else from the catalog) and where it came from."""
    if s.vllm.architecture is not None:
        return s.vllm.architecture, f"rocm-inference:{s.server_key}.architecture"
    return catalog.models.get(s.vllm.model), "the model catalog"


def tensor_parallel_rules(arch: Architecture, tp: int, where: str) -> list[Problem]:
    """What vLLM refuses about splitting this model over `tp` GPUs (the plan's and `components.model --tp`'s rules)."""
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
    if arch.dense_mlp_layers and arch.intermediate_size and arch.intermediate_size % tp:
        out.append(Problem(key, f"must divide intermediate_size {arch.intermediate_size} ({where}), got {tp}"))
    out += _moe_rules(arch, tp, where)
    q = arch.quantization_config
    if q is not None and q.quant_method in ("awq", "gptq", "compressed-tensors") and q.group_size > 0 and tp > 1:
        g = q.group_size
        # Row-parallel layers (down_proj, o_proj) get 1/TP of their input per GPU; packed weights
        # are grouped along the input, so each GPU's share must be whole groups.
        dense = arch.intermediate_size if arch.dense_mlp_layers and arch.intermediate_size else 0
        for name, size in (
            ("intermediate_size", dense),
            ("num_attention_heads x head_dim", arch.num_attention_heads * arch.head_size),
        ):
            if size and size % tp == 0 and (size // tp) % g:
                out.append(
                    Problem(
                        key,
                        f"splits {name} {size} into {size // tp} per GPU, not a multiple of the {q.quant_method} "
                        f"group_size {g}: vLLM fails with 'input size not aligned with the quantized weight shape' "
                        f"({name} must be divisible by group_size x TP = {g * tp}), got {tp}",
                    )
                )
    return out


def _moe_rules(arch: Architecture, tp: int, where: str) -> list[Problem]:
    """FusedMoE splits each expert's FFN by TP (layer.py: assert intermediate_size % tp_size == 0);
    AWQ/GPTQ experts run on MoeWNA16, which halves the group size until it divides the per-GPU
    width and hidden_size, and asserts it stays >= 32 (moe_wna16.py create_weights)."""
    if not arch.is_moe:
        return []
    key, size = "vllm.tensor_parallel_size", arch.expert_intermediate_size
    if size % tp:
        return [Problem(key, f"must divide the experts' moe_intermediate_size {size} ({where}), got {tp}")]
    q = arch.quantization_config
    if q is None or q.quant_method not in ("awq", "gptq") or q.group_size <= 0:
        return []
    group, per_gpu = q.group_size, size // tp
    while group >= 32 and (per_gpu % group or arch.hidden_size % group):
        group //= 2
    if group < 32:
        return [
            Problem(
                key,
                f"splits the experts' moe_intermediate_size {size} into {per_gpu} per GPU, which no {q.quant_method} "
                f"group of 32 or more divides: vLLM's MoE kernel (moe_wna16) fails its group-size assertion, got {tp}",
            )
        ]
    return []


# vLLM refuses these in float16 (vllm/config/model.py _FLOAT16_NOT_SUPPORTED_MODELS); the gfx906 fork
# (nlzy/vllm-gfx906 commit 326d4ba2a "ignore numerical instability") only warns and runs them in float16.
FLOAT16_UNSTABLE = frozenset({"gemma2", "gemma3", "gemma3_text", "plamo2", "glm4"})
MODELLED_QUANTIZATIONS = frozenset({"awq", "gptq", "compressed-tensors", "fp8"})


def _unmodelled(arch: Architecture) -> str:
    """Why the memory plan of this architecture is not trusted for a verdict, or ''."""
    reasons = []
    if arch.architecture_class == "mla":
        reasons.append("multi-head latent attention (kv_lora_rank) KV cache")
    q = arch.quantization_config
    if q is not None and q.quant_method not in MODELLED_QUANTIZATIONS:
        reasons.append(f"{q.quant_method} quantization")
    known = ("full_attention", "sliding_attention") + (("linear_attention",) if arch.is_linear_hybrid else ())
    if arch.layer_types is not None and any(t not in known for t in arch.layer_types):
        reasons.append("layer types other than full and sliding attention (linear attention, Mamba)")
    elif arch.is_linear_hybrid:
        # components/planning/hybrid.py lays the pool out as vLLM 0.23 does (checked on a published pool); the
        # pool's size from gpu_memory_utilization (GDN weights, activations) is not checked on a published run.
        reasons.append(
            "Gated DeltaNet (linear attention) layers, whose pool size from gpu_memory_utilization is unchecked"
        )
    return ", ".join(reasons)


def assess(s: ServerContext, catalog: Catalog) -> Assessment:
    """The model rules and the memory plan of a stack whose structure is already valid."""
    problems: list[Problem] = []
    warnings: list[Problem] = []
    gpu = catalog.gpus.get(s.host.gpu)
    if gpu is None:
        hint = suggestion(s.host.gpu, catalog.gpus)
        return Assessment([Problem("host.gpu", f"is {s.host.gpu!r}: not a GPU of the catalog{hint}")])
    arch, where = architecture_of(s, catalog)
    config = arch.model_dump(include={"quantization", "quantization_config"}, exclude_none=True) if arch else None
    kind, evidence = foreign_format(s.vllm.model, config)
    if kind:
        return Assessment([Problem("vllm.model", f"is {s.vllm.model!r}, {not_served(s.vllm.model, kind, evidence)}")])
    cased = [m for m in catalog.models if m.lower() == s.vllm.model.lower()]
    if arch is None and cased:
        return Assessment(
            [
                Problem(
                    "vllm.model",
                    f"is {s.vllm.model!r}, which differs from the catalog's {cased[0]!r} only in case: model ids "
                    f"are case-sensitive here; write {cased[0]!r}",
                )
            ]
        )
    if arch is None:
        return Assessment(
            [
                Problem(
                    "vllm.model",
                    f"is {s.vllm.model!r}, which is not in the model catalog: give its config.json, as it is, under "
                    f"rocm-inference:vllm.architecture or as a file in rocm-inference:vllm.architecture_file "
                    f"(python -m components.model {s.vllm.model} --write STACK writes it)",
                )
            ]
        )
    image = catalog.image(s.vllm.image)
    cuda = catalog.cuda_image(s.vllm.image)
    if cuda is not None:
        usable = [
            f"{repo}:{catalog.tags[repo].pinned}" if repo in catalog.tags and catalog.tags[repo].pinned else repo
            for repo, i in catalog.images.items()
            if gpu.gfx in i.gfx
        ]
        problems.append(
            Problem(
                "vllm.image",
                f"is {s.vllm.image!r}, {cuda.what}: it cannot run on rocm-inference:{s.host_key}.gpu {s.host.gpu!r} "
                f"({gpu.product}, {gpu.gfx}, ROCm)"
                + (f"; use a ROCm image the catalog has for {gpu.gfx}: {', '.join(usable)}" if usable else ""),
            )
        )
    elif image is None:
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
                f"is built for {', '.join(image.gfx)}, but rocm-inference:{s.host_key}.gpu {s.host.gpu!r} is {gpu.gfx}",
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
    problems += _speculative_rules(arch, image, s, catalog, warnings)
    problems += tensor_parallel_rules(arch, s.vllm.tensor_parallel_size, where)
    if s.vllm.max_model_len > arch.max_position_embeddings:
        problems.append(
            Problem(
                "vllm.max_model_len",
                f"must be at most the model's max_position_embeddings {arch.max_position_embeddings} "
                f"(vLLM refuses longer contexts), got {s.vllm.max_model_len}",
            )
        )
    w = s.vllm.workload
    if "workload" in s.vllm.model_fields_set and w.prompt_tokens + w.output_tokens > s.vllm.max_model_len:
        problems.append(
            Problem(
                "vllm.workload.prompt_tokens",
                f"and output_tokens add up to {w.prompt_tokens + w.output_tokens} tokens, more than max_model_len "
                f"{s.vllm.max_model_len}: vLLM refuses such requests",
            )
        )
    if w.cached_prompt_tokens >= w.prompt_tokens:
        problems.append(
            Problem(
                "vllm.workload.cached_prompt_tokens",
                f"must be below prompt_tokens {w.prompt_tokens}, got {w.cached_prompt_tokens}: vLLM computes at "
                "least a prompt's last token even when the prefix cache holds all of it",
            )
        )
    dtype = effective_dtype(s.vllm.dtype, arch, gpu)
    if arch.torch_dtype == "bfloat16" and dtype == "float16" and (arch.model_type or "") in FLOAT16_UNSTABLE:
        warnings.append(
            Problem(
                "vllm.model",
                f"is a bfloat16-trained {arch.model_type} model that {gpu.product} runs in float16: upstream vLLM refuses "
                "it ('numerical instability'), the gfx906 image only warns; activations can overflow to inf/NaN "
                "(garbled or empty output)",
            )
        )
    if problems:
        return Assessment(problems, warnings)
    capacity = plan_capacity(s, gpu, arch, image)
    unmodelled = _unmodelled(arch)
    if unmodelled:
        capacity = dataclasses.replace(capacity, unmodelled=unmodelled)
        warnings.append(
            Problem(
                "vllm.model",
                f"has {unmodelled}, which the memory planner does not model: the fit verdict is skipped "
                + (
                    "(the plan's KV figures are vLLM 0.23's hybrid layout of an estimated pool)"
                    if capacity.linear_layers
                    else "(the plan's KV figures are a dense-model estimate)"
                ),
            )
        )
        return Assessment(problems, warnings, capacity)
    if not capacity.fits:
        problems.append(_no_fit(s, capacity))
        return Assessment(problems, warnings, capacity)
    _, stale = calibrated_efficiency(s.vllm)
    if not stale and s.vllm.calibration is not None:
        problems += calibration_problems(s.vllm.calibration.model_dump())
        if problems:
            return Assessment(problems, warnings, capacity)
    if stale:
        warnings.append(
            Problem(
                "vllm.calibration",
                f"was measured for another server ({stale}): the speed bands ignore it and use the fitted model; "
                "run `python -m components.verify STACK --calibrate --write` again after the deploy",
            )
        )
    speed = plan_performance(s, gpu, arch, capacity)
    return Assessment(problems, warnings, capacity, speed, plan_advice(s, gpu, arch, image, capacity, speed))


def plan_advice(
    s: ServerContext, gpu: Gpu, arch: Architecture, image: Image | None, capacity: Capacity, speed: Performance
) -> list[str]:
    """What would serve this workload faster (components/planning/advice.py)."""
    server, workload = speed_inputs(s, gpu, arch, capacity)
    eff, _ = calibrated_efficiency(s.vllm)
    narrower: dict[int, int] = {}
    tp = s.vllm.tensor_parallel_size // 2
    while tp >= 1 and s.vllm.tensor_parallel_size % tp == 0:
        if not tensor_parallel_rules(arch, tp, "vllm"):
            smaller = dataclasses.replace(
                s, vllm=s.vllm.model_copy(update={"tensor_parallel_size": tp, "gpus": s.vllm.gpus[:tp]})
            )
            c = plan_capacity(smaller, gpu, arch, image)
            if c.fits:
                narrower[tp] = c.kv_cache_tokens
        tp //= 2
    tokens, _ = default_batch(capacity.gpu_memory_gib, gpu.product)
    out = []
    split = advice.replicas(server, workload, speed, narrower, eff)
    if split:
        out.append(split)
    out += advice.batching(
        server, workload, speed, s.vllm.max_num_seqs is not None, s.vllm.max_num_batched_tokens or tokens
    )
    narrow = advice.calibration(server, speed)
    if narrow:
        out.append(narrow)
    return out


def speed_inputs(s: ServerContext, gpu: Gpu, arch: Architecture, capacity: Capacity) -> tuple[Server, Workload]:
    """What the speed model knows of the server, and the workload its bands are for."""
    _, seqs = default_batch(capacity.gpu_memory_gib, gpu.product)
    server = Server(
        arch=arch,
        gpu=gpu,
        tensor_parallel_size=s.vllm.tensor_parallel_size,
        max_model_len=s.vllm.max_model_len,
        max_num_seqs=s.vllm.max_num_seqs or seqs,
        kv_cache_tokens=capacity.kv_cache_tokens,
        dtype=effective_dtype(s.vllm.dtype, arch, gpu),
    )
    w = s.vllm.workload
    output, prompt = w.output_tokens, w.prompt_tokens
    if "workload" not in s.vllm.model_fields_set:
        # The default chat box, cut to a short max_model_len (a workload the stack sets is checked instead).
        output = min(output, max(1, s.vllm.max_model_len // 4))
        prompt = min(prompt, max(1, s.vllm.max_model_len - output))
    cached = min(w.cached_prompt_tokens, prompt - 1)
    return server, Workload(prompt, output, w.concurrency, cached)


def speed_inputs_of(s: ServerContext, catalog: Catalog) -> tuple[Server, Workload] | None:
    """speed_inputs for a server the rules pass (None for one they refuse, or whose memory they cannot plan)."""
    a = assess(s, catalog)
    gpu = catalog.gpus.get(s.host.gpu)
    arch, _ = architecture_of(s, catalog)
    if a.problems or a.capacity is None or a.performance is None or gpu is None or arch is None:
        return None
    return speed_inputs(s, gpu, arch, a.capacity)


def plan_performance(s: ServerContext, gpu: Gpu, arch: Architecture, capacity: Capacity) -> Performance:
    """The server's speed bands at its workload (components/planning/performance.py), on the planned KV cache."""
    server, workload = speed_inputs(s, gpu, arch, capacity)
    eff, _ = calibrated_efficiency(s.vllm)
    if eff is None:
        return performance(server, workload)
    assert s.vllm.calibration is not None
    return performance(server, workload, eff, s.vllm.calibration.measured)


def calibration_problems(block: Mapping[str, Any]) -> list[Problem]:
    """A calibration block's values that no measurement on a box writes (calibration.implausible), each by its key."""
    out = []
    for key, value, base in implausible(block):
        low, high = plausible_range(key)
        ratio = value / base if base else float("inf")
        times = f"{ratio:.3g} times" if ratio >= 1 else f"1/{1 / ratio:.3g} of"
        out.append(
            Problem(
                f"vllm.calibration.{key}",
                f"is {value:g}, {times} the uncalibrated {base:.3g}: outside {low:.3g} to {high:.3g}, what a "
                f"calibration on the box can measure; {key} is in {BLOCK_UNITS[key]}, so this looks like another "
                "unit (or a percentage for a factor): run `python -m components.verify STACK --calibrate --write` "
                "again, or remove the calibration block",
            )
        )
    return out


def calibrated_efficiency(v: ServerSettings) -> tuple[Efficiency | None, str]:
    """The efficiencies a calibration measured, if it still holds for this server; else None and why not."""
    c = v.calibration
    if c is None:
        return None, ""
    now = {"model": v.model, "tensor_parallel_size": v.tensor_parallel_size, "image": v.image}
    then = {"model": c.model, "tensor_parallel_size": c.tensor_parallel_size, "image": c.image}
    changed = [k for k in now if now[k] != then[k]]
    if changed:
        return None, ", ".join(f"{k} {then[k]} then, {now[k]} now" for k in changed)
    return efficiency_of(c.model_dump()), ""


def _speculative_rules(
    arch: Architecture, image: Image | None, s: ServerContext, catalog: Catalog, warnings: list[Problem]
) -> list[Problem]:
    """Speculative decoding the image or the model cannot run is refused before deployment."""
    spec = s.vllm.speculative
    if spec is None:
        return []
    out = []
    if image is None:
        warnings.append(
            Problem(
                "vllm.speculative.method", f"is {spec.method!r} on an image the catalog lacks: its support is unchecked"
            )
        )
    elif spec.method not in image.speculative:
        runs = [
            catalog.pinned_reference(repo) or repo for repo, i in catalog.images.items() if spec.method in i.speculative
        ]
        recorded = ", ".join(image.speculative) if image.speculative else "none"
        out.append(
            Problem(
                "vllm.speculative.method",
                f"is {spec.method!r}, which the catalog records no recipe for on {s.vllm.image!r} (it records: "
                f"{recorded})" + (f"; the image that runs it: {', '.join(runs)}" if runs else ""),
            )
        )
    if spec.method == "mtp":
        n = arch.mtp_layers
        if n == 0:
            out.append(
                Problem(
                    "vllm.speculative.method",
                    f"is 'mtp', but {s.vllm.model!r}"
                    + (f" (model_type {arch.model_type!r})" if arch.model_type else "")
                    + " has no MTP draft layers vLLM runs (config.json mtp_num_hidden_layers or "
                    "num_nextn_predict_layers): use method ngram",
                )
            )
        elif spec.num_speculative_tokens > n and spec.num_speculative_tokens % n:
            # vllm/config/speculative.py at e12fe369 lines 807-819: the MTP layers are reused k / n times.
            out.append(
                Problem(
                    "vllm.speculative.num_speculative_tokens",
                    f"must be at most the model's {n} MTP layers or a multiple of them (vLLM refuses otherwise), "
                    f"got {spec.num_speculative_tokens}",
                )
            )
    return out


def _quantization_rules(
    arch: Architecture, image: Image | None, s: ServerContext, warnings: list[Problem]
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
    method = q.scheme  # a compressed-tensors checkpoint by its own number format
    if method not in image.quantizations and method not in MODELLED_QUANTIZATIONS:
        warnings.append(
            Problem(
                "vllm.model",
                f"is quantized with {q.scheme_text}, which {s.vllm.image} is not known to run "
                f"(it runs {', '.join(image.quantizations)}): check the image's issues before deploying",
            )
        )
        return []
    if method not in image.quantizations:
        return [
            Problem(
                "vllm.model",
                f"is quantized with {q.scheme_text}, which {s.vllm.image} does not run: "
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


def plan_capacity(s: ServerContext, gpu: Gpu, arch: Architecture, image: Image | None) -> Capacity:
    memory = s.host.gpu_memory_gib or gpu.memory_gib
    tokens, seqs = default_batch(memory, gpu.product)
    profile = PROFILES[image.engine if image else DEFAULT_PROFILE]
    spec = s.vllm.speculative
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
            speculative_tokens=spec.num_speculative_tokens if spec else 0,
            draft_layers=arch.mtp_layers if spec and spec.method == "mtp" else 0,
        )
    )


def _no_fit(s: ServerContext, c: Capacity) -> Problem:
    per_request = s.vllm.max_model_len * c.kv_bytes_per_token_per_gpu / (1 << 30)
    if c.weights_gib_per_gpu + c.reserve_gib_per_gpu >= c.usable_gib:
        memory = (
            f"rocm-inference:host.gpu_memory_gib {s.host.gpu_memory_gib}"
            if s.host.gpu_memory_gib
            else f"{c.gpu_memory_gib:.1f} GiB"
        )
        return Problem(
            "vllm.model",
            f"does not fit: its weights alone take {c.weights_gib_per_gpu:.1f} GiB per GPU (and the runtime "
            f"{c.reserve_gib_per_gpu:.1f} GiB), more than the {c.usable_gib:.1f} GiB that gpu_memory_utilization "
            f"{s.vllm.gpu_memory_utilization} leaves of {memory}, before any KV cache: the weights are the problem, "
            f"not max_model_len. Spread the model over more GPUs (tensor_parallel_size) or use a smaller or "
            f"quantized model",
        )
    util = (
        f", or raise gpu_memory_utilization to {c.utilization_needed}"
        if c.utilization_needed <= 1
        else f"; no gpu_memory_utilization makes room for {s.vllm.max_model_len} tokens on these GPUs"
    )
    return Problem(
        "vllm.max_model_len",
        f"is {s.vllm.max_model_len}, but the KV cache holds {c.kv_cache_tokens} tokens per GPU "
        f"({c.kv_cache_gib_per_gpu:.2f} GiB; one request needs {per_request:.2f} GiB) and vLLM refuses to start: "
        f"use max_model_len {c.largest_max_model_len} or less{util}",
    )


def server_contexts(s: StackSettings) -> dict[str, ServerContext]:
    """Each server of a valid stack with its host, keyed as the stack file writes them."""
    return {
        name: ServerContext(s.hosts[srv.host or ""], srv, s.key(f"servers.{name}"), s.key(f"hosts.{srv.host}"))
        for name, srv in s.servers.items()
    }


def assess_stack(s: StackSettings, catalog: Catalog) -> dict[str, Assessment]:
    """Each server's rules and memory plan, by server name."""
    return {name: assess(ctx, catalog) for name, ctx in server_contexts(s).items()}


def check_stack(s: StackSettings) -> tuple[list[Problem], list[Problem]]:
    """The model and memory rules of every server, for settings.validate: (errors, warnings), in fleet keys."""
    errors: list[Problem] = []
    warnings: list[Problem] = []
    catalog = load_catalog()
    for name in s.servers:
        found, warned = check_server(s, name, catalog)
        errors += found
        warnings += warned
    return errors, warnings


def check_server(s: StackSettings, name: str, catalog: Catalog) -> tuple[list[Problem], list[Problem]]:
    """One vLLM server's model and memory rules: (errors, warnings), in fleet keys."""
    srv = s.servers[name]
    a = assess_server(s, name, catalog)
    ctx = ServerContext(s.hosts[srv.host or ""], srv, f"servers.{name}", f"hosts.{srv.host}")
    errors = [Problem(ctx.full_key(p.key), p.message) for p in a.problems]
    warnings = [Problem(ctx.full_key(p.key), p.message) for p in a.warnings]
    if not a.problems:
        warnings += _stall_warning(ctx, catalog, f"servers.{name}")
    if a.capacity is not None:
        warnings += _startup_warning(srv, a.capacity, f"servers.{name}")
    return errors, warnings


def assess_server(s: StackSettings, name: str, catalog: Catalog) -> Assessment:
    """One vLLM server's rules, memory plan and speed bands."""
    srv = s.servers[name]
    return assess(
        ServerContext(s.hosts[srv.host or ""], srv, s.key(f"servers.{name}"), s.key(f"hosts.{srv.host}")), catalog
    )


def _startup_warning(srv: ServerSettings, c: Capacity, key: str) -> list[Problem]:
    """`pulumi up` waits startup_timeout for /health, and the healthcheck's start period is as long: a
    server still loading after it fails the deploy, or is restarted mid-load."""
    load = load_estimate(c.weights_gib_per_gpu, c.tensor_parallel_size)
    if srv.startup_timeout >= load.seconds:
        return []
    default = "" if "startup_timeout" in srv.model_fields_set else " (the default)"
    margin = whole_minutes(load.seconds * 1.5)
    way_out = f"{margin} (the estimate and half again)" if margin <= MAX_STARTUP_S else f"{MAX_STARTUP_S}, its most"
    return [
        Problem(
            f"{key}.startup_timeout",
            f"is {srv.startup_timeout} s{default}, below the plan's own estimate of this server's load: about "
            f"{round(load.seconds)} s ({load.basis}): `pulumi up` would fail waiting for /health, or the "
            f"healthcheck restart a server that was only loading; raise startup_timeout to {way_out}",
        )
    ]


def _stall_warning(ctx: ServerContext, catalog: Catalog, key: str) -> list[Problem]:
    stall = server_stall_seconds(ctx, catalog)
    if ctx.vllm.stall_timeout is not None or stall <= RESTART_DEADLINE_S:
        return []
    arch, _ = architecture_of(ctx, catalog)
    c = ctx.vllm.calibration
    uncalibrated = server_stall_seconds(
        dataclasses.replace(ctx, vllm=ctx.vllm.model_copy(update={"calibration": None})), catalog
    )
    if c is not None and uncalibrated <= RESTART_DEADLINE_S:
        # The context alone keeps the window short: it is the calibration's prefill rate that stretches it.
        return [
            Problem(
                f"{key}.calibration.prefill_factor",
                f"is {c.prefill_factor:g}: with a prefill that many times the fitted estimate, a hung server is "
                f"restarted only after {stall} s of stall ({_duration(stall)}), against {uncalibrated} s "
                f"uncalibrated at this max_model_len ({ctx.vllm.max_model_len}): if the box really prefills this "
                "slowly, set stall_timeout to the wait you accept; otherwise the block was edited or measured wrong: "
                "run `python -m components.verify STACK --calibrate --write` again",
            )
        ]
    # The KV cache usage rises with every prefill chunk only in a layer that attends the whole prompt.
    hint = (
        "; a shorter stall_timeout restarts it sooner, and a long prefill still counts as progress by the KV "
        "cache it fills"
        if arch is not None and None in arch.layer_windows()
        else ""
    )
    return [
        Problem(
            f"{key}.max_model_len",
            f"allows a prefill so long at the slowest measured gfx906 rates that a hung server is restarted only "
            f"after {stall} s of stall (beyond {RESTART_DEADLINE_S // 60} minutes); VllmStalled still fires at 5 "
            f"minutes{hint}",
        )
    ]


def _duration(seconds: int) -> str:
    return f"{seconds / 3600:.1f} hours" if seconds >= 3600 else f"{seconds / 60:.0f} minutes"


def server_stall_seconds(ctx: ServerContext, catalog: Catalog) -> int:
    """The server's stall window (components/planning/health.py), from its model, context and GPUs."""
    if ctx.vllm.stall_timeout is not None:
        return ctx.vllm.stall_timeout
    arch, _ = architecture_of(ctx, catalog)
    gpu = catalog.gpus.get(ctx.host.gpu)
    if arch is None or gpu is None:
        raise ValueError("the rules refuse a server without a known GPU and model first")
    eff, _ = calibrated_efficiency(ctx.vllm)
    if eff is None:
        return stall_seconds(arch, ctx.vllm.max_model_len, ctx.vllm.tensor_parallel_size, gpu)
    # Calibrated on the box: its measured prefill rate's slow end, and never below the fitted estimate (the
    # calibration timed prompts of the workload's length; the hang detector errs on the long side).
    fitted = prefill_seconds(arch, ctx.vllm.max_model_len, ctx.vllm.tensor_parallel_size, gpu)
    slow = max(fitted.estimate, scaled_prefill(fitted, eff).high)
    return max(STALL_MIN_S, math.ceil(1.2 * slow))
