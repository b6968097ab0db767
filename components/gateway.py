"""The LiteLLM gateway: one OpenAI endpoint and one key in front of every server of the stack."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pulumi

from components.container import ServerArgs, Service, ServiceSpec
from components.planning.catalog import dump_yaml
from components.planning.gateway import CONFIG_PATH, GATEWAY_PORT, MASTER_KEY_ENV
from components.settings import GatewaySettings


@dataclass(frozen=True, kw_only=True)
class GatewayArgs(ServerArgs):
    settings: GatewaySettings
    config: Mapping[str, object]  # LiteLLM's config.yaml, with no secret in it (keys are os.environ/NAME)
    backend_keys: Mapping[str, pulumi.Output[str]] = field(default_factory=dict)  # env name -> key


class Gateway(Service):
    def __init__(self, name: str, args: GatewayArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("rocm-inference:gateway:Gateway", name, None, opts)
        s = args.settings
        spec = ServiceSpec(
            image=s.image,
            container_name=s.container_name,
            # The image's entrypoint runs the litellm CLI with these arguments.
            command=["--config", CONFIG_PATH, "--port", str(GATEWAY_PORT)],
            internal_port=GATEWAY_PORT,
            # Answers without a key once the proxy serves (LiteLLM docs, proxy/health.md).
            health_path="/health/readiness",
            external_port=s.port,
            bind=args.bind,
            startup_timeout=s.startup_timeout,
            pull_timeout=args.pull_timeout,
            health_interval=s.health_interval,
            networks=args.networks,
            uploads={CONFIG_PATH: dump_yaml(dict(args.config), sort_keys=False)},
            # Without LITELLM_LOCAL_MODEL_COST_MAP the proxy fetches its cost map from the internet at every start.
            environment={**s.environment, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "DO_NOT_TRACK": "1"},
            secret_environment={MASTER_KEY_ENV: args.api_key, **args.backend_keys},
            labels=dict(args.labels),
            stop_grace_seconds=30,
            depends_on=args.depends_on,
            start_after=args.start_after,
            host=args.host,
        )
        self._serve(name, spec, args, "", "/v1")
