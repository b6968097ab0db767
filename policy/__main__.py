"""The rocm-inference policy pack: `pulumi preview --policy-pack policy`, `pulumi up --policy-pack policy`."""

import sys
from pathlib import Path

# The pack shares the project's pure checks (components/planning/secrets.py: what looks secret;
# components/planning/catalog.py: which image tags move) with the stack validation, so both judge alike;
# it runs from policy/, beside the project.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pulumi_policy import EnforcementLevel, PolicyPack

from pack import POLICIES

PolicyPack(name="rocm-inference", enforcement_level=EnforcementLevel.MANDATORY, policies=POLICIES)
