"""How long `python -m components.plan big-chat` takes, against the floor of importing pulumi and
pulumi_docker in a fresh interpreter (what any Pulumi Python program pays before doing anything).

Run: venv/bin/python bench/plan_speed.py [RUNS]
Target (issue: reviewable changes): the plan takes at most 1.5x the floor. Prints the ratio of the
medians, measured in this run, and exits 1 when it is above the target.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = 1.5


# As on an operator's machine: the project's modules compiled once, to __pycache__, as pulumi's own are in
# site-packages (pip compiles them at install). A shell with PYTHONDONTWRITEBYTECODE=1 would otherwise time the
# project's compilation on every run against a floor that pays none.
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def timed(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, env=ENV)
    return time.perf_counter() - start


def main(runs: int) -> int:
    floor_cmd = [sys.executable, "-c", "import pulumi, pulumi_docker"]
    plan_cmd = [sys.executable, "-m", "components.plan", "big-chat"]
    timed(plan_cmd)  # warm the file cache and bytecode once
    floors, plans = [], []
    for _ in range(runs):  # interleaved, so load on the machine hits both alike
        floors.append(timed(floor_cmd))
        plans.append(timed(plan_cmd))
    floor, plan = statistics.median(floors), statistics.median(plans)
    print(f"import pulumi, pulumi_docker: median {floor * 1000:.0f} ms over {runs} runs")
    print(f"plan big-chat:                median {plan * 1000:.0f} ms over {runs} runs")
    print(f"ratio plan / floor: {plan / floor:.2f} (target <= {TARGET})")
    return 0 if plan / floor <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]) if len(sys.argv) > 1 else 9))
