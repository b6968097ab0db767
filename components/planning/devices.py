"""GPU device naming for containers: pure logic, free of Pulumi.

A ROCm container reaches a GPU through `/dev/kfd` (the shared compute interface) and that
GPU's DRM nodes. It cannot use a GPU whose render node it is not given, and the GPUs it is
given are numbered from 0 inside it (ROCm documentation, "GPU isolation techniques"). So a
server given host GPU 1 only sees it as device 0: HIP_VISIBLE_DEVICES counts from 0.
"""

from __future__ import annotations

from collections.abc import Sequence

from components.settings import GpuNode, Groups

KFD = "/dev/kfd"


def device_paths(nodes: Sequence[GpuNode]) -> tuple[str, ...]:
    """`/dev/kfd`, then the card nodes, then the render nodes of exactly these GPUs (never all of /dev/dri)."""
    return (
        KFD,
        *(f"/dev/dri/card{n.card}" for n in nodes),
        *(f"/dev/dri/renderD{n.render}" for n in nodes),
    )


def hip_visible_devices(nodes: Sequence[GpuNode]) -> str:
    """The container-relative device list: the given GPUs are 0..n-1 inside the container."""
    return ",".join(str(i) for i in range(len(nodes)))


def group_adds(groups: Groups) -> tuple[str, ...]:
    """Numeric group ids: names fail when the image lacks the group ("Unable to find group render")."""
    return (str(groups.video), str(groups.render))
