"""Open WebUI: the chat and document (RAG) page people reach the stack through.

Its environment comes from components/planning/chat_ui.py (the wiring to the stack's endpoint and
embeddings, the accounts, the offline settings); here each secret part of it becomes its Output. Its data
directory (users, chats, uploaded documents and their vectors) lives in a named volume that Pulumi never
deletes, like a model cache, so an upgrade or a replacement keeps everything. It has a login, so it binds
like Grafana: on the host's `bind`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pulumi

from components.container import ServerArgs, ServiceSpec, service_resources
from components.planning.chat_ui import CHAT_UI_PORT, DATA_DIR, HEALTH_PATH, ChatUiPlan
from components.planning.secrets import SECRET_ENV_LABEL
from components.settings import ChatUiSettings

AUTH_LABEL = "rocm-inference.auth"


@dataclass(frozen=True, kw_only=True)
class ChatUiArgs(ServerArgs):
    settings: ChatUiSettings
    plan: ChatUiPlan
    # The secret parts the plan's secret variables are made of (admin password, session key, endpoint keys).
    secret_parts: Mapping[str, pulumi.Output[str]] = field(default_factory=dict)


class ChatUi(pulumi.ComponentResource):
    url: pulumi.Output[str]
    container_name: pulumi.Output[str]

    def __init__(self, name: str, args: ChatUiArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("rocm-inference:chat_ui:ChatUi", name, None, opts)
        s = args.settings
        secret_environment: dict[str, pulumi.Output[str] | None] = {
            variable: _joined(parts, args.secret_parts) for variable, parts in args.plan.secret_environment.items()
        }
        # Its login guards its port (the policy pack's wide_ports_need_api_key reads the label); without one it
        # carries none, and a port beyond loopback is a violation (validation refuses that stack before).
        labels = {**args.labels, **({AUTH_LABEL: "login"} if s.login else {})}
        if args.secret_environment:
            # The stack's own secret entries; the label tells the policy pack which names are secrets too.
            secret_environment = {**args.secret_environment, **secret_environment}
            labels[SECRET_ENV_LABEL] = ",".join(sorted(args.secret_environment))
        res = service_resources(
            name,
            ServiceSpec(
                image=s.image,
                container_name=s.container_name,
                command=[],  # the image's own start.sh
                internal_port=CHAT_UI_PORT,
                health_path=HEALTH_PATH,
                external_port=s.port,
                bind=args.bind,
                cache_volume=s.data_volume,
                cache_path=DATA_DIR,
                startup_timeout=s.startup_timeout,
                pull_timeout=args.pull_timeout,
                health_interval=s.health_interval,
                networks=args.networks,
                environment=args.plan.environment,
                secret_environment=secret_environment,
                labels=labels,
                stop_grace_seconds=30,
                depends_on=args.depends_on,
                start_after=args.start_after,
                host=args.host,
            ),
            self,
            args.provider,
            args.shell,
        )
        self.url = res.url(args.address)
        self.container_name = res.container.name
        self.register_outputs({"url": self.url, "container_name": self.container_name})


def _joined(parts: tuple[str | None, ...], values: Mapping[str, pulumi.Output[str]]) -> pulumi.Output[str]:
    """`;`-joined parts, a secret: a part that is None (a server without a key) is an empty entry."""
    pieces: list[pulumi.Input[str]] = []
    for i, part in enumerate(parts):
        if i:
            pieces.append(";")
        pieces.append("" if part is None else values[part])
    return pulumi.Output.secret(pulumi.Output.concat(*pieces))
