"""The Infinity embeddings server (OpenAI-compatible /embeddings), on the CPU."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

from components.container import ServerArgs, Service, ServiceSpec
from components.settings import EmbeddingsSettings

# Infinity's default port; its image's entrypoint is `infinity_emb` and it sets HF_HOME=/app/.cache/huggingface.
INFINITY_PORT = 7997
INFINITY_CACHE_PATH = "/app/.cache"


def infinity_command(s: EmbeddingsSettings) -> list[str]:
    """Arguments to the image's `infinity_emb` entrypoint."""
    cmd = ["v2", "--model-id", s.model, "--device", s.device, "--engine", s.engine, "--port", str(INFINITY_PORT)]
    if s.batch_size is not None:
        cmd += ["--batch-size", str(s.batch_size)]
    return cmd


@dataclass(frozen=True, kw_only=True)
class EmbeddingsServerArgs(ServerArgs):
    settings: EmbeddingsSettings


class EmbeddingsServer(Service):
    def __init__(self, name: str, args: EmbeddingsServerArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("rocm-inference:embeddings:EmbeddingsServer", name, None, opts)
        s = args.settings
        spec = ServiceSpec(
            image=s.image,
            container_name=s.container_name,
            command=infinity_command(s),
            internal_port=INFINITY_PORT,
            external_port=s.port,
            bind=args.bind,
            cache_volume=s.volume_name,
            cache_path=INFINITY_CACHE_PATH,
            startup_timeout=s.startup_timeout,
            pull_timeout=args.pull_timeout,
            health_interval=s.health_interval,
            networks=args.networks,
            environment={**s.environment, "DO_NOT_TRACK": "1", "INFINITY_ANONYMOUS_USAGE_STATS": "false"},
            secret_environment={"HF_TOKEN": args.hf_token, "INFINITY_API_KEY": args.api_key},
            labels=dict(args.labels),
            depends_on=args.depends_on,
            host=args.host,
        )
        self._serve(name, spec, args, s.model)
