"""The memory planner against published vLLM startup logs: error of the KV cache size, fit verdicts.

Run: venv/bin/python bench/planner_error.py [LOGS.yaml]
Target (issue: refuse what would fail): median |error| of the KV cache size under 10%, no wrong verdict.
Prints the ratio median error / 10% (below 1 meets the target), measured in this run.
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from components.planning.startup_logs import load_startup_logs  # noqa: E402

TARGET = 0.10


def main(argv: list[str]) -> int:
    path = Path(argv[1]) if len(argv) > 1 else ROOT / "tests" / "data" / "vllm_startup_logs.yaml"
    logs = load_startup_logs(path)
    errors, wrong = [], []
    print(f"{'log':40} {'weights GiB':>17} {'KV tokens':>21} {'error':>7}  verdict")
    for log in logs:
        p, r = log.predicted(), log.reported
        error = (p.kv_cache_tokens - r["kv_cache_tokens"]) / r["kv_cache_tokens"]
        errors.append(abs(error))
        verdict_ok = p.fits == r["fits"]
        if not verdict_ok:
            wrong.append(log.name)
        print(
            f"{log.name:40} {p.weights_gib_per_gpu:8.2f} / {r['weights_gib']:6.2f} "
            f"{p.kv_cache_tokens:10,} / {r['kv_cache_tokens']:8,} {error:+7.1%}  "
            f"{'fits' if p.fits else 'no fit'}{'' if verdict_ok else ' (WRONG)'}"
        )
    median = statistics.median(errors)
    print(f"\n{len(logs)} logs: median |KV error| {median:.1%}, max {max(errors):.1%}, wrong verdicts {len(wrong)}")
    print(f"ratio median error / target {TARGET:.0%}: {median / TARGET:.2f}")
    return 0 if median < TARGET and not wrong else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
