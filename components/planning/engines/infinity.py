"""The Infinity embeddings server (OpenAI-compatible /embeddings), on the CPU: the engine of the stack's
`rocm-inference:embeddings` (EmbeddingsSettings)."""

from __future__ import annotations

from components.planning.engines.base import Engine, ServiceContext
from components.planning.service import Container, Secret, SecretText, health_check
from components.planning.timing import container_timeouts, image_timeouts
from components.settings import EmbeddingsSettings

# Infinity's default port; its image's entrypoint is `infinity_emb` and it sets HF_HOME=/app/.cache/huggingface.
INFINITY_PORT = 7997
INFINITY_CACHE_PATH = "/app/.cache"
STOP_GRACE_S = 30


def infinity_command(s: EmbeddingsSettings) -> tuple[str, ...]:
    """Arguments to the image's `infinity_emb` entrypoint."""
    cmd = ["v2", "--model-id", s.model, "--device", s.device, "--engine", s.engine, "--port", str(INFINITY_PORT)]
    if s.batch_size is not None:
        cmd += ["--batch-size", str(s.batch_size)]
    return tuple(cmd)


def container(ctx: ServiceContext) -> Container:
    s: EmbeddingsSettings = ctx.settings
    secret: dict[str, SecretText] = {"HF_TOKEN": (Secret("hf_token"),)} if ctx.stack.has_secret("hf_token") else {}
    if ctx.api_key is not None:
        secret["INFINITY_API_KEY"] = (ctx.api_key,)
    return Container(
        image=s.image,
        container_name=s.container_name,
        command=infinity_command(s),
        internal_port=INFINITY_PORT,
        external_port=s.port,
        bind=ctx.bind,
        cache_volume=s.volume_name,
        cache_path=INFINITY_CACHE_PATH,
        startup_timeout=s.startup_timeout,
        health=health_check(INFINITY_PORT, s.health_interval, s.startup_timeout),
        environment={**s.environment, "DO_NOT_TRACK": "1", "INFINITY_ANONYMOUS_USAGE_STATS": "false"},
        secret_environment=secret,
        labels=dict(ctx.labels),
        stop_grace_seconds=STOP_GRACE_S,
        host=ctx.host,
        image_timeouts=image_timeouts(ctx.pull_timeout),
        container_timeouts=container_timeouts(s.startup_timeout, STOP_GRACE_S),
    )


ENGINE = Engine(
    name="infinity",
    component_type="rocm-inference:embeddings:EmbeddingsServer",
    port=INFINITY_PORT,
    path="",
    settings=EmbeddingsSettings,
    container=container,
    label="Infinity",
    # LiteLLM's `infinity/` provider appends `/embeddings` to its api_base
    # (litellm/llms/infinity/embedding/transformation.py).
    litellm_provider="infinity",
    scrape_job="embeddings",
)
