"""The rules of the rocm-inference policy pack, as plain functions of a resource's type, inputs and options.

Inputs are as Pulumi sends them (camelCase: hostPath, groupAdds). Each rule returns the violations
it finds (empty when the resource complies). Kept free of pulumi_policy so they test as plain code.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from components.planning.catalog import load_catalog, parse_reference
from components.planning.secrets import (
    PROJECT_SECRET_ENV,
    SECRET_ENV_LABEL,
    credential_in_url,
    credential_in_words,
    secret_in_environment,
)

CONTAINER = "docker:index/container:Container"
REMOTE_IMAGE = "docker:index/remoteImage:RemoteImage"
DOCKER_PROVIDER = "pulumi:providers:docker"
GPU_NODE = re.compile(r"^/dev/kfd$|^/dev/dri/(card|renderD)\d+$")
# The variables that carry a service's API key (this project fills them from Pulumi secrets).
API_KEY_ENV = ("VLLM_API_KEY", "INFINITY_API_KEY", "LITELLM_MASTER_KEY")
# A container that guards its port otherwise than with an API key says how (node-exporter: basic auth
# from its web config; Grafana: its login).
AUTH_LABEL = "rocm-inference.auth"


@dataclass(frozen=True)
class Options:
    delete_before_replace: bool = False
    additional_secret_outputs: Sequence[str] = field(default_factory=tuple)


Rule = Callable[[str, Mapping[str, Any], Options], list[str]]


def _envs(props: Mapping[str, Any]) -> dict[str, str]:
    out = {}
    for entry in props.get("envs") or []:
        if isinstance(entry, str):
            key, _, value = entry.partition("=")
            out[key] = value
    return out


def _is_gpu_container(props: Mapping[str, Any]) -> bool:
    return any(GPU_NODE.match(d.get("hostPath", "")) for d in props.get("devices") or [])


def no_privileged(typ: str, props: Mapping[str, Any], opts: Options) -> list[str]:
    if typ == CONTAINER and props.get("privileged"):
        return ["privileged containers are not allowed: map /dev/kfd and the GPU's render node instead"]
    return []


def gpu_devices_only(typ: str, props: Mapping[str, Any], opts: Options) -> list[str]:
    if typ != CONTAINER or not props.get("devices"):
        return []
    out = []
    for d in props["devices"]:
        host, inside = d.get("hostPath", ""), d.get("containerPath") or d.get("hostPath", "")
        if not GPU_NODE.match(host):
            out.append(
                f"device {host} is not /dev/kfd or a named /dev/dri/cardN or renderDN node (never all of /dev/dri)"
            )
        elif inside != host:
            out.append(f"device {host} is mapped to {inside}: ROCm expects the same path inside the container")
    return out


def _one_shot(props: Mapping[str, Any]) -> bool:
    """A container that runs to completion (a download): no restart, not required to keep running."""
    return props.get("mustRun") is False and props.get("restart", "no") == "no"


def healthcheck_required(typ: str, props: Mapping[str, Any], opts: Options) -> list[str]:
    if typ == CONTAINER and not _one_shot(props) and not (props.get("healthcheck") or {}).get("tests"):
        return [f"container {props.get('name')} has no healthcheck: pulumi up cannot wait for it to serve"]
    return []


def image_pinned(typ: str, props: Mapping[str, Any], opts: Options) -> list[str]:
    if typ != REMOTE_IMAGE:
        return []
    name = str(props.get("name", ""))
    # The catalog's moving tags, as the stack check judges them (components/settings/validate.py).
    catalog = load_catalog()
    tag = catalog.moving_tag(name)
    if tag is None:
        return []
    what = f"its tag {tag!r}" if parse_reference(name).tag else "no tag means 'latest', which"
    pinned = catalog.pinned_reference(name)
    hint = f" ({pinned} is the catalog's)" if pinned else ""
    return [
        f"image {name} is not pinned: {what} moves under a running deployment; pin a released tag or a digest{hint}"
    ]


def wide_ports_need_api_key(typ: str, props: Mapping[str, Any], opts: Options) -> list[str]:
    if typ != CONTAINER:
        return []
    envs = _envs(props)
    keyed = any(envs.get(name) for name in API_KEY_ENV) or bool(_labels(props).get(AUTH_LABEL))
    out = []
    for port in props.get("ports") or []:
        ip = port.get("ip")
        if not keyed and not _is_loopback(ip):
            # Docker publishes a port without an ip on every interface (0.0.0.0 and ::).
            where = str(ip) if ip else "all interfaces (no ip given)"
            out.append(
                f"port {port.get('external')} is published on {where} without an API key ({' or '.join(API_KEY_ENV)})"
            )
    return out


def _is_loopback(ip: object) -> bool:
    try:
        return bool(ip) and ipaddress.ip_address(str(ip).strip("[]")).is_loopback
    except ValueError:
        return False  # not an address: nothing says the port stays on this machine


def _labels(props: Mapping[str, Any]) -> dict[str, str]:
    return {str(lbl.get("label")): str(lbl.get("value")) for lbl in props.get("labels") or []}


def no_plain_secrets(typ: str, props: Mapping[str, Any], opts: Options) -> list[str]:
    if typ == DOCKER_PROVIDER:
        return _provider_secrets(props)
    if typ != CONTAINER:
        return []
    out = []
    found = credential_in_words([str(a) for a in props.get("command") or []])
    if found:
        out.append(f"command line carries {found}: it shows in logs and docker inspect")
    secret_output = "envs" in opts.additional_secret_outputs
    # The stack's own secret entries are named by a label; the env list being a secret output as a whole
    # does not make any other entry one.
    stack_secrets = {n for n in _labels(props).get(SECRET_ENV_LABEL, "").split(",") if n}
    for key, value in _envs(props).items():
        if PROJECT_SECRET_ENV.match(key) or key in stack_secrets:
            if not secret_output:
                out.append(
                    f"environment variable {key} holds a secret but the container's envs are not a secret output"
                )
        elif secret_in_environment(key, value):
            out.append(
                f"environment variable {key} looks like a secret in plain configuration: set it with "
                f"`pulumi config set --secret --path '<service>.environment.{key}'`"
            )
    return out


def _provider_secrets(props: Mapping[str, Any]) -> list[str]:
    """The Docker host URL and ssh options reach the docker CLI's command line and sit in state."""
    out = []
    if credential_in_url(str(props.get("host") or "")):
        out.append("the Docker host URL carries a password (user:password@): log in with a key or an SSH agent")
    found = credential_in_words([str(o) for o in props.get("sshOpts") or []])
    if found:
        out.append(f"the ssh options carry {found}: log in with a key or an SSH agent")
    return out


def gpu_delete_before_replace(typ: str, props: Mapping[str, Any], opts: Options) -> list[str]:
    if typ == CONTAINER and _is_gpu_container(props) and not opts.delete_before_replace:
        return [
            f"GPU container {props.get('name')} must be deleted before it is replaced: two cannot hold the GPU memory"
        ]
    return []


RULES: dict[str, tuple[str, Rule]] = {
    "no-privileged-containers": ("Containers never run privileged.", no_privileged),
    "gpu-devices-only": ("GPU containers get only /dev/kfd and named card/render nodes.", gpu_devices_only),
    "healthcheck-required": ("Every container has a healthcheck.", healthcheck_required),
    "pinned-image-tags": ("Every image is pinned to a tag other than latest, or a digest.", image_pinned),
    "wide-ports-need-api-key": ("Ports published beyond loopback need an API key.", wide_ports_need_api_key),
    "no-plain-secrets": (
        "No secret-looking value in a plain env var, on a command line or in the Docker host's connection.",
        no_plain_secrets,
    ),
    "gpu-delete-before-replace": ("GPU containers use delete-before-replace.", gpu_delete_before_replace),
}


def violations(typ: str, props: Mapping[str, Any], opts: Options) -> dict[str, list[str]]:
    """Every rule's violations for one resource, by policy name."""
    return {name: found for name, (_, rule) in RULES.items() if (found := rule(typ, props, opts))}
