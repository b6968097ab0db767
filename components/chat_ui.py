"""Open WebUI: the chat and document (RAG) page people reach the stack through.

Its container comes from the deployment plan (components/planning/deployment.py, its environment from
components/planning/chat_ui.py: the wiring to the stack's endpoint and embeddings, the accounts, the offline
settings); here each secret of it becomes its Output. Its data directory (users, chats, uploaded documents and
their vectors) lives in a named volume that Pulumi never deletes, like a model cache, so an upgrade or a
replacement keeps everything. It has a login, so it binds like Grafana: on the host's `bind`.
"""

from __future__ import annotations

import pulumi

from components.container import OneShot, ServerArgs, ServiceResources, run_once, service_resources
from components.host import on_machine
from components.planning.deployment import OneShotRun


class ChatUi(pulumi.ComponentResource):
    url: pulumi.Output[str]
    container_name: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        args: ServerArgs,
        admin_reset: OneShotRun | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(args.plan.type, name, None, opts)
        res = service_resources(name, args.plan.container, args.wiring, self, args.provider, args.shell)
        if admin_reset is not None:
            self._admin_reset(name, admin_reset, res, args)
        self.url = res.url(args.address)
        self.container_name = res.container.name
        self.register_outputs({"url": self.url, "container_name": self.container_name})

    def _admin_reset(self, name: str, run: OneShotRun, res: ServiceResources, args: ServerArgs) -> None:
        """The stack's admin password set in the data volume once the UI is up, so the output password signs in
        after a destroy and up too (the volume kept the old admin; components/planning/chat_ui.py says how). A new
        password changes only its stdin, which runs it again; a failed run leaves nothing in state."""
        assert res.volume is not None, "Open WebUI keeps its data in a volume"
        run_once(
            f"{name}-admin-reset",
            args.shell,
            OneShot(
                name=run.name,
                image=res.image.image_id,
                entrypoint=list(run.entrypoint),
                command=list(run.command),
                volume=res.volume.name,
                path=run.path,
                environment=dict(run.environment),
                secret_environment=args.wiring.environment(run.secret_environment),
                run=run.run,
            ),
            pulumi.ResourceOptions.merge(
                pulumi.ResourceOptions(
                    parent=self,
                    # After the UI is up: its database migrated, the admin created on a first start.
                    depends_on=[res.container, *args.wiring.depends_on],
                    replacement_trigger=run.host or None,
                ),
                on_machine(args.provider),
            ),
        )
