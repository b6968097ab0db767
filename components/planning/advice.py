"""What a user can change to serve faster, from the speed model (components/planning/performance.py): pure.

- Replicas against one wider tensor-parallel server: where the model also fits on fewer GPUs, the same GPUs
  as several replicas (the fleet form's servers of one served_model_name, behind the gateway) serve more
  tokens per second together, as reported on gfx906 boxes (4x TP1 against TP4: 20% to 124% more,
  operations-facts.md §9), while one request alone decodes faster on the wider server. Which wins is the
  workload's: the model is evaluated at both.
- Calibration: where the fitted band is widest (one request on more than one GPU, where the published boxes
  disagree most), measuring the box narrows it (components/planning/calibration.py).
- max_num_seqs: requests beyond it queue (so do those beyond what the KV cache holds at the workload's length).
- max_num_batched_tokens: vLLM V1 prefills a long prompt in chunks of this many tokens between decode steps
  (chunked prefill; the gfx906 fork's default is 2048): while one runs, every running request's next token
  waits about a chunk's prefill time.
"""

from __future__ import annotations

import dataclasses
import math

from components.planning.calibration import CALIBRATED_BAND
from components.planning.performance import Efficiency, Performance, Server, Workload, is_measured, performance
from components.planning.prefill import prefill_seconds

# A stall of the running requests' tokens worth saying (seconds per chunk).
CHUNK_STALL_S = 1.0
# A fitted decode band this wide (high / low) is worth narrowing by a calibration on the box.
WIDE_BAND = 3.0


def calibration(s: Server, now: Performance) -> str | None:
    """How to narrow a fitted decode band this wide: the box's own measurement."""
    d = now.decode_tokens_per_s
    if now.calibrated is not None or d.high / d.low < WIDE_BAND:
        return None
    why = []
    if s.tensor_parallel_size > 1:
        why.append(
            "the published boxes disagree most on a single request across GPUs (one runs it 40% below the model, "
            "another 50% above)"
        )
    if not is_measured(s.gpu):
        why.append(f"no published run on {s.gpu.gfx} was fitted (gfx906's rates are borrowed)")
    gpus = f"{s.tensor_parallel_size} GPUs" if s.tensor_parallel_size > 1 else "one GPU"
    return (
        f"one request alone on {gpus} decodes at {d.low:.3g}-{d.high:.3g} tokens/s in the fitted band, "
        f"{d.high / d.low:.1f}x wide: {' and '.join(why) or 'the fit is loose here'}; after the deploy, "
        "`python -m components.verify STACK --calibrate --write` measures this box, and the next plan's bands are "
        f"its own (x/÷ {CALIBRATED_BAND})"
    )


def replicas(
    s: Server, w: Workload, now: Performance, narrower: dict[int, int], eff: Efficiency | None = None
) -> str | None:
    """`narrower`: tensor parallel size -> KV cache tokens, for each narrower size the model fits at.
    The best such split of the server's GPUs into replicas, against the server as it is."""
    best: tuple[float, int, Performance] | None = None
    for tp, kv in sorted(narrower.items()):
        n = s.tensor_parallel_size // tp
        replica = dataclasses.replace(s, tensor_parallel_size=tp, kv_cache_tokens=kv)

        def at(c: int, replica: Server = replica) -> Performance:
            each = Workload(w.prompt_tokens, w.output_tokens, c, w.cached_tokens)
            return performance(replica, each) if eff is None else performance(replica, each, eff)

        # The requests spread over the replicas: r of them serve q + 1 at once, the others q.
        q, r = divmod(w.concurrency, n)
        total = r * at(q + 1).output_tokens_per_s.estimate + (
            (n - r) * at(q).output_tokens_per_s.estimate if q else 0.0
        )
        if best is None or total > best[0]:
            best = (total, tp, at(1))
    if best is None:
        return None
    total, tp, p = best
    n = s.tensor_parallel_size // tp
    ours = now.output_tokens_per_s.estimate
    winner = (
        f"{n} replicas serve more together"
        if total > ours * 1.05
        else f"one server of tensor parallel {s.tensor_parallel_size} serves as much or more"
        if total < ours * 0.95
        else "about even"
    )
    return (
        f"the model also fits on {tp} GPU{'s' if tp > 1 else ''}: {n} replicas of tensor parallel {tp} on these "
        f"{s.tensor_parallel_size} GPUs (servers of one served_model_name behind the gateway) would output about "
        f"{total:.3g} tokens/s together at {w.concurrency} requests, against {ours:.3g} now ({total / ours - 1:+.0%}); "
        f"one request alone decodes at {p.decode_tokens_per_s.estimate:.3g} against {now.decode_tokens_per_s.estimate:.3g} "
        f"tokens/s now: for this workload, {winner}"
    )


def batching(
    s: Server, w: Workload, now: Performance, max_num_seqs_set: bool, max_num_batched_tokens: int
) -> list[str]:
    out = []
    if now.queued:
        holds = max(1, s.kv_cache_tokens // max(1, w.prompt_tokens + w.output_tokens))
        if s.max_num_seqs < min(w.concurrency, holds):
            out.append(
                f"{now.queued} of the {w.concurrency} requests queue behind max_num_seqs {s.max_num_seqs}"
                f"{'' if max_num_seqs_set else ' (the default here)'}: the KV cache holds {holds} such requests, "
                f"so raise max_num_seqs to {min(w.concurrency, holds)}"
            )
        else:
            out.append(
                f"{now.queued} of the {w.concurrency} requests queue: the KV cache holds {holds} requests of "
                f"{w.prompt_tokens + w.output_tokens:,} tokens; more GPU memory for it (gpu_memory_utilization, "
                "a shorter max_model_len does not help) or another replica would serve them"
            )
    longest = prefill_seconds(s.arch, s.max_model_len, s.tensor_parallel_size, s.gpu).estimate
    if s.max_model_len > max_num_batched_tokens and longest > 0:
        chunk_s = longest * max_num_batched_tokens / s.max_model_len
        if chunk_s >= CHUNK_STALL_S:
            chunks = math.ceil(s.max_model_len / max_num_batched_tokens)
            out.append(
                f"a prompt of max_model_len {s.max_model_len:,} tokens prefills in {chunks} chunks of "
                f"max_num_batched_tokens {max_num_batched_tokens:,}; while it does, each running request's next "
                f"token waits about {chunk_s:.2g} s a chunk: a smaller max_num_batched_tokens (e.g. "
                f"{max(256, max_num_batched_tokens // 4)}) shortens those waits, a larger one finishes the long "
                "prompt sooner"
            )
    return out
