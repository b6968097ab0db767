"""The vLLM OpenAI-compatible server, tensor parallel across the GPUs it is given."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

from components.container import Prefetch, ServerArgs, Service, ServiceSpec
from components.gpus import GpuDevices
from components.planning.health import progress_check
from components.settings import ServerSettings

# vLLM's OpenAI server listens on 8000 by default; the image's python serves the healthcheck.
VLLM_PORT = 8000
# The image's HF cache: HF_HOME defaults to ~/.cache/huggingface and the server runs as root.
VLLM_CACHE_PATH = "/root/.cache/huggingface"


def vllm_command(s: ServerSettings) -> list[str]:
    """The full command line (the gfx906 image has no entrypoint that takes arguments)."""
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
    if s.max_num_seqs is not None:
        cmd += ["--max-num-seqs", str(s.max_num_seqs)]
    if s.max_num_batched_tokens is not None:
        cmd += ["--max-num-batched-tokens", str(s.max_num_batched_tokens)]
    return cmd


def download_command(s: ServerSettings) -> list[str]:
    """The model download, with the image's own huggingface_hub (which CLI the image has is unverified:
    huggingface-cli is gone in huggingface_hub 1.0, `hf` exists from 0.34), into the server's cache."""
    code = (
        "from huggingface_hub import snapshot_download;"
        f"print(snapshot_download(repo_id={s.model!r}, revision={s.model_revision!r}))"
    )
    # Stopped at its own deadline, inside the provider's create timeout (download_timeout + a margin):
    # a download the provider gave up waiting for would otherwise go on filling the cache unseen.
    return ["timeout", "-k", "30", str(s.download_timeout), "python3", "-c", code]


@dataclass(frozen=True, kw_only=True)
class VllmServerArgs(ServerArgs):
    settings: ServerSettings
    devices: GpuDevices
    # Seconds without progress while holding requests before the server counts as hung (components/planning/health.py).
    stall_seconds: int


class VllmServer(Service):
    def __init__(self, name: str, args: VllmServerArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("rocm-inference:vllm:VllmServer", name, None, opts)
        s = args.settings
        spec = ServiceSpec(
            image=s.image,
            container_name=s.container_name or name,
            command=vllm_command(s),
            internal_port=VLLM_PORT,
            external_port=s.port,
            bind=args.bind,
            cache_volume=s.volume_name,
            cache_path=VLLM_CACHE_PATH,
            startup_timeout=s.startup_timeout,
            pull_timeout=args.pull_timeout,
            health_interval=s.health_interval,
            health_check=["CMD", "python3", "-c", progress_check(VLLM_PORT, args.stall_seconds)],
            init=True,
            prefetch=Prefetch(
                command=download_command(s),
                timeout_s=s.download_timeout,
                environment={"HF_HUB_DISABLE_PROGRESS_BARS": "1", "DO_NOT_TRACK": "1"},
                secret_environment={"HF_TOKEN": args.hf_token},
            ),
            networks=args.networks,
            environment={
                **s.environment,
                **args.devices.environment,
                "VLLM_NO_USAGE_STATS": "1",
                "DO_NOT_TRACK": "1",
                # The weights came in before the start (the prefetch): a restart needs no Hub.
                "HF_HUB_OFFLINE": "1",
            },
            # vLLM reads VLLM_API_KEY itself: on the command line the key would show in logs and `docker inspect`.
            # No HF_TOKEN: the server runs offline from the cache, only the download needs it, and env forces a
            # replacement, so a token rotation would restart every server.
            secret_environment={"VLLM_API_KEY": args.api_key},
            labels={**args.labels, "rocm-inference.gpus": ",".join(map(str, args.devices.host_indices))},
            devices=args.devices.devices,
            group_adds=args.devices.group_adds,
            shm_size_mb=s.shm_size_mb,
            stop_grace_seconds=60,
            depends_on=args.depends_on,
            host=args.host,
        )
        self._serve(name, spec, args, s.name_served, "/v1")
