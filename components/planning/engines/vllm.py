"""vLLM's OpenAI-compatible server, tensor parallel across the GPUs it is given: the engine of the stack's chat
servers (`rocm-inference:servers.<name>`, ServerSettings)."""

from __future__ import annotations

import json

from components.planning.catalog import Catalog, Image, Parsers
from components.planning.engines.base import Engine, ServiceContext
from components.planning.engines.hub import hub_download
from components.planning.health import progress_check
from components.planning.rules import assess_server, check_server, server_contexts, server_stall_seconds
from components.planning.service import Container, health_check
from components.planning.timing import container_timeouts, image_timeouts
from components.settings import ServerSettings

# vLLM's OpenAI server listens on 8000 by default; the image's python serves the healthcheck.
VLLM_PORT = 8000
# The image's HF cache: HF_HOME defaults to ~/.cache/huggingface and the server runs as root.
VLLM_CACHE_PATH = "/root/.cache/huggingface"
STOP_GRACE_S = 60


# Batch sizes of the trimmed CUDA-graph capture where the stack leaves max_num_seqs to vLLM: the image's
# TP 2 recipes serve 4 sequences (catalog.yaml, aiinfos/vllm-gfx906-mobydick `trimmed_capture_at_tp`).
TRIMMED_CAPTURE_SEQS = 4


def parsers_of(s: ServerSettings, catalog: Catalog) -> Parsers | None:
    """The tool-call and reasoning parsers the server's image serves its model with, if the image's recipes
    name any for the model's family (config.json model_type): the server then calls tools natively."""
    image = catalog.image(s.image)
    arch = s.architecture if s.architecture is not None else catalog.models.get(s.model)
    if image is None or arch is None:
        return None
    return image.parsers_for(arch.model_type)


def capture_sizes(s: ServerSettings, image: Image | None) -> tuple[int, ...]:
    """The trimmed CUDA-graph capture sizes the image's recipes pass at tensor parallel > 1 (none elsewhere):
    one step per sequence, up to max_num_seqs, of one token, or k+1 with k speculative tokens."""
    if image is None or image.trimmed_capture_at_tp is None or s.tensor_parallel_size < image.trimmed_capture_at_tp:
        return ()
    # With k draft tokens a decode step verifies k+1 per sequence: vLLM rounds every capture size up to a
    # multiple of k+1 (vllm/config/compilation.py at e12fe369 lines 1462-1508), so the ladder steps by k+1.
    width = 1 + (s.speculative.num_speculative_tokens if s.speculative is not None else 0)
    seqs = s.max_num_seqs if s.max_num_seqs is not None else TRIMMED_CAPTURE_SEQS
    return tuple(width * n for n in range(1, seqs + 1))


def vllm_command(s: ServerSettings, catalog: Catalog) -> tuple[str, ...]:
    """The full command line (the gfx906 image has no entrypoint that takes arguments), with the flags the
    image's recipes add (catalog.yaml `images`: dtype, trimmed capture at TP > 1, tool and reasoning parsers)."""
    image = catalog.image(s.image)
    cmd = [
        "python",
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        s.model,
        "--tensor-parallel-size",
        str(s.tensor_parallel_size),
        "--max-model-len",
        str(s.max_model_len),
        "--gpu-memory-utilization",
        str(s.gpu_memory_utilization),
    ]
    # Always: offline, vLLM replaces --model with the local snapshot path (engine/arg_utils.py, HF_HUB_OFFLINE),
    # and without a served name /v1/models, the metric labels and the gateway's routing would show that path.
    cmd += ["--served-model-name", s.name_served]
    if s.model_revision:
        cmd += ["--revision", s.model_revision]
    if s.dtype != "auto":
        cmd += ["--dtype", s.dtype]
    elif image is not None and image.recipe_dtype is not None:
        cmd += ["--dtype", image.recipe_dtype]
    if s.max_num_seqs is not None:
        cmd += ["--max-num-seqs", str(s.max_num_seqs)]
    if s.max_num_batched_tokens is not None:
        cmd += ["--max-num-batched-tokens", str(s.max_num_batched_tokens)]
    if s.speculative is not None:
        spec = s.speculative.model_dump(exclude_none=True)
        cmd += ["--speculative-config", json.dumps(spec, separators=(",", ":"))]
    sizes = capture_sizes(s, image)
    if sizes:
        cmd += ["--compilation-config", json.dumps({"cudagraph_capture_sizes": list(sizes)}, separators=(",", ":"))]
    parsers = parsers_of(s, catalog)
    if parsers is not None:
        cmd += ["--enable-auto-tool-choice", "--tool-call-parser", parsers.tool_call]
        if parsers.reasoning is not None:
            cmd += ["--reasoning-parser", parsers.reasoning]
    return tuple(cmd)


def container(ctx: ServiceContext) -> Container:
    s: ServerSettings = ctx.settings
    assert ctx.gpus is not None, "a vLLM server runs on GPUs"
    image = ctx.catalog.image(s.image)
    # Seconds without progress while holding requests before the server counts as hung (planning/health.py).
    stall = server_stall_seconds(server_contexts(ctx.stack)[ctx.name], ctx.catalog)
    return Container(
        image=s.image,
        container_name=s.container_name or ctx.name,
        command=vllm_command(s, ctx.catalog),
        internal_port=VLLM_PORT,
        external_port=s.port,
        bind=ctx.bind,
        cache_volume=s.volume_name,
        cache_path=VLLM_CACHE_PATH,
        startup_timeout=s.startup_timeout,
        health=health_check(
            VLLM_PORT,
            s.health_interval,
            s.startup_timeout,
            test=("CMD", "python3", "-c", progress_check(VLLM_PORT, stall)),
        ),
        init=True,
        prefetch=hub_download(ctx.stack, s.model, s.model_revision, s.download_timeout, s.download),
        environment={
            # What the image's recipes require (catalog.yaml); the stack's own environment wins.
            **(image.environment if image is not None else {}),
            **s.environment,
            **ctx.gpus.environment,
            "VLLM_NO_USAGE_STATS": "1",
            "DO_NOT_TRACK": "1",
            # The weights came in before the start (the prefetch): a restart needs no Hub.
            "HF_HUB_OFFLINE": "1",
        },
        # vLLM reads VLLM_API_KEY itself: on the command line the key would show in logs and `docker inspect`.
        # No HF_TOKEN: the server runs offline from the cache, only the download needs it, and env forces a
        # replacement, so a token rotation would restart every server.
        secret_environment={"VLLM_API_KEY": (ctx.api_key,)} if ctx.api_key is not None else {},
        labels={**ctx.labels, "rocm-inference.gpus": ",".join(map(str, ctx.gpus.host_indices))},
        devices=ctx.gpus.device_paths,
        group_adds=ctx.gpus.group_adds,
        shm_size_mb=s.shm_size_mb,
        stop_grace_seconds=STOP_GRACE_S,
        host=ctx.host,
        image_timeouts=image_timeouts(ctx.pull_timeout),
        container_timeouts=container_timeouts(s.startup_timeout, STOP_GRACE_S),
    )


def native_tools(s: ServerSettings, catalog: Catalog) -> bool:
    """Where the image's recipes name a tool-call parser for the model (vLLM then answers tool_choice "auto")."""
    return parsers_of(s, catalog) is not None


ENGINE = Engine(
    name="vllm",
    component_type="rocm-inference:vllm:VllmServer",
    port=VLLM_PORT,
    path="/v1",
    settings=ServerSettings,
    container=container,
    label="vLLM",
    # hosted_vllm/ is LiteLLM's provider for vLLM's OpenAI server; the rest is the served name.
    litellm_provider="hosted_vllm",
    scrape_job="vllm",
    check=check_server,
    assess=assess_server,
    native_tools=native_tools,
)
