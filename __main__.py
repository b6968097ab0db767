"""`pulumi up --stack <stack>`: deploy the configuration in Pulumi.<stack>.yaml."""

import os

import pulumi

from components.program import run
from components.settings.stackfile import stack_path

run(stack_path(pulumi.get_stack()), ssh_agent=os.environ.get("SSH_AUTH_SOCK") or None)
