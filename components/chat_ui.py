"""Open WebUI: the chat and document (RAG) page people reach the stack through.

Its container comes from the deployment plan (components/planning/deployment.py, its environment from
components/planning/chat_ui.py: the wiring to the stack's endpoint and embeddings, the accounts, the offline
settings); here each secret of it becomes its Output. Its data directory (users, chats, uploaded documents and
their vectors) lives in a named volume that Pulumi never deletes, like a model cache, so an upgrade or a
replacement keeps everything. It has a login, so it binds like Grafana: on the host's `bind`.
"""

from __future__ import annotations

import pulumi

from components.container import ServerArgs, service_resources


class ChatUi(pulumi.ComponentResource):
    url: pulumi.Output[str]
    container_name: pulumi.Output[str]

    def __init__(self, name: str, args: ServerArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(args.plan.type, name, None, opts)
        res = service_resources(name, args.plan.container, args.wiring, self, args.provider, args.shell)
        self.url = res.url(args.address)
        self.container_name = res.container.name
        self.register_outputs({"url": self.url, "container_name": self.container_name})
