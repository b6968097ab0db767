"""The ROCm host: its Docker provider (local socket or ssh://), GPU inventory and group ids."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_command as command
import pulumi_docker as docker

from components.gpus import GpuDevices
from components.planning.deployment import Gpus, Host, Run


def on_machine(provider: docker.Provider) -> pulumi.ResourceOptions:
    """Replaced whenever this host's provider is: when the host's `docker` points at another machine."""
    return pulumi.ResourceOptions(replace_with=[provider])


@dataclass(frozen=True)
class RocmHostArgs:
    plan: Host
    ssh_private_key: pulumi.Output[str] | None = None


@dataclass(frozen=True)
class HostShell:
    """Where a command that drives the host's Docker runs: here, with DOCKER_HOST set to the host's Docker
    URL (a local socket, or an ssh:// host through the docker CLI's own OpenSSH, as pulumi-docker connects);
    or on the host itself over pulumi-command's SSH client, where the stack pins its host key."""

    docker_host: str
    connection: command.remote.ConnectionArgs | None = None

    def command(
        self,
        name: str,
        create: pulumi.Input[str],
        *,
        run: Run,
        stdin: pulumi.Input[str] | None = None,
        triggers: Sequence[pulumi.Input[object]] = (),
        update: str | None = None,
        opts: pulumi.ResourceOptions,
    ) -> command.local.Command | command.remote.Command:
        """A command whose failing create leaves nothing in state, so the next `pulumi up` runs it again
        (pulumi-command v1.2.1 returns no partial state: pulumi-go-provider v1.3.0 infer/resource.go L1291-1292).

        It stops itself at its deadline over SSH (`timeout` in the host's shell: components/planning/timing.py
        says why), and its custom timeouts lie beyond that (both the plan's `run`). Its stdout and stderr are secret outputs, so the
        state never holds them in plain text; `log` is the one stream the engine shows while it runs ("stderr",
        "stdout" or "none"; local/base.go L26, remote/command.go L45). A failed run's error carries both
        streams whatever `log` says (local/commandOutputs.go L59, remote/commandOutputs.go L101)."""
        own = pulumi.ResourceOptions(
            additional_secret_outputs=["stdout", "stderr"],
            custom_timeouts=pulumi.CustomTimeouts(**vars(run.timeouts)),
        )
        if self.connection is not None:
            return command.remote.Command(
                name,
                connection=self.connection,
                create=pulumi.Output.from_input(create).apply(run.wrap),
                update=update,
                stdin=stdin,
                triggers=list(triggers),
                logging=command.remote.Logging(run.log),
                opts=pulumi.ResourceOptions.merge(opts, own),
            )
        return command.local.Command(
            name,
            create=create,
            update=update,
            stdin=stdin,
            environment={"DOCKER_HOST": self.docker_host},
            triggers=list(triggers),
            logging=command.local.Logging(run.log),
            opts=pulumi.ResourceOptions.merge(opts, own),
        )


class RocmHost(pulumi.ComponentResource):
    provider: docker.Provider
    plan: Host
    preflight: command.local.Command | command.remote.Command | None
    shell: HostShell

    def __init__(self, name: str, args: RocmHostArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("rocm-inference:host:RocmHost", name, None, opts)
        self.plan = s = args.plan
        # The machine is what the provider's replacement trigger sees: pointing `docker` at another machine
        # replaces the provider, and with it everything on this host (each takes `replace_with` it, on_host):
        # a provider whose config changes is only updated (pulumi-docker's DiffConfig forces nothing), and its
        # resources would be recorded under the new machine with nothing deployed there. The old ones are
        # deleted through the old provider, on the old machine (pulumi/pulumi v3.259.0
        # pkg/resource/deploy/step_generator.go L2893-2906: a resource is replaced when one in its
        # ReplaceWith list is; L3626-3640: a trigger that was unset replaces nothing, so a stack deployed
        # before the trigger existed keeps everything).
        self.provider = docker.Provider(
            f"{name}-docker",
            host=s.docker,
            ssh_opts=list(s.ssh_opts) or None,
            opts=pulumi.ResourceOptions(parent=self, replacement_trigger=s.docker),
        )
        self.shell = HostShell(s.docker, self._connection(args.ssh_private_key))
        self.preflight = self._preflight(name) if s.preflight else None
        self.register_outputs(dict(s.outputs))

    def _connection(self, private_key: pulumi.Output[str] | None) -> command.remote.ConnectionArgs | None:
        """pulumi-command's SSH connection to an ssh:// host whose key the stack pins (the plan's): without a
        pinned key there is none (a command then runs here, through the docker CLI)."""
        c = self.plan.connection
        if c is None:
            return None
        return command.remote.ConnectionArgs(
            host=c.host, user=c.user, port=c.port, host_key=c.host_key, private_key=private_key
        )

    def on_host(self, opts: pulumi.ResourceOptions | None = None) -> pulumi.ResourceOptions:
        """Options for a resource that lives on this host's machine: it is replaced with the provider, i.e. when
        `docker` points at another machine (see the provider's replacement trigger)."""
        return pulumi.ResourceOptions.merge(opts or pulumi.ResourceOptions(), on_machine(self.provider))

    def _preflight(self, name: str) -> command.local.Command | command.remote.Command:
        """The check runs where Docker runs: here for a local socket, over SSH for an ssh:// host (the same user,
        host and port as Docker's ssh:// URL, and the host key pinned: the settings require both, since
        pulumi-command's SSH client reads no ~/.ssh/config and no known_hosts). Its verdict line is its
        stdout, which stays in the log."""
        p = self.plan.preflight
        assert p is not None
        assert not self.plan.remote or self.shell.connection is not None, (
            "the settings require ssh_host_key for an ssh:// host's preflight"
        )
        return self.shell.command(
            f"{name}-preflight",
            p.command,
            run=p.run,
            stdin=p.script,
            triggers=list(p.triggers),
            opts=self.on_host(pulumi.ResourceOptions(parent=self)),
        )

    def network(self, name: str) -> docker.Network:
        """A user-defined bridge network on this host: containers on it reach each other by name."""
        assert self.plan.network is not None, "the plan gives a host a network where a caller runs"
        # Delete-first: it has a fixed name, so a replacement beside the old one would clash on one machine.
        return docker.Network(
            name,
            name=self.plan.network,
            driver="bridge",
            opts=self.on_host(pulumi.ResourceOptions(parent=self, provider=self.provider, delete_before_replace=True)),
        )

    def gpu_devices(self, plan: Gpus) -> GpuDevices:
        """The device mapping of a server's GPUs, parented to this host."""
        return GpuDevices(plan.name, plan, pulumi.ResourceOptions(parent=self))
