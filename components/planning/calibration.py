"""A server's speed measured on its own box, turned into the performance model's efficiencies: pure.

`python -m components.verify STACK --calibrate` runs a short, bounded load through each server's own
endpoint (components/tools/verify.py, the same loader as `--load`): requests one at a time, then at the
workload's concurrency, each a prompt of about the workload's length and a fixed number of output tokens.
From what it measures, `fit` solves for two factors on the model's decode step
(components/planning/performance.py `step_seconds`):

    measured step(B) = a x (weights read + all-reduces)(B) + b x (KV read + per-sequence work)(B)

at B = 1 and at the workload's batch (one factor for both when only one was measured), and one factor c
on the prefill time (time to first token at concurrency 1, less one decode step). The efficiencies that
result (weights / a, KV / b, all-reduce x a, per sequence x b, prefill x c) are written into the server's
`calibration` block; later plans use them, with a band of CALIBRATED_BAND, and say so. A calibration holds
for the model, tensor parallel size and image it was measured with: after a change of any, the plan
ignores it and says why.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from components.planning.performance import Efficiency, Server, step_parts
from components.planning.prefill import prefill_seconds

# The band of a calibrated estimate: a short benchmark on the box narrows the 25-50% spread between
# boxes to about 10-20% (operations-facts.md §9); repeated runs of one benchmark differ by up to ~15%.
CALIBRATED_BAND = 1.2
# A factor outside this range is a measurement gone wrong (a stalled request, a wrong endpoint), not a box.
SANE = (0.05, 20.0)


# The calibration block's efficiency keys (settings CalibrationSettings): each with the Efficiency field it holds
# and the unit it is written in.
BLOCK_FIELDS = (
    ("weights_efficiency", "weights", 1.0),
    ("experts_efficiency", "experts", 1.0),
    ("kv_efficiency", "kv", 1.0),
    ("kv_serial", "kv_serial", 1.0),
    ("matmul_efficiency", "matmul", 1.0),
    ("dequant_ops", "dequant", 1.0),
    ("allreduce_us", "allreduce_s", 1e6),
    ("sequence_ms", "sequence_s", 1e3),
    ("prefill_factor", "prefill", 1.0),
    ("moe_layer_us", "moe_layer_s", 1e6),
)


# What each key is written in, for a message about its value.
BLOCK_UNITS = {
    "weights_efficiency": "a share of the HBM bandwidth, 0 to 1",
    "experts_efficiency": "a share of the HBM bandwidth, 0 to 1",
    "kv_efficiency": "a share of the HBM bandwidth, 0 to 1",
    "kv_serial": "sequences' worth of KV reading",
    "matmul_efficiency": "a share of peak FP16, 0 to 1",
    "dequant_ops": "FP16 operations per quantized weight",
    "allreduce_us": "microseconds",
    "sequence_ms": "milliseconds",
    "prefill_factor": "a factor, 1 for the fitted estimate",
    "moe_layer_us": "microseconds",
}


def plausible_range(key: str, base: Efficiency | None = None) -> tuple[float, float]:
    """The values of a block's key that `fit` can write: the uncalibrated value scaled by factors within SANE
    (kv_serial by a over b, two of them); anything else was edited by hand or in another unit."""
    base = base or Efficiency()
    name, unit = next((n, u) for k, n, u in BLOCK_FIELDS if k == key)
    reach = SANE[1] / SANE[0] if key == "kv_serial" else max(SANE[1], 1 / SANE[0])
    if key == "prefill_factor":
        return SANE
    value = getattr(base, name) * unit
    return value / reach, value * reach


def implausible(block: Mapping[str, Any], base: Efficiency | None = None) -> list[tuple[str, float, float]]:
    """(key, value, the uncalibrated value) of each of a block's values that no calibration on a box could have
    written: a value in another unit (microseconds written as milliseconds), a percentage for a factor."""
    base = base or Efficiency()
    out = []
    for key, name, unit in BLOCK_FIELDS:
        value = block.get(key)
        if value is None:
            continue
        low, high = plausible_range(key, base)
        if not low * 0.99 <= float(value) <= high * 1.01:  # the block's 4 significant digits
            out.append((key, float(value), 1.0 if key == "prefill_factor" else getattr(base, name) * unit))
    return out


def block_values(eff: Efficiency) -> dict[str, float]:
    """The efficiencies as a calibration block writes them (4 significant digits)."""
    return {key: float(f"{getattr(eff, name) * unit:.4g}") for key, name, unit in BLOCK_FIELDS}


def efficiency_of(block: Mapping[str, Any]) -> Efficiency:
    """The efficiencies a calibration block holds, with the calibrated band."""
    # A block written before the MoE latency was modelled has no moe_layer_us: its experts' rate was measured with
    # that latency in it, so it stands alone (0).
    values = {name: float(block[key]) / unit for key, name, unit in BLOCK_FIELDS if block.get(key) is not None}
    return Efficiency(**{"moe_layer_s": 0.0, **values}, band=CALIBRATED_BAND)


@dataclass(frozen=True)
class Measured:
    """What one loaded run measured, per request on average: `batch` requests ran at once."""

    batch: int
    context_tokens: float  # prompt plus half the output, the mean context of a decode step
    step_s: float  # time between two output tokens of one request (TPOT)
    prompt_tokens: float = 0.0
    prefill_s: float | None = None  # time to first token less one step, at batch 1


@dataclass(frozen=True)
class Fitted:
    """The efficiencies the box showed, and the factors that made them (measured over modelled)."""

    efficiency: Efficiency
    decode_factor: float  # a: weights and all-reduces
    batch_factor: float  # b: KV reads and per-sequence work
    prefill_factor: float  # c: prefill time


# The step's terms (performance.step_parts) that a calibration scales together: those a step pays once
# (the weights, the all-reduces, unpacking, walking one sequence's KV), and those it pays per sequence.
FIXED = ("weights", "experts", "moe", "allreduce", "dequant", "kv_serial")
PER_SEQUENCE = ("kv", "sequence", "compute")


def _terms(s: Server, batch: int, context: float, eff: Efficiency) -> tuple[float, float]:
    """The modelled step split into (paid once, paid per sequence) seconds."""
    parts = step_parts(s, batch, int(context), eff)
    return sum(parts[k] for k in FIXED), sum(parts[k] for k in PER_SEQUENCE)


def scaled(base: Efficiency, a: float, b: float, c: float) -> Efficiency:
    """The efficiencies whose modelled times are `base`'s times a (paid once), b (per sequence) and c (prefill)."""
    return Efficiency(
        weights=base.weights / a,
        experts=base.experts / a,
        allreduce_s=base.allreduce_s * a,
        moe_layer_s=base.moe_layer_s * a,
        dequant=base.dequant * a,
        kv_serial=base.kv_serial * a / b,  # its part is kv_serial x one KV read, and that read scales by b
        kv=base.kv / b,
        sequence_s=base.sequence_s * b,
        matmul=base.matmul / b,
        prefill=c,
    )


def fit(s: Server, runs: list[Measured], base: Efficiency | None = None) -> Fitted:
    """The factors a, b, c (module docstring) from one or two runs; ValueError when they make no sense."""
    base = base or Efficiency()
    if not runs:
        raise ValueError("nothing was measured")
    runs = sorted(runs, key=lambda r: r.batch)
    one, wide = runs[0], runs[-1]
    f1, p1 = _terms(s, one.batch, one.context_tokens, base)
    a = b = one.step_s / (f1 + p1)
    if wide.batch > one.batch:
        fn, pn = _terms(s, wide.batch, wide.context_tokens, base)
        det = f1 * pn - fn * p1
        if det > 0:
            a2 = (one.step_s * pn - wide.step_s * p1) / det
            b2 = (f1 * wide.step_s - fn * one.step_s) / det
            if a2 > 0 and b2 > 0:
                a, b = a2, b2
            else:  # noise between the two runs: one factor for both, fitted on both
                a = b = (one.step_s + wide.step_s) / (f1 + p1 + fn + pn)
    c = 1.0
    if one.prefill_s is not None and one.prompt_tokens > 0:
        model = prefill_seconds(s.arch, int(one.prompt_tokens), s.tensor_parallel_size, s.gpu).estimate
        c = max(one.prefill_s, 1e-4) / model if model > 0 else 1.0
    for name, value in (("decode", a), ("batch", b), ("prefill", c)):
        if not SANE[0] <= value <= SANE[1]:
            raise ValueError(
                f"the measured {name} time is {value:.2f}x the model's: outside {SANE[0]}-{SANE[1]}x, a measurement "
                "gone wrong (a stalled request, another server on the GPUs), not a calibration"
            )
    eff = scaled(base, a, b, c)
    if max(eff.weights, eff.experts, eff.kv, eff.matmul) > 1:
        raise ValueError(
            "the measured decode is faster than the GPUs' memory bandwidth or FP16 rate allow (the roofline): the "
            "endpoint is not this server, or it answered without generating"
        )
    return Fitted(eff, a, b, c)
