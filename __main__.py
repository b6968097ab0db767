"""`pulumi up --stack <stack>`: deploy the configuration in Pulumi.<stack>.yaml."""

from pathlib import Path

import pulumi

from components.program import run

run(Path(__file__).parent / f"Pulumi.{pulumi.get_stack()}.yaml")
