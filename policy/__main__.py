"""The rocm-inference policy pack: `pulumi preview --policy-pack policy`, `pulumi up --policy-pack policy`."""

from pulumi_policy import EnforcementLevel, PolicyPack

from pack import POLICIES

PolicyPack(name="rocm-inference", enforcement_level=EnforcementLevel.MANDATORY, policies=POLICIES)
