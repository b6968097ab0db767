"""The whole deployment of one stack: settings in, components out. Shared by `pulumi up` and the plan.

The stack's settings become one deployment plan (components/planning/deployment.py), and the plan becomes
resources: each host gets its RocmHost (its own Docker provider and preflight), each server its component (its
engine's type) under that host's provider, and the embeddings server, the gateway, the chat UI and monitoring run
on the hosts they name. The single-host form is the same fleet with one host named `host` and one server named
`vllm`, so its resources keep their names.
"""

from __future__ import annotations

import socket
import struct
from pathlib import Path
from typing import Any

import pulumi
import pulumi_docker as docker
import pulumi_random as random

from components.chat_ui import ChatUi
from components.container import Server, ServerArgs, Wiring
from components.host import RocmHost, RocmHostArgs
from components.monitoring import Monitoring, MonitoringArgs
from components.planning.deployment import Deployment, Secret, Service, build_deployment
from components.settings import Check, LoadedStack, Problem, StackConfigError, StackSettings
from components.settings.pulumi_config import Secrets, load_from_pulumi

__all__ = ["agent_answers", "deploy", "deploy_plan", "run", "ssh_auth_check"]


class Vault:
    """Each secret the plan names, as its Output: the stack's own, or a password generated once and kept in state
    (made when the plan first asks for it, before the service that uses it)."""

    def __init__(self, secrets: Secrets) -> None:
        self.secrets = secrets
        self.made: dict[str, random.RandomPassword] = {}

    def generate(self, wanted: tuple[Secret, ...]) -> None:
        for secret in wanted:
            if secret.key not in self.made:
                self.made[secret.key] = random.RandomPassword(secret.key, length=secret.length, special=False)

    def __call__(self, secret: Secret) -> pulumi.Output[str]:
        if not secret.length:
            return self.secrets.get(secret.key)
        password = self.made[secret.key]
        return pulumi.Output.secret(password.bcrypt_hash if secret.part == "bcrypt_hash" else password.result)


def deploy(loaded: LoadedStack, secrets: Secrets, project: str, stack: str) -> dict[str, pulumi.Input[Any]]:
    """Build the stack's components; returns the stack outputs."""
    return deploy_plan(build_deployment(loaded.settings, project, stack, tuple(loaded.warnings), assess=False), secrets)


def deploy_plan(d: Deployment, secrets: Secrets) -> dict[str, pulumi.Input[Any]]:
    """The deployment plan's resources; returns the stack outputs. Nothing here decides: the plan has it all."""
    for warning in d.warnings:
        pulumi.log.warn(warning)
    vault = Vault(secrets)
    hosts = {
        name: RocmHost(name, RocmHostArgs(plan=h, ssh_private_key=secrets.ssh_private_key))
        for name, h in d.hosts.items()
    }
    # One per host, however many of the stack's callers share it (two would be one URN twice).
    networks = {h: hosts[h].network(f"{h}-network") for h in sorted(h for h, p in d.hosts.items() if p.network)}
    made: dict[str, pulumi.Resource] = {}

    def args(service: Service) -> ServerArgs:
        host = hosts[service.host]
        c = service.container
        vault.generate(service.generated)
        wiring = Wiring(
            vault,
            networks=[networks[service.host].name] if c.network else [],
            # Nothing is pulled or started on a host before its preflight passed.
            depends_on=[host.preflight] if host.preflight else [],
            # A component as a dependency stands for all its children.
            start_after=[made[name] for name in c.start_after],
        )
        return ServerArgs(
            plan=service, wiring=wiring, provider=host.provider, shell=host.shell, address=host.plan.address
        )

    servers: dict[str, Server] = {}
    for name, srv in d.servers.items():
        vault.generate(srv.generated)
        if srv.gpus is not None:
            hosts[srv.host].gpu_devices(srv.gpus)
        servers[name] = Server(name, args(srv))
        made[name] = servers[name]
    embeddings = None
    if d.embeddings is not None:
        embeddings = made["embeddings"] = Server("embeddings", args(d.embeddings))
    gateway = None
    if d.gateway is not None:
        gateway = made["gateway"] = Server("gateway", args(d.gateway))
    outputs = _outputs(d, servers, embeddings, gateway, vault)
    if d.chat_ui is not None:
        chat = ChatUi("chat-ui", args(d.chat_ui.service), d.chat_ui.admin_reset)
        outputs |= {"chat_ui_url": chat.url, "chat_ui_container": chat.container_name}
        if d.chat_ui.admin_password is not None:
            outputs |= {
                "chat_ui_admin_email": d.chat_ui.admin_email,
                "chat_ui_admin_password": vault(d.chat_ui.admin_password),
            }
    if d.monitoring is not None:
        outputs |= _monitoring(d, hosts, networks, vault)
    return outputs


def _monitoring(
    d: Deployment, hosts: dict[str, RocmHost], networks: dict[str, docker.Network], vault: Vault
) -> dict[str, pulumi.Input[Any]]:
    assert d.monitoring is not None
    vault.generate(d.monitoring.generated)
    monitoring = Monitoring(
        "monitoring",
        MonitoringArgs(
            plan=d.monitoring,
            hosts=hosts,
            secrets=vault,
            networks={h: [n.name] for h, n in networks.items()},
            depends_on={name: [h.preflight] for name, h in hosts.items() if h.preflight},
        ),
    )
    return {
        "prometheus_url": monitoring.prometheus_url,
        "grafana_url": monitoring.grafana_url,
        "grafana_admin_password": vault(d.monitoring.grafana_admin_password),
    }


def _outputs(
    d: Deployment, servers: dict[str, Server], embeddings: Server | None, gateway: Server | None, vault: Vault
) -> dict[str, pulumi.Input[Any]]:
    """The stack outputs. The single-host form keeps its flat outputs; every form lists each server.

    The keys stay secrets in the outputs too; `components.verify` reads them to test they are enforced.
    """
    keys = {name: vault(p.api_key) for name, p in d.servers.items() if p.api_key is not None}
    out: dict[str, pulumi.Input[Any]] = {
        # Which stack these outputs are: `components.verify STACK` refuses another stack's (its STACK_OUTPUT).
        "stack": {"project": d.project, "stack": d.stack},
        "servers": {
            name: {
                "host": d.servers[name].host,
                "base_url": v.base_url,
                "model": v.model,
                "max_model_len": d.servers[name].max_model_len,
                "container": v.container_name,
                **({"api_key": keys[name]} if name in keys else {}),
            }
            for name, v in servers.items()
        },
    }
    if d.single:
        v = servers["vllm"]
        out |= {
            "openai_base_url": v.base_url,
            "served_model": v.model,
            "max_model_len": d.servers["vllm"].max_model_len,
            "vllm_container": v.container_name,
        }
        if "vllm" in keys:
            out["vllm_api_key"] = keys["vllm"]
    if embeddings is not None and d.embeddings is not None:
        out |= {
            "embeddings_base_url": embeddings.base_url,
            "embeddings_model": embeddings.model,
            "embeddings_container": embeddings.container_name,
        }
        if d.embeddings.api_key is not None:
            out["embeddings_api_key"] = vault(d.embeddings.api_key)
    if gateway is not None:
        # One OpenAI base URL and one key for chat and embeddings, routed by model name.
        out |= {"openai_base_url": gateway.base_url, "gateway_container": gateway.container_name}
        if d.gateway_api_key is not None:
            out["gateway_api_key"] = vault(d.gateway_api_key)
    return out


def agent_answers(socket_path: str) -> bool:
    """Whether an SSH agent answers at this socket: asked for its identities (SSH_AGENTC_REQUEST_IDENTITIES,
    11), it replies SSH_AGENT_IDENTITIES_ANSWER (12) (draft-miller-ssh-agent, "Requesting a list of keys").
    A socket left by an agent that is gone refuses the connection, or is no file at all."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(5)
            conn.connect(socket_path)
            conn.sendall(struct.pack(">IB", 1, 11))
            head = conn.recv(5)
    except OSError:
        return False
    return len(head) == 5 and head[4] == 12


def ssh_auth_check(agent: str | None, answers: bool = True) -> Check:
    """An ssh:// host's preflight needs a key or an agent: pulumi-command's SSH client tries
    private_key, then a password, then the agent at SSH_AUTH_SOCK, and reads no key files
    (pulumi-command v1.2.1 provider/pkg/provider/remote/connection.go L106-145). It dials the agent
    whenever SSH_AUTH_SOCK is set, key or not, and fails the command when nothing answers there
    (L131-144): so an agent that is set but gone is refused too.

    `agent`: SSH_AUTH_SOCK (None when unset); `answers`: whether an agent answers there."""

    def check(s: StackSettings) -> tuple[list[Problem], list[Problem]]:
        # The preflight, and a model download on a host whose key is pinned, log in over SSH.
        remote = {name: h for name, h in s.hosts.items() if h.is_remote and (h.preflight or h.ssh_host_key is not None)}
        if agent is not None and not answers:
            return [
                Problem(
                    f"hosts.{name}.docker",
                    f"is {h.docker!r}, and SSH_AUTH_SOCK is {agent!r}, where no SSH agent answers: pulumi-command's "
                    "SSH client dials it for every remote command, even with rocm-inference:ssh_private_key set, and "
                    'fails. Start the agent again (eval "$(ssh-agent)" && ssh-add), point SSH_AUTH_SOCK at a '
                    "running one, or run pulumi without it (env -u SSH_AUTH_SOCK pulumi up)",
                )
                for name, h in remote.items()
            ], []
        if agent is not None or s.has_secret("ssh_private_key"):
            return [], []
        return [
            Problem(
                f"hosts.{name}.docker",
                f"is {h.docker!r}: the preflight logs in with pulumi-command's own SSH client, which needs "
                "rocm-inference:ssh_private_key (pulumi config set --secret rocm-inference:ssh_private_key < KEYFILE) "
                "or a running SSH agent (SSH_AUTH_SOCK), and neither is there",
            )
            for name, h in remote.items()
        ], []

    return check


def run(stack_file: Path, ssh_agent: str | None) -> None:
    """The Pulumi program: validate the stack (nothing is registered when it is invalid), deploy, export.

    `ssh_agent`: SSH_AUTH_SOCK, for an ssh:// host's preflight (None when unset); it is checked to answer.
    """
    answers = ssh_agent is not None and agent_answers(ssh_agent)
    try:
        loaded, secrets = load_from_pulumi(stack_file, (ssh_auth_check(ssh_agent, answers),))
    except StackConfigError as exc:
        # RunError ends the program with this message and no traceback.
        raise pulumi.RunError(str(exc)) from None
    for key, value in deploy(loaded, secrets, pulumi.get_project(), pulumi.get_stack()).items():
        pulumi.export(key, value)
