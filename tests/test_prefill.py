"""The stall window against published gfx906 prefill measurements (data/throughput/).

The expected prefill times here come from the measured runs, scaled to the served model with a count
of their own, never from components/planning/prefill.py: a run is one server prefilling prompts of
growing length (one output token, concurrency 1). Its time per prompt token grows with the prompt
(attention without flash kernels on gfx906): fitted as `a + b x tokens`, `a` scales with the
parameters (the matrix multiplies), `b` with the width of the layers that attend the whole prompt.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from components.planning.catalog import Architecture, Catalog, Gpu, load_catalog
from tests.conftest import ROOT

THROUGHPUT = ROOT / "data" / "throughput"
# The published rows name a quantized checkpoint; the catalog holds its architecture under this name.
ARCHITECTURE_OF = {"gaunernst/gemma-3-27b-it-qat-autoawq": "google/gemma-3-27b-it"}
# The data's own caveat: the same workload run twice on one box differs by up to 60% at 24K tokens.
RUN_TO_RUN = 1.6


@dataclass(frozen=True)
class Run:
    model: str
    tp: int
    gpu: Gpu
    points: tuple[tuple[int, float], ...]  # (prompt tokens, seconds to the first token)


def _rows() -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for path in sorted(THROUGHPUT.glob("*.json")):
        rows += json.loads(path.read_text())
    return rows


def _gpu(row: dict[str, Any], catalog: Catalog) -> Gpu:
    named = [g for g in catalog.gpus.values() if g.product.lower() in str(row.get("gpu", "")).lower()]
    assert named, f"no catalog GPU for {row.get('gpu')!r}"
    return max(named, key=lambda g: len(g.product))


def prefill_runs(catalog: Catalog) -> list[Run]:
    """Runs of at least two prompt lengths of a model whose architecture the catalog knows."""
    runs: list[Run] = []
    current: list[dict[str, Any]] = []

    def close() -> None:
        if len(current) >= 2:
            first = current[0]
            points = tuple((int(r["input_len"]), float(r["mean_ttft_ms"]) / 1000) for r in current)
            runs.append(Run(first["model"], int(first["tensor_parallel_size"]), _gpu(first, catalog), points))
        current.clear()

    for row in _rows():
        if row.get("kind") != "serve_prefill" or row.get("model") not in ARCHITECTURE_OF:
            continue
        if current and (row["model"] != current[-1]["model"] or row["input_len"] <= current[-1]["input_len"]):
            close()
        current.append(row)
    close()
    return runs


def _parameters(a: Architecture) -> float:
    """Weights of the layers (attention and a gated MLP each) and the embeddings: a dense count."""
    attention = a.hidden_size * a.head_size * (2 * a.num_attention_heads + 2 * a.kv_heads)
    mlp = 3 * a.hidden_size * (a.intermediate_size or 0)
    return a.num_hidden_layers * (attention + mlp) + a.vocab_size * a.hidden_size


def _full_attention_width(a: Architecture) -> int:
    return sum(1 for w in a.layer_windows() if w is None) * a.num_attention_heads * a.head_size


def _fit(points: tuple[tuple[int, float], ...]) -> tuple[float, float]:
    """Least squares of seconds per token = a + b x tokens."""
    xs = [float(n) for n, _ in points]
    ys = [t / n for n, t in points]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum((x - mx) ** 2 for x in xs)
    return my - b * mx, b


def measured_prefill_seconds(run: Run, catalog: Catalog, target: Architecture, tokens: int, tp: int, gpu: Gpu) -> float:
    """The run's prefill rate, scaled to `target` at `tokens` on `tp` x `gpu`."""
    source = catalog.models[ARCHITECTURE_OF[run.model]]
    a, b = _fit(run.points)
    hardware = (run.tp * run.gpu.fp16_tflops) / (tp * gpu.fp16_tflops)
    a_target = a * _parameters(target) / _parameters(source) * hardware
    b_target = b * _full_attention_width(target) / _full_attention_width(source) * hardware
    return a_target * tokens + b_target * tokens * tokens


def test_the_published_runs_show_the_prefill_rate_falling_as_the_prompt_grows() -> None:
    runs = prefill_runs(load_catalog())
    assert len(runs) >= 3, "the three gemma-3-27b runs on 2x MI50 at 8K, 16K and 24K"
    for run in runs:
        rates = [n / t for n, t in run.points]
        assert rates == sorted(rates, reverse=True), run


def test_big_chats_stall_window_outlasts_the_slowest_published_prefill_scaled_to_its_70b_at_32k() -> None:
    """Issue: a long prompt was taken for a hang. Llama 3.3 70B AWQ at 32K on two MI60 prefills, at the
    slowest published rate, for about 470 s: the old window (491 s) left no room for a slower run."""
    from components.planning.rules import server_contexts, server_stall_seconds
    from tests.stacks import load, values_of

    catalog = load_catalog()
    big = server_contexts(load(values_of("big-chat")).settings)["vllm"]
    assert (big.vllm.model, big.vllm.tensor_parallel_size, big.vllm.max_model_len) == (
        "casperhansen/llama-3.3-70b-instruct-awq",
        2,
        32768,
    )
    target, mi60 = catalog.models[big.vllm.model], catalog.gpus["mi60"]
    expected = max(
        measured_prefill_seconds(run, catalog, target, big.vllm.max_model_len, 2, mi60) for run in prefill_runs(catalog)
    )
    assert 300 < expected < 1200, expected
    window = server_stall_seconds(big, catalog)
    assert window >= RUN_TO_RUN * expected, f"a {window} s window, a prefill measured at {expected:.0f} s"


def test_the_prefill_estimate_covers_every_published_run_of_the_model_it_was_measured_on() -> None:
    from components.planning.prefill import longest_prefill_seconds

    catalog = load_catalog()
    for run in prefill_runs(catalog):
        arch = catalog.models[ARCHITECTURE_OF[run.model]]
        for tokens, seconds in run.points:
            assert longest_prefill_seconds(arch, tokens, run.tp, run.gpu) >= RUN_TO_RUN * seconds, (run.model, tokens)
