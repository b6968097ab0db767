"""The GPU device mapping for a set of host GPUs, as a component that servers consume."""

from __future__ import annotations

import pulumi

from components.planning.deployment import Gpus


class GpuDevices(pulumi.ComponentResource):
    """`/dev/kfd` plus exactly the card/render nodes of these GPUs, the numeric groups, and HIP_VISIBLE_DEVICES:
    what the plan says (components/planning/deployment.py)."""

    def __init__(self, name: str, plan: Gpus, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("rocm-inference:gpus:GpuDevices", name, None, opts)
        self.plan = plan
        self.register_outputs(
            {
                "host_gpus": list(plan.host_indices),
                "device_paths": list(plan.device_paths),
                "group_adds": list(plan.group_adds),
                "hip_visible_devices": plan.environment["HIP_VISIBLE_DEVICES"],
            }
        )
