"""The GPU device mapping for a set of host GPUs, as a component that servers consume."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_docker as docker

from components.planning.devices import device_paths, group_adds, hip_visible_devices
from components.settings import GpuNode, Groups


@dataclass(frozen=True)
class GpuDevicesArgs:
    nodes: tuple[GpuNode, ...]
    groups: Groups


class GpuDevices(pulumi.ComponentResource):
    """`/dev/kfd` plus exactly the card/render nodes of these GPUs, the numeric groups, and HIP_VISIBLE_DEVICES."""

    host_indices: tuple[int, ...]
    device_paths: tuple[str, ...]
    group_adds: tuple[str, ...]
    environment: dict[str, str]

    def __init__(self, name: str, args: GpuDevicesArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("rocm-inference:gpus:GpuDevices", name, None, opts)
        self.host_indices = tuple(n.index for n in args.nodes)
        self.device_paths = device_paths(args.nodes)
        self.group_adds = group_adds(args.groups)
        self.environment = {"HIP_VISIBLE_DEVICES": hip_visible_devices(args.nodes)}
        self.register_outputs(
            {
                "host_gpus": list(self.host_indices),
                "device_paths": list(self.device_paths),
                "group_adds": list(self.group_adds),
                "hip_visible_devices": self.environment["HIP_VISIBLE_DEVICES"],
            }
        )

    @property
    def devices(self) -> list[docker.ContainerDeviceArgs]:
        return [docker.ContainerDeviceArgs(host_path=p, container_path=p, permissions="rwm") for p in self.device_paths]
