"""Units and arithmetic of the speed model and the calibration, against figures worked out here by hand:
a calibration block read in the units it was written in, the per-token times a calibration takes from its
requests (to 1%), the advice's request counts at the workload's length, and a MoE prefill's slow end."""

from __future__ import annotations

from typing import Any

import pytest

from components.planning.calibration import CALIBRATED_BAND, block_values, efficiency_of, fit
from components.planning.catalog import load_catalog
from components.planning.performance import Efficiency, Workload, performance, step_seconds
from components.planning.prefill import ATTENTION_EFFICIENCY, MATMUL_EFFICIENCY, SLOW_END, prefill_seconds
from components.planning.rules import assess, calibrated_efficiency, server_contexts, speed_inputs_of
from components.tools import calibrate
from components.tools.load import Sample
from tests.stacks import load, set_key, values_of

# A block as `verify --calibrate --write` wrote it before the MoE latency was modelled (commit dd0463e added
# moe_layer_us): microseconds and milliseconds as the keys say.
EARLIER_BLOCK: dict[str, Any] = {
    "measured": "2026-12-02",
    "model": "casperhansen/llama-3.3-70b-instruct-awq",
    "tensor_parallel_size": 2,
    "image": "nalanzeyu/vllm-gfx906:v0.11.2-rocm6.3",
    "weights_efficiency": 0.41,
    "experts_efficiency": 0.41,
    "kv_efficiency": 0.19,
    "kv_serial": 0.5,
    "matmul_efficiency": 0.55,
    "dequant_ops": 4.2,
    "allreduce_us": 62.5,
    "sequence_ms": 1.25,
    "prefill_factor": 1.1,
}
IN_SECONDS = Efficiency(
    weights=0.41,
    experts=0.41,
    kv=0.19,
    kv_serial=0.5,
    matmul=0.55,
    dequant=4.2,
    allreduce_s=62.5e-6,
    sequence_s=1.25e-3,
    prefill=1.1,
    moe_layer_s=0.0,  # measured with the latency inside the experts' rate: it stands alone
    band=CALIBRATED_BAND,
)


def _close(a: Efficiency, b: Efficiency) -> None:
    for name in ("weights", "experts", "kv", "kv_serial", "matmul", "dequant", "allreduce_s", "sequence_s"):
        assert getattr(a, name) == pytest.approx(getattr(b, name), rel=1e-9), name
    assert (a.prefill, a.moe_layer_s, a.band) == (b.prefill, b.moe_layer_s, b.band)


def test_an_earlier_calibration_block_is_read_in_the_units_it_was_written_in() -> None:
    _close(efficiency_of(EARLIER_BLOCK), IN_SECONDS)
    # as the plan reads it from the stack file
    values = set_key(values_of("big-chat"), "vllm.calibration", EARLIER_BLOCK)
    eff, why = calibrated_efficiency(load(values).settings.servers["vllm"])
    assert why == "" and eff is not None
    _close(eff, IN_SECONDS)
    # and written back in the same units
    written = block_values(eff)
    assert {k: written[k] for k in ("allreduce_us", "sequence_ms", "moe_layer_us")} == {
        "allreduce_us": 62.5,
        "sequence_ms": 1.25,
        "moe_layer_us": 0.0,
    }


def _sample(ttft_s: float, tokens: int, decode_s: float, prompt: int = 200) -> Sample:
    return Sample(True, (ttft_s + decode_s) * 1000, ttft_s * 1000, tokens, prompt, decode_s * 1000)


def test_a_calibration_takes_the_time_per_output_token_and_the_prefill_from_its_requests(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """24 output tokens streamed over 1.104 s and 1.196 s after the first: 23 steps of 48 and 52 ms, 50 ms
    the median. The first token came at 0.35 s: a prefill of 0.30 s and one step. The first request (a cold
    one, 130 ms a step) is left out: with it, the median would be 52 ms."""
    rounds = {
        1: [_sample(2.0, 24, 2.99), _sample(0.35, 24, 1.104), _sample(0.35, 24, 1.196)],
        4: [_sample(0.5, 24, 2.3)] * 12,  # four at once: 100 ms a step
    }
    monkeypatch.setattr(calibrate, "run_load", lambda base, payload, key, batch, **kw: (rounds[batch], 1.0))
    one = calibrate.measure_run("http://127.0.0.9:1/v1", "m", None, 1, 200, 24, 10.0)
    assert one.batch == 1 and one.prompt_tokens == 200
    assert one.step_s == pytest.approx(0.050, rel=0.01)
    assert one.prefill_s == pytest.approx(0.300, rel=0.01)
    assert one.context_tokens == pytest.approx(212, rel=0.01)  # the prompt and half the output
    four = calibrate.measure_run("http://127.0.0.9:1/v1", "m", None, 4, 200, 24, 10.0)
    assert (four.batch, four.prefill_s) == (4, None)
    assert four.step_s == pytest.approx(0.100, rel=0.01)
    # fitted, the model gives those steps back: 50 ms alone (20 tokens/s), 100 ms four at once
    ctx = server_contexts(load(values_of("big-chat")).settings)["vllm"]
    inputs = speed_inputs_of(ctx, load_catalog())
    assert inputs is not None
    server = inputs[0]
    eff = fit(server, [one, four]).efficiency
    assert performance(server, Workload(200, 24, 1), eff).decode_tokens_per_s.estimate == pytest.approx(20, rel=0.01)
    assert step_seconds(server, 4, 212, eff) == pytest.approx(0.100, rel=0.01)


def _assessed(max_num_seqs: int | None) -> tuple[int, list[str]]:
    values = set_key(
        values_of("small-chat"), "vllm.workload", {"prompt_tokens": 8000, "output_tokens": 1000, "concurrency": 64}
    )
    if max_num_seqs is not None:
        values = set_key(values, "vllm.max_num_seqs", max_num_seqs)
    a = assess(server_contexts(load(values).settings)["vllm"], load_catalog())
    assert a.capacity is not None
    return a.capacity.kv_cache_tokens, a.advice


def test_the_advice_counts_the_requests_the_kv_cache_holds_at_the_workloads_length() -> None:
    """Requests of 8,000 + 1,000 tokens: the KV cache holds its tokens over 9,000 of them, not over
    max_model_len (16,384), which would say about half as many."""
    kv, advice = _assessed(2)
    holds = kv // 9000
    assert holds != kv // 16384 and holds < 64
    assert advice[0] == (
        f"{64 - 2} of the 64 requests queue behind max_num_seqs 2: the KV cache holds {holds} such requests, so "
        f"raise max_num_seqs to {holds}"
    )
    kv, advice = _assessed(None)
    holds = kv // 9000
    assert advice[0] == (
        f"{64 - holds} of the 64 requests queue: the KV cache holds {holds} requests of 9,000 tokens; more GPU "
        "memory for it (gpu_memory_utilization, a shorter max_model_len does not help) or another replica would "
        "serve them"
    )


def test_a_moe_prefills_estimate_counts_the_routed_experts_and_its_slow_end_every_expert() -> None:
    """Qwen3-30B-A3B, by its model card: 30.5B parameters, 3.3B activated per token; 48 layers of 32 heads of
    128, all full attention. 8,192 tokens on one MI50 (26.5 TFLOPS FP16)."""
    arch = load_catalog().models["Qwen/Qwen3-30B-A3B"]
    gpu = load_catalog().gpus["mi50-32gb"]
    n, peak = 8192, 26.5e12
    attention = 4 * (32 * 128) * 48 * (n * n / 2) / (peak * ATTENTION_EFFICIENCY)
    routed = 2 * 3.3e9 * n / (peak * MATMUL_EFFICIENCY)
    every = 2 * 30.5e9 * n / (peak * MATMUL_EFFICIENCY)
    s = prefill_seconds(arch, n, 1, gpu)
    assert s.estimate == pytest.approx(routed + attention, rel=0.02)
    assert s.high == pytest.approx(SLOW_END * (every + attention), rel=0.02)
    # the slow end is far above the estimate for the experts alone, not the band's usual 1.6x
    assert s.high / s.estimate > 3
