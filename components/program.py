"""The whole deployment of one stack: settings in, components out. Shared by `pulumi up` and the plan.

A stack is a fleet: each host gets its RocmHost (its own Docker provider and preflight), each server
its VllmServer under that host's provider, and the embeddings server and the gateway run on the
hosts they name. The single-host form is the same fleet with one host named `host` and one server
named `vllm`, so its resources keep their names.
"""

from __future__ import annotations

import socket
import struct
from pathlib import Path
from typing import Any

import pulumi
import pulumi_docker as docker
import pulumi_random as random

from components.chat_ui import ChatUi, ChatUiArgs
from components.embeddings import EmbeddingsServer, EmbeddingsServerArgs
from components.gateway import Gateway, GatewayArgs
from components.host import PreflightArgs, RocmHost, RocmHostArgs
from components.monitoring import Monitoring, MonitoringArgs
from components.planning import chat_ui as chat_ui_plan
from components.planning.catalog import load_catalog
from components.planning.gateway import backend_key_env, litellm_config
from components.planning.monitoring import alertmanager_config, grafana_files, prometheus_config, rules_text
from components.planning.preflight import preflight_spec, script_text
from components.planning.rules import check_stack, server_contexts, server_stall_seconds
from components.settings import Check, LoadedStack, Problem, StackConfigError, StackSettings
from components.settings.pulumi_config import Secrets, load_from_pulumi
from components.vllm import VllmServer, VllmServerArgs

# Everything a stack must pass beyond its own structure, for `pulumi up` and the plan alike.
CHECKS = (check_stack,)
BACKEND_KEY_LENGTH = 40


def _backend_key(name: str, given: pulumi.Output[str] | None, generate: bool) -> pulumi.Output[str] | None:
    """A server's own key: the stack's, else (behind a gateway, so no server is ever open) a generated one."""
    if given is not None or not generate:
        return given
    key = random.RandomPassword(f"{name}-api-key", length=BACKEND_KEY_LENGTH, special=False)
    return pulumi.Output.secret(key.result)


def deploy(loaded: LoadedStack, secrets: Secrets, project: str, stack: str) -> dict[str, pulumi.Input[Any]]:
    """Build the stack's components; returns the stack outputs."""
    s = loaded.settings
    for warning in loaded.warnings:
        pulumi.log.warn(warning)
    labels = {"rocm-inference.project": project, "rocm-inference.stack": stack}
    catalog = load_catalog()
    script = script_text()
    hosts: dict[str, RocmHost] = {}
    for name, h in s.hosts.items():
        preflight = None
        if h.preflight:
            spec = preflight_spec(s, name, catalog, project, stack)
            preflight = PreflightArgs(spec.command(), script, spec.triggers(script))
        hosts[name] = RocmHost(
            name, RocmHostArgs(settings=h, preflight=preflight, ssh_private_key=secrets.ssh_private_key)
        )
    ui = chat_ui_plan.plan(s) if s.chat_ui is not None else None
    callers = {
        s.gateway.host if s.gateway is not None else None,
        s.monitoring.host if s.monitoring is not None else None,
        s.chat_ui.host if s.chat_ui is not None and ui is not None and ui.same_host else None,
    }
    # The gateway, Prometheus and the chat UI reach the services of their own host by container name, on a
    # network of the stack's on that host (no host port involved); other hosts' by address and published port.
    networks = {
        h: hosts[h].network(f"{h}-network", f"{project}-{stack}")
        # One per host, however many of the stack's callers share it (two would be one URN twice).
        for h in sorted({h for h in callers if h is not None})
    }

    def where(host: str | None) -> dict[str, Any]:
        h = hosts[host or ""]
        return {
            "provider": h.provider,
            "shell": h.shell,
            "host": host or "",
            "address": h.settings.address,
            "bind": h.settings.bind,
            "pull_timeout": h.settings.pull_timeout,
            "hf_token": secrets.hf_token,
            "labels": labels,
            "networks": [networks[host].name] if host in networks else [],
            # Nothing is pulled or started on a host before its preflight passed.
            "depends_on": [h.preflight] if h.preflight else [],
        }

    behind_gateway = s.gateway is not None
    contexts = server_contexts(s)
    keys: dict[str, pulumi.Output[str]] = {}
    servers: dict[str, VllmServer] = {}
    for name, srv in s.servers.items():
        key = _backend_key(name, secrets.server_api_keys.get(name) or secrets.vllm_api_key, behind_gateway)
        if key is not None:
            keys[name] = key
        servers[name] = VllmServer(
            name,
            VllmServerArgs(
                settings=srv,
                devices=hosts[srv.host or ""].gpu_devices(f"{name}-gpus", srv.gpus),
                api_key=key,
                secret_environment=secrets.environment.get(f"servers.{name}", {}),
                stall_seconds=server_stall_seconds(contexts[name], catalog),
                **where(srv.host),
            ),
        )
    embeddings = None
    if s.embeddings is not None:
        key = _backend_key("embeddings", secrets.embeddings_api_key, behind_gateway)
        if key is not None:
            keys["embeddings"] = key
        embeddings = EmbeddingsServer(
            "embeddings",
            EmbeddingsServerArgs(
                settings=s.embeddings,
                api_key=key,
                secret_environment=secrets.environment.get("embeddings", {}),
                **where(s.embeddings.host),
            ),
        )
    gateway = None
    if s.gateway is not None:
        gateway_where = where(s.gateway.host) | {"hf_token": None}
        # It routes to servers that are up: its container starts after them, so `pulumi up` ends with one endpoint
        # that answers (a component as a dependency stands for all its children); its image is pulled meanwhile.
        gateway_where["start_after"] = [*servers.values(), *([embeddings] if embeddings else [])]
        gateway = Gateway(
            "gateway",
            GatewayArgs(
                settings=s.gateway,
                config=litellm_config(s),
                api_key=secrets.gateway_api_key,
                secret_environment=secrets.environment.get("gateway", {}),
                backend_keys={backend_key_env(service): key for service, key in keys.items()},
                **gateway_where,
            ),
        )
    outputs = _outputs(s, servers, embeddings, gateway, keys, secrets)
    if s.chat_ui is not None and ui is not None:
        # After the endpoint it chats through and the embeddings it files documents with.
        endpoint: list[pulumi.Resource] = [gateway] if gateway is not None else list(servers.values())
        outputs |= _chat_ui(
            s, ui, where(s.chat_ui.host), [*endpoint, *([embeddings] if embeddings else [])], keys, secrets
        )
    if s.monitoring is not None:
        outputs |= _monitoring(s, hosts, networks, labels, secrets)
    return outputs


def _chat_ui(
    s: StackSettings,
    ui: chat_ui_plan.ChatUiPlan,
    here: dict[str, Any],
    after: list[pulumi.Resource],
    keys: dict[str, pulumi.Output[str]],
    secrets: Secrets,
) -> dict[str, pulumi.Input[Any]]:
    assert s.chat_ui is not None
    # Open WebUI signs sessions with this key: generated once and kept in state, so a replaced container
    # signs nobody out (left unset, the image writes one outside its data volume: start.sh L31-50).
    session_key = random.RandomPassword("chat-ui-secret-key", length=48, special=False)
    parts: dict[str, pulumi.Output[str]] = {chat_ui_plan.SECRET_KEY: pulumi.Output.secret(session_key.result)}
    password = None
    if s.chat_ui.login:
        password = secrets.chat_ui_admin_password or pulumi.Output.secret(
            random.RandomPassword("chat-ui-admin-password", length=24, special=False).result
        )
        parts[chat_ui_plan.ADMIN_PASSWORD] = password
    if secrets.gateway_api_key is not None:
        parts[chat_ui_plan.GATEWAY_KEY] = secrets.gateway_api_key
    if "embeddings" in keys:
        parts[chat_ui_plan.EMBEDDINGS_KEY] = keys["embeddings"]
    parts |= {chat_ui_plan.server_key(name): key for name, key in keys.items() if name in s.servers}
    chat = ChatUi(
        "chat-ui",
        ChatUiArgs(
            settings=s.chat_ui,
            plan=ui,
            secret_parts=parts,
            secret_environment=secrets.environment.get("chat_ui", {}),
            # Its container starts once the endpoint and the embeddings serve; its image is pulled meanwhile.
            **(here | {"hf_token": None, "start_after": after}),
        ),
    )
    out: dict[str, pulumi.Input[Any]] = {"chat_ui_url": chat.url, "chat_ui_container": chat.container_name}
    if password is not None:
        out |= {"chat_ui_admin_email": s.chat_ui.admin_email, "chat_ui_admin_password": password}
    return out


def _monitoring(
    s: StackSettings,
    hosts: dict[str, RocmHost],
    networks: dict[str, docker.Network],
    labels: dict[str, str],
    secrets: Secrets,
) -> dict[str, pulumi.Input[Any]]:
    assert s.monitoring is not None
    # Scrapes cross hosts, so node-exporter answers only with basic auth; Prometheus has the password.
    node_password = random.RandomPassword("node-exporter-password", length=32, special=False)
    grafana_password = secrets.grafana_admin_password or pulumi.Output.secret(
        random.RandomPassword("grafana-admin-password", length=24, special=False).result
    )
    monitoring = Monitoring(
        "monitoring",
        MonitoringArgs(
            settings=s.monitoring,
            hosts=hosts,
            prometheus_config=prometheus_config(s),
            alertmanager_config=alertmanager_config(s) if s.monitoring.alertmanager else None,
            grafana_files=grafana_files(s),
            rules=rules_text(),
            node_exporter_password=pulumi.Output.secret(node_password.result),
            node_exporter_password_hash=pulumi.Output.secret(node_password.bcrypt_hash),
            grafana_admin_password=grafana_password,
            gateway_api_key=secrets.gateway_api_key if s.gateway is not None else None,
            alert_webhook_url=secrets.alert_webhook_url,
            networks={h: [n.name] for h, n in networks.items()},
            labels=labels,
            depends_on={name: [h.preflight] for name, h in hosts.items() if h.preflight},
        ),
    )
    return {
        "prometheus_url": monitoring.prometheus_url,
        "grafana_url": monitoring.grafana_url,
        "grafana_admin_password": grafana_password,
    }


def _outputs(
    s: StackSettings,
    servers: dict[str, VllmServer],
    embeddings: EmbeddingsServer | None,
    gateway: Gateway | None,
    keys: dict[str, pulumi.Output[str]],
    secrets: Secrets,
) -> dict[str, pulumi.Input[Any]]:
    """The stack outputs. The single-host form keeps its flat outputs; every form lists each server.

    The keys stay secrets in the outputs too; `components.verify` reads them to test they are enforced.
    """
    out: dict[str, pulumi.Input[Any]] = {
        "servers": {
            name: {
                "host": s.servers[name].host,
                "base_url": v.base_url,
                "model": v.model,
                "max_model_len": s.servers[name].max_model_len,
                "container": v.container_name,
                **({"api_key": keys[name]} if name in keys else {}),
            }
            for name, v in servers.items()
        }
    }
    if s.single:
        v = servers["vllm"]
        out |= {
            "openai_base_url": v.base_url,
            "served_model": v.model,
            "max_model_len": s.servers["vllm"].max_model_len,
            "vllm_container": v.container_name,
        }
        if "vllm" in keys:
            out["vllm_api_key"] = keys["vllm"]
    if embeddings is not None:
        out |= {
            "embeddings_base_url": embeddings.base_url,
            "embeddings_model": embeddings.model,
            "embeddings_container": embeddings.container_name,
        }
        if "embeddings" in keys:
            out["embeddings_api_key"] = keys["embeddings"]
    if gateway is not None:
        # One OpenAI base URL and one key for chat and embeddings, routed by model name.
        out |= {"openai_base_url": gateway.base_url, "gateway_container": gateway.container_name}
        if secrets.gateway_api_key is not None:
            out["gateway_api_key"] = secrets.gateway_api_key
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
        loaded, secrets = load_from_pulumi(stack_file, (*CHECKS, ssh_auth_check(ssh_agent, answers)))
    except StackConfigError as exc:
        # RunError ends the program with this message and no traceback.
        raise pulumi.RunError(str(exc)) from None
    for key, value in deploy(loaded, secrets, pulumi.get_project(), pulumi.get_stack()).items():
        pulumi.export(key, value)
