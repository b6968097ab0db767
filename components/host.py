"""The ROCm host: its Docker provider (local socket or ssh://), GPU inventory and group ids."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_docker as docker

from components.gpus import GpuDevices, GpuDevicesArgs
from components.settings import HostSettings


@dataclass(frozen=True)
class RocmHostArgs:
    settings: HostSettings


class RocmHost(pulumi.ComponentResource):
    provider: docker.Provider
    settings: HostSettings

    def __init__(self, name: str, args: RocmHostArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("rocm-inference:host:RocmHost", name, None, opts)
        self.settings = s = args.settings
        self.provider = docker.Provider(
            f"{name}-docker",
            host=s.docker,
            ssh_opts=list(s.ssh_opts) or None,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.register_outputs(
            {
                "docker_host": s.docker,
                "address": s.address,
                "bind": s.bind,
                "gpu": s.gpu,
                "gpus": [g.model_dump() for g in s.gpus],
                "groups": s.groups.model_dump(),
            }
        )

    def gpu_devices(self, name: str, indices: Sequence[int]) -> GpuDevices:
        """The device mapping for these host GPUs (validated to be in the inventory), parented to this host."""
        return GpuDevices(
            name,
            GpuDevicesArgs(nodes=self.settings.nodes(indices), groups=self.settings.groups),
            pulumi.ResourceOptions(parent=self),
        )

    def url(self, port: int, path: str = "") -> str:
        return f"http://{self.settings.address}:{port}{path}"
