"""`python -m components.verify STACK --calibrate [--write]`: the speed model measured on the box.

For each vLLM server, straight at its own endpoint with its own key: CALIBRATION_REQUESTS requests one at
a time, then as many rounds at the workload's concurrency, each a prompt of about the workload's length
and at most MAX_OUTPUT output tokens (vLLM's `ignore_eos`, so every answer is that long). The whole run is
bounded (DEADLINE_S). It prints what it measured against the plan's bands, fits the model's efficiencies on
it (components/planning/calibration.py) and, with --write, writes them into the server's `calibration`
block of the stack file, which the next plan uses.
"""

from __future__ import annotations

import datetime
import statistics
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from components.planning.calibration import CALIBRATED_BAND, Fitted, Measured, block_values, fit
from components.planning.catalog import load_catalog
from components.planning.performance import Efficiency, Performance, Server, Workload, performance
from components.planning.rules import calibrated_efficiency, server_contexts, speed_inputs_of
from components.settings import NAMESPACE, StackSettings
from components.tools.load import run_load

CALIBRATION_REQUESTS = 3  # one at a time, and rounds at the workload's concurrency
MAX_OUTPUT = 128  # output tokens per request: enough steps to time the decode, few enough to stay short
DEADLINE_S = 300.0  # the whole calibration of one server


class CalibrationFailed(Exception):
    """The server did not answer as a calibration needs (an error, no streamed tokens, nonsense rates)."""


@dataclass(frozen=True)
class Result:
    server: str
    model: Server
    workload: Workload
    runs: list[Measured]
    output_tokens: int  # of each calibration request
    planned_efficiency: Efficiency | None  # what the plan used before (None: the fitted model)
    fitted: Fitted

    def planned_at(self, run: Measured, eff: Efficiency | None) -> Performance:
        """The plan's bands for the very requests a run sent."""
        w = Workload(max(1, int(run.prompt_tokens)), self.output_tokens, run.batch)
        return performance(self.model, w) if eff is None else performance(self.model, w, eff)

    @property
    def calibrated(self) -> Efficiency:
        return replace(self.fitted.efficiency, band=CALIBRATED_BAND)

    def lines(self) -> list[str]:
        out = [f"calibrate {self.server}:"]
        for run in self.runs:
            p = self.planned_at(run, self.planned_efficiency)
            after = self.planned_at(run, self.calibrated)
            if run.batch == 1:
                measured, band, now, what = 1 / run.step_s, p.decode_tokens_per_s, after.decode_tokens_per_s, "decode"
            else:
                measured, band, now = run.batch / run.step_s, p.output_tokens_per_s, after.output_tokens_per_s
                what = f"output, {run.batch} at once"
            inside = "inside" if band.low <= measured <= band.high else "OUTSIDE"
            out.append(
                f"  {what:22} measured {measured:7.3g} tokens/s (prompts of {run.prompt_tokens:.0f}); plan "
                f"{band.estimate:.3g} ({band.low:.3g}-{band.high:.3g}): {inside}; calibrated {now.estimate:.3g}"
            )
            if run.prefill_s is not None:
                out.append(
                    f"  {'prefill':22} measured {run.prompt_tokens / max(run.prefill_s, 1e-6):7.3g} tokens/s; plan "
                    f"{p.prefill_tokens_per_s.estimate:.3g} ({p.prefill_tokens_per_s.low:.3g}-"
                    f"{p.prefill_tokens_per_s.high:.3g})"
                )
        f = self.fitted
        out.append(
            f"  the box takes {f.decode_factor:.2f}x the model's time for the weights and all-reduces, "
            f"{f.batch_factor:.2f}x for the KV reads and per-sequence work, {f.prefill_factor:.2f}x for a prefill"
        )
        return out

    def block(self, s: StackSettings, today: str) -> dict[str, Any]:
        """The server's `calibration` block: what it was measured with, and the efficiencies."""
        srv = s.servers[self.server]
        return {
            "measured": today,
            "model": srv.model,
            "tensor_parallel_size": srv.tensor_parallel_size,
            "image": srv.image,
            **block_values(self.fitted.efficiency),
        }


def _prompt(tokens: int, tag: str) -> str:
    """About `tokens` tokens of text (a short common word and a space are one token in the usual vocabularies),
    different from its first token on for each request (`tag`), so that vLLM's prefix cache serves none of it."""
    return f"{tag} " + " ".join(["hello"] * max(1, tokens - 8))


def measure_run(
    base: str, model: str, key: str | None, batch: int, prompt_tokens: int, output: int, deadline: float
) -> Measured:
    """CALIBRATION_REQUESTS rounds of `batch` requests at once; CalibrationFailed when too many failed."""

    def payload(n: int) -> dict[str, Any]:
        return {
            "model": model,
            "messages": [{"role": "user", "content": _prompt(prompt_tokens, f"{batch}-{n}")}],
            "max_tokens": output,
            "min_tokens": output,
            "ignore_eos": True,  # vLLM: every answer is `output` tokens long
            "temperature": 0,
        }

    samples, _ = run_load(base, payload, key, batch, seconds=deadline, requests=batch * CALIBRATION_REQUESTS)
    good = [x for x in samples if x.ok and x.completion_tokens > 1 and x.decode_ms > 0]
    if len(good) < max(1, len(samples) // 2):
        failed = len(samples) - len(good)
        raise CalibrationFailed(
            f"{failed} of {len(samples)} requests at {batch} at once failed or streamed no tokens (a server that "
            "does not stream cannot be timed per token)"
        )
    # Drop the first round's first request: it may pay for a cold prefix cache or graph warm-up.
    used = good[1:] if len(good) > 2 else good
    step = statistics.median(x.decode_ms / 1000 / (x.completion_tokens - 1) for x in used)
    prompt = statistics.median(x.prompt_tokens or prompt_tokens for x in used)
    tokens = statistics.median(x.completion_tokens for x in used)
    prefill = statistics.median(max(0.0, x.ttft_ms / 1000 - step) for x in used) if batch == 1 else None
    return Measured(batch, prompt + tokens / 2, step, prompt, prefill)


def calibrate_server(name: str, s: StackSettings, base: str, key: str | None, say: Callable[[str], None]) -> Result:
    ctx = server_contexts(s)[name]
    inputs = speed_inputs_of(ctx, load_catalog())
    if inputs is None:
        raise CalibrationFailed("the plan has no speed model for it (the rules refuse the server, or do not model it)")
    server, workload = inputs
    model = s.servers[name].name_served
    output = min(MAX_OUTPUT, workload.output_tokens)
    prompt = workload.prompt_tokens
    runs = []
    for batch in sorted({1, min(workload.concurrency, server.max_num_seqs)}):
        say(f"calibrate {name}: {CALIBRATION_REQUESTS} rounds of {batch} at once, {prompt} in / {output} out")
        runs.append(measure_run(base, model, key, batch, prompt, output, DEADLINE_S / 2))
    try:
        fitted = fit(server, runs)
    except ValueError as exc:
        raise CalibrationFailed(str(exc)) from None
    eff, _ = calibrated_efficiency(s.servers[name])
    return Result(name, server, workload, runs, output, eff, fitted)


def write_calibration(path: Path, server: str, single: bool, block: dict[str, Any]) -> None:
    """Set one server's `calibration` block in the stack file, every other line as it was."""
    lines = path.read_text().splitlines(keepends=True)
    if single:
        header, indent = f"  {NAMESPACE}:vllm:", 4
    else:
        parent = next((i for i, ln in enumerate(lines) if ln.rstrip() == f"  {NAMESPACE}:servers:"), None)
        if parent is None:
            raise CalibrationFailed(f"{path.name} has no {NAMESPACE}:servers section")
        header, indent = f"    {server}:", 6
    start = next((i for i, ln in enumerate(lines) if ln.split("#", 1)[0].rstrip() == header), None)
    if start is None:
        raise CalibrationFailed(f"{path.name} has no block for server {server}")
    end = start + 1
    while end < len(lines) and (lines[end].startswith(" " * indent) or not lines[end].strip()):
        end += 1
    while end > start + 1 and not lines[end - 1].strip():
        end -= 1
    body = lines[start + 1 : end]
    # drop an earlier calibration block
    kept, skipping = [], False
    for ln in body:
        if ln.startswith(" " * indent + "calibration:"):
            skipping = True
            continue
        if skipping and (ln.startswith(" " * (indent + 2)) or not ln.strip()):
            continue
        skipping = False
        kept.append(ln)
    pad = " " * indent
    text = yaml.safe_dump({"calibration": block}, sort_keys=False, default_flow_style=False)
    block_lines = [
        f"{pad}# measured by `python -m components.verify --calibrate` on {block['measured']}\n",
        *(pad + ln + "\n" for ln in text.splitlines()),
    ]
    lines[start + 1 : end] = kept + block_lines
    path.write_text("".join(lines))


def today() -> str:
    return datetime.date.today().isoformat()
