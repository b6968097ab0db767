"""The whole deployment of one stack: settings in, components out. Shared by `pulumi up` and the plan."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pulumi

from components.embeddings import EmbeddingsServer, EmbeddingsServerArgs
from components.host import PreflightArgs, RocmHost, RocmHostArgs
from components.planning.catalog import load_catalog
from components.planning.preflight import preflight_spec, script_text
from components.planning.rules import check_stack
from components.settings import Check, LoadedStack, Problem, StackConfigError, StackSettings
from components.settings.pulumi_config import Secrets, load_from_pulumi
from components.vllm import VllmServer, VllmServerArgs

# Everything a stack must pass beyond its own structure, for `pulumi up` and the plan alike.
CHECKS = (check_stack,)


def deploy(loaded: LoadedStack, secrets: Secrets, project: str, stack: str) -> dict[str, pulumi.Input[Any]]:
    """Build the stack's components; returns the stack outputs."""
    s = loaded.settings
    for warning in loaded.warnings:
        pulumi.log.warn(warning)
    labels = {"rocm-inference.project": project, "rocm-inference.stack": stack}
    preflight = None
    if s.host.preflight:
        spec = preflight_spec(s, load_catalog(), project, stack)
        script = script_text()
        preflight = PreflightArgs(spec.command(), script, spec.triggers(script), secrets.ssh_private_key)
    host = RocmHost("host", RocmHostArgs(settings=s.host, preflight=preflight))
    # Where the servers run and what they are given; nothing is pulled before the preflight passed.
    common: dict[str, Any] = {
        "provider": host.provider,
        "address": s.host.address,
        "bind": s.host.bind,
        "pull_timeout": s.host.pull_timeout,
        "hf_token": secrets.hf_token,
        "labels": labels,
        "depends_on": [host.preflight] if host.preflight else [],
    }
    vllm = VllmServer(
        "vllm",
        VllmServerArgs(
            settings=s.vllm,
            devices=host.gpu_devices("vllm-gpus", s.vllm.gpus),
            api_key=secrets.vllm_api_key,
            **common,
        ),
    )
    outputs: dict[str, pulumi.Input[Any]] = {
        "openai_base_url": vllm.base_url,
        "served_model": vllm.model,
        "max_model_len": s.vllm.max_model_len,
        "vllm_container": vllm.container_name,
    }
    # The keys stay secrets in the outputs too; `components.tools.verify` reads them to test they are enforced.
    if secrets.vllm_api_key is not None:
        outputs["vllm_api_key"] = secrets.vllm_api_key
    if s.embeddings is not None:
        embeddings = EmbeddingsServer(
            "embeddings",
            EmbeddingsServerArgs(settings=s.embeddings, api_key=secrets.embeddings_api_key, **common),
        )
        outputs |= {
            "embeddings_base_url": embeddings.base_url,
            "embeddings_model": embeddings.model,
            "embeddings_container": embeddings.container_name,
        }
        if secrets.embeddings_api_key is not None:
            outputs["embeddings_api_key"] = secrets.embeddings_api_key
    return outputs


def ssh_auth_check(agent: bool) -> Check:
    """An ssh:// host's preflight needs a key or an agent: pulumi-command's SSH client tries
    private_key, then a password, then the agent at SSH_AUTH_SOCK, and reads no key files
    (pulumi-command v1.2.1 provider/pkg/provider/remote/connection.go L106-145)."""

    def check(s: StackSettings) -> tuple[list[Problem], list[Problem]]:
        if agent or s.has_secret("ssh_private_key") or not (s.host.is_remote and s.host.preflight):
            return [], []
        return [
            Problem(
                "host.docker",
                f"is {s.host.docker!r}: the preflight logs in with pulumi-command's own SSH client, which needs "
                "rocm-inference:ssh_private_key (pulumi config set --secret rocm-inference:ssh_private_key < KEYFILE) "
                "or a running SSH agent (SSH_AUTH_SOCK), and neither is there",
            )
        ], []

    return check


def run(stack_file: Path, ssh_agent: bool) -> None:
    """The Pulumi program: validate the stack (nothing is registered when it is invalid), deploy, export.

    `ssh_agent`: whether an SSH agent is reachable (SSH_AUTH_SOCK), for an ssh:// host's preflight.
    """
    try:
        loaded, secrets = load_from_pulumi(stack_file, (*CHECKS, ssh_auth_check(ssh_agent)))
    except StackConfigError as exc:
        # RunError ends the program with this message and no traceback.
        raise pulumi.RunError(str(exc)) from None
    for key, value in deploy(loaded, secrets, pulumi.get_project(), pulumi.get_stack()).items():
        pulumi.export(key, value)
