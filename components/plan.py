"""`python -m components.plan`: the command people and workflows type; the tool is components.tools.plan."""

import gc

# A short command: importing pydantic's models and the Pulumi SDK allocates many objects that live to the end, and
# the collector's passes over them free nothing; at the default thresholds they cost about 45 ms of a 420 ms plan
# (bench/plan_speed.py). Collect far less often, as mypy does (mypy 2.4.1, mypy/build.py:483).
gc.set_threshold(200_000, 30, 30)

from components.tools.plan import cli  # noqa: E402

if __name__ == "__main__":
    cli()
