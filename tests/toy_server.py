"""A toy serving engine, the way a new one joins the project: one module holding its command, its health check and
how callers reach it, registered by name (components/planning/engines). tests/test_seam.py plans a stack with it."""

from __future__ import annotations

from components.planning.catalog import Catalog
from components.planning.engines import Engine, ServiceContext
from components.planning.service import Container, Secret, health_check
from components.planning.timing import container_timeouts, image_timeouts
from components.settings import Problem, ServerSettings, StackSettings

TOY_PORT = 9400
TOY_HEALTH = ("CMD", "toy-health", "--port", str(TOY_PORT))


def toy_command(s: ServerSettings) -> tuple[str, ...]:
    return ("toy-serve", "--model", s.model, "--port", str(TOY_PORT), "--context", str(s.max_model_len))


def container(ctx: ServiceContext) -> Container:
    s: ServerSettings = ctx.settings
    assert ctx.gpus is not None
    key: Secret | None = ctx.api_key
    return Container(
        image=s.image,
        container_name=s.container_name or ctx.name,
        command=toy_command(s),
        internal_port=TOY_PORT,
        external_port=s.port,
        bind=ctx.bind,
        startup_timeout=s.startup_timeout,
        health=health_check(TOY_PORT, s.health_interval, s.startup_timeout, test=TOY_HEALTH),
        environment={**s.environment, **ctx.gpus.environment},
        secret_environment={"TOY_API_KEY": (key,)} if key is not None else {},
        labels=dict(ctx.labels),
        devices=ctx.gpus.device_paths,
        group_adds=ctx.gpus.group_adds,
        host=ctx.host,
        image_timeouts=image_timeouts(ctx.pull_timeout),
        container_timeouts=container_timeouts(s.startup_timeout, 30),
    )


def check(s: StackSettings, name: str, catalog: Catalog) -> tuple[list[Problem], list[Problem]]:
    """Its own rule: a toy serves at most 4096 tokens of context."""
    srv = s.servers[name]
    if srv.max_model_len > 4096:
        return [Problem(f"servers.{name}.max_model_len", f"is {srv.max_model_len}: a toy serves at most 4096")], []
    return [], []


TOY = Engine(
    name="toy",
    component_type="rocm-inference:toy:ToyServer",
    port=TOY_PORT,
    path="/v1",
    settings=ServerSettings,
    container=container,
    label="Toy",
    litellm_provider="openai",
    scrape_job="toy",
    check=check,
)
