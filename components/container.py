"""The hardened container that every server of this project runs in: image, cache volume, container.

What a deployment that is left running needs beyond a compose file, in one place:
- a healthcheck on /health with the image's own python (curl is not in every image), a start
  period long enough for a model load, and `wait=True` so `pulumi up` returns only when it serves;
- `on-failure` restarts with a cap: `always` loops forever on a deterministic failure such as
  a KV cache that does not fit (CIS Docker Benchmark 5.15 suggests 5);
- json-file logs with rotation (unbounded by default);
- the model cache in a named volume that survives container replacement and is protected;
- `delete_before_replace`: the container has a fixed name, a host port and maybe GPU memory, so
  pulumi-docker's default create-before-delete would fail (pulumi-docker issue #1356);
- a private IPC namespace with an explicit /dev/shm size instead of `--ipc=host`, no `privileged`;
- secrets only in the environment, each entry a secret, and `envs` a secret output in state.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_docker as docker

# No start_interval: Docker Engine before v25 (Debian 12 ships 20.10) refuses it in compose, and a
# 15 s interval finds a server ready soon enough without one.
HEALTH_INTERVAL = "15s"
HEALTH_TIMEOUT = "10s"
HEALTH_RETRIES = 3
RESTART_POLICY = "on-failure"
RESTART_MAX_RETRIES = 5
LOG_DRIVER = "json-file"
LOG_OPTS = {"max-size": "100m", "max-file": "5"}
LABEL_PREFIX = "rocm-inference"


def health_test(port: int, path: str = "/health") -> list[str]:
    """A Docker healthcheck that needs only python: exit 0 on HTTP 200, non-zero otherwise (503 raises)."""
    code = (
        "import sys,urllib.request;"
        f"sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:{port}{path}',timeout=5).status==200 else 1)"
    )
    return ["CMD", "python", "-c", code]


@dataclass(frozen=True)
class ServiceSpec:
    """Everything a server component decides about its container."""

    image: str
    container_name: str
    command: Sequence[str]
    internal_port: int
    external_port: int
    bind: str
    cache_volume: str
    cache_path: str
    startup_timeout: int
    environment: Mapping[str, str] = field(default_factory=dict)
    secret_environment: Mapping[str, pulumi.Output[str] | None] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    devices: Sequence[docker.ContainerDeviceArgs] = ()
    group_adds: Sequence[str] = ()
    shm_size_mb: int | None = None
    stop_grace_seconds: int = 30
    depends_on: Sequence[pulumi.Resource] = ()


def container_envs(
    plain: Mapping[str, str], secret: Mapping[str, pulumi.Output[str] | None]
) -> list[pulumi.Input[str]]:
    """`KEY=value` entries; each secret one stays a secret Output (never an f-string on an Output)."""
    envs: list[pulumi.Input[str]] = [f"{k}={v}" for k, v in sorted(plain.items())]
    envs += [pulumi.Output.secret(pulumi.Output.concat(k, "=", v)) for k, v in sorted(secret.items()) if v is not None]
    return envs


@dataclass(frozen=True, kw_only=True)
class ServerArgs:
    """What every server component takes besides its own settings: where it runs and what it is given."""

    provider: docker.Provider
    address: str
    bind: str
    hf_token: pulumi.Output[str] | None = None
    api_key: pulumi.Output[str] | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    depends_on: Sequence[pulumi.Resource] = ()


@dataclass(frozen=True)
class ServiceResources:
    image: docker.RemoteImage
    volume: docker.Volume
    container: docker.Container

    def url(self, address: str, path: str = "") -> pulumi.Output[str]:
        """Known only once the container is up and healthy (wait=True): the URL of a serving endpoint."""
        return self.container.ports.apply(lambda ports: f"http://{address}:{(ports or [])[0].external}{path}")


def service_resources(
    name: str, spec: ServiceSpec, parent: pulumi.Resource, provider: docker.Provider
) -> ServiceResources:
    """The image, cache volume and container of one server, children of `parent`, named from `name`."""
    child = pulumi.ResourceOptions(parent=parent, provider=provider)
    labels = [docker.ContainerLabelArgs(label=k, value=v) for k, v in sorted(spec.labels.items())]
    # Nothing is pulled before the host's preflight check has passed.
    image = docker.RemoteImage(
        f"{name}-image",
        name=spec.image,
        keep_locally=True,
        opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=list(spec.depends_on))),
    )
    volume = docker.Volume(
        f"{name}-cache",
        name=spec.cache_volume,
        labels=[docker.VolumeLabelArgs(label=k, value=v) for k, v in sorted(spec.labels.items())],
        # A model cache is tens of GB of downloads: never deleted by a replacement, a destroy or a rename.
        opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(protect=True, retain_on_delete=True)),
    )
    container = docker.Container(
        f"{name}-container",
        name=spec.container_name,
        image=image.image_id,
        command=list(spec.command),
        envs=container_envs(spec.environment, spec.secret_environment),
        devices=list(spec.devices) or None,
        group_adds=list(spec.group_adds) or None,
        shm_size=spec.shm_size_mb,
        ipc_mode="private",
        privileged=False,
        ports=[docker.ContainerPortArgs(internal=spec.internal_port, external=spec.external_port, ip=spec.bind)],
        volumes=[docker.ContainerVolumeArgs(volume_name=volume.name, container_path=spec.cache_path)],
        healthcheck=docker.ContainerHealthcheckArgs(
            tests=health_test(spec.internal_port),
            interval=HEALTH_INTERVAL,
            timeout=HEALTH_TIMEOUT,
            retries=HEALTH_RETRIES,
            start_period=f"{spec.startup_timeout}s",
        ),
        wait=True,
        wait_timeout=spec.startup_timeout,
        restart=RESTART_POLICY,
        max_retry_count=RESTART_MAX_RETRIES,
        log_driver=LOG_DRIVER,
        log_opts=dict(LOG_OPTS),
        labels=labels,
        destroy_grace_seconds=spec.stop_grace_seconds,
        opts=pulumi.ResourceOptions.merge(
            child,
            pulumi.ResourceOptions(
                delete_before_replace=True,
                additional_secret_outputs=["envs"],
                depends_on=list(spec.depends_on),
            ),
        ),
    )
    return ServiceResources(image, volume, container)
