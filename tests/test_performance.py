"""The performance model (components/planning/performance.py): its shape, and its fit (bench/speed_model.py)."""

from __future__ import annotations

import importlib.util
import math
import sys
from types import ModuleType
from typing import Any

import pytest

from components.planning.catalog import load_catalog
from components.planning.performance import (
    Efficiency,
    Performance,
    Rate,
    Server,
    Workload,
    performance,
    step_parts,
)
from components.planning.prefill import longest_prefill_seconds
from tests.conftest import ROOT

CATALOG = load_catalog()
MODELS = sorted(CATALOG.models)
CHAT = Workload(1000, 300, 4)
WORKLOADS = [CHAT, Workload(16, 256, 1), Workload(8000, 500, 16), Workload(30000, 100, 64)]


def _server(model: str, tp: int = 2, kv_cache_tokens: int = 10**6, gpu: str = "mi50-32gb") -> Server:
    return Server(CATALOG.models[model], CATALOG.gpus[gpu], tp, 32768, 256, kv_cache_tokens)


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("tp", [1, 2, 4])
def test_the_physical_bound_is_never_below_the_estimate_nor_its_band(model: str, tp: int) -> None:
    for w in WORKLOADS:
        p = performance(_server(model, tp), w)
        for rate in (p.decode_tokens_per_s, p.output_tokens_per_s):
            assert rate.bound is not None
            assert rate.low <= rate.estimate <= rate.high, (model, w, rate)
            assert rate.bound >= rate.estimate, (model, w, rate)
        for times in (p.ttft_s, p.prefill_tokens_per_s, p.longest_prefill_s):
            assert times.low <= times.estimate <= times.high, (model, w, times)


@pytest.mark.parametrize("model", MODELS)
def test_more_concurrency_never_lowers_the_output_rate_until_the_kv_cache_caps_it(model: str) -> None:
    # Room for 6 requests of 1300 tokens: beyond 6 the workload queues and the rate stays put.
    server = _server(model, kv_cache_tokens=6 * 1300 + 100)
    rates = []
    for c in range(1, 13):
        p = performance(server, Workload(1000, 300, c))
        assert (p.running, p.queued) == (min(c, 6), max(0, c - 6))
        rates.append(p.output_tokens_per_s.estimate)
    assert rates == sorted(rates), rates
    assert len(set(rates[5:])) == 1, rates
    # ... and max_num_seqs caps it the same way.
    capped = Server(server.arch, server.gpu, 2, 32768, 3, 10**6)
    assert performance(capped, Workload(1000, 300, 8)).queued == 5


@pytest.mark.parametrize("model", MODELS)
def test_a_longer_prompt_never_prefills_faster_per_token(model: str) -> None:
    rates = [
        performance(_server(model), Workload(n, 100, 1)).prefill_tokens_per_s.estimate for n in (64, 512, 4096, 32768)
    ]
    assert rates == sorted(rates, reverse=True), rates


def test_one_prefill_time_serves_the_plan_and_the_stall_window() -> None:
    arch, gpu = CATALOG.models["casperhansen/llama-3.3-70b-instruct-awq"], CATALOG.gpus["mi60"]
    p = performance(Server(arch, gpu, 2, 32768, 256, 10**6), CHAT)
    assert p.longest_prefill_s.high == longest_prefill_seconds(arch, 32768, 2, gpu)
    assert p.longest_prefill_s.low < p.longest_prefill_s.estimate < p.longest_prefill_s.high


def test_the_json_carries_exactly_the_issues_fields() -> None:
    out = performance(_server("google/gemma-3-27b-it"), CHAT).as_json()
    assert set(out) == {
        "workload",
        "decode_tokens_per_s",
        "output_tokens_per_s",
        "prefill_tokens_per_s",
        "ttft_s",
        "longest_prefill_s",
    }
    assert out["workload"] == {"prompt_tokens": 1000, "output_tokens": 300, "concurrency": 4}
    assert set(out["decode_tokens_per_s"]) == set(out["output_tokens_per_s"]) == {"estimate", "low", "high", "bound"}
    assert set(out["ttft_s"]) == {"estimate", "low", "high"}


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("speed_model", ROOT / "bench" / "speed_model.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return _bench()


@pytest.fixture(scope="module")
def evaluation(bench: ModuleType) -> Any:
    return bench.evaluate()


def test_the_catalogs_constants_are_the_bench_fit(evaluation: Any) -> None:
    fitted, band = evaluation.fitted, evaluation.band
    speed = CATALOG.speed["gfx906"]
    for name in ("weights", "experts", "kv", "kv_serial", "allreduce_s", "sequence_s", "moe_layer_s"):
        assert getattr(fitted, name) == pytest.approx(getattr(speed.decode, name), rel=0.01), name
    assert fitted.dequant == pytest.approx(speed.decode.dequant_ops, rel=0.01)
    assert band.sigma == pytest.approx(speed.decode_band.sigma, abs=0.005)
    assert band.single_sigma == pytest.approx(speed.decode_band.single_sigma, abs=0.005)
    assert band.experts_sigma == pytest.approx(speed.decode_band.experts_sigma, abs=0.01)


def test_the_plan_shows_what_the_bench_evaluates_in_sample(evaluation: Any) -> None:
    """The plan's default bands (the catalog's fit) are the bench's in-sample predictions."""
    inside = evaluation.columns["in sample"]
    for p in evaluation.data:
        plan = getattr(performance(p.server, p.workload), p.metric)
        bench = inside[p.id + p.metric]
        for field in ("estimate", "low", "high"):
            assert getattr(plan, field) == pytest.approx(getattr(bench, field), rel=0.02), (p.id, field)


def test_the_bound_is_never_below_a_measured_point(evaluation: Any) -> None:
    for p in evaluation.data:
        rate = getattr(performance(p.server, p.workload), p.metric)
        if rate.bound is not None:
            assert rate.bound >= p.measured, (p.id, rate)
    for column in evaluation.columns.values():
        assert all(r.bound is None or r.bound >= p.measured for p in evaluation.data for r in [column[p.id + p.metric]])


def test_the_band_holds_the_share_it_is_fitted_to_hold(evaluation: Any) -> None:
    coverage = CATALOG.speed["gfx906"].decode_band.coverage
    inside = evaluation.figures("in sample", lambda p: p.tpot_s is not None)
    assert inside.inside >= coverage * inside.total, f"{inside.inside}/{inside.total} inside the band"


def test_the_out_of_sample_figures_do_not_regress(bench: ModuleType, evaluation: Any) -> None:
    """The figures bench/speed_model.py prints, as of the catalog's fit, on the 32 points no fit of its own
    constants saw (not the gemma prefills prefill.py's constants came from). Issue 19's targets: median error
    <= 25%, median width <= 2x, 8 of 10 inside, the bound never below; see the bench for which are met."""
    model_out = evaluation.figures("leave one model out", bench.unseen)
    assert model_out.total == 32
    assert model_out.median_error <= 0.22
    assert model_out.median_width <= 2.0
    assert model_out.inside >= 22, f"{model_out.inside}/{model_out.total} inside the band"
    source_out = evaluation.figures("leave one source out", bench.unseen)
    assert source_out.median_error <= 0.31
    assert source_out.median_width <= 2.0
    assert source_out.inside >= 22, f"{source_out.inside}/{source_out.total} inside the band"
    assert model_out.bound_below == source_out.bound_below == 0
    # A single request on TP > 1 gets its own spread, so the rest are narrow: every decode point held in sample
    # at a median width under 2x (an all-reduce share spread instead gave 2.64x).
    decode = evaluation.figures("in sample", lambda p: p.tpot_s is not None)
    assert decode.inside == decode.total and decode.median_width <= 1.95


def test_a_calibrated_band_replaces_the_fitted_one() -> None:
    server = _server("google/gemma-3-27b-it")
    fitted, calibrated = performance(server, CHAT), performance(server, CHAT, Efficiency(band=1.1))
    for p in (fitted, calibrated):
        assert p.decode_tokens_per_s.estimate == fitted.decode_tokens_per_s.estimate
    d = calibrated.decode_tokens_per_s
    assert (d.low, d.high) == pytest.approx((d.estimate / 1.1, d.estimate * 1.1))
    assert d.high / d.low < fitted.decode_tokens_per_s.high / fitted.decode_tokens_per_s.low


def test_the_band_is_wider_for_one_request_across_gpus_and_where_nothing_was_measured() -> None:
    model = "Qwen/Qwen3-14B"

    def width(rate: Rate) -> float:
        return rate.high / rate.low

    one = performance(_server(model, tp=1), Workload(1000, 300, 1)).decode_tokens_per_s
    four = performance(_server(model, tp=4), Workload(1000, 300, 1)).decode_tokens_per_s
    assert width(one) < width(four)
    batch = performance(_server(model, tp=4), Workload(1000, 300, 4)).output_tokens_per_s
    assert width(batch) < width(four)  # four requests at TP 4: the boxes agree there
    unmeasured = performance(_server(model, tp=1, gpu="mi100"), Workload(1000, 300, 1)).decode_tokens_per_s
    assert math.log(width(unmeasured)) == pytest.approx(2 * math.log(width(one)))


def test_each_moe_layer_pays_its_latency_besides_its_experts_bytes() -> None:
    server, w = _server("Qwen/Qwen3-30B-A3B", tp=1), Workload(1000, 300, 1)
    parts = step_parts(server, 1, 1150)
    assert parts["moe"] == pytest.approx(48 * CATALOG.speed["gfx906"].decode.moe_layer_s)  # every layer routes
    assert step_parts(_server("Qwen/Qwen3-32B", tp=1), 1, 1150)["moe"] == 0
    slow = performance(server, w).decode_tokens_per_s
    bytes_only = performance(server, w, Efficiency(moe_layer_s=0.0)).decode_tokens_per_s
    assert slow.estimate < bytes_only.estimate
    # a 3B-active MoE still decodes faster than a dense 32B on the same GPU
    assert slow.estimate > performance(_server("Qwen/Qwen3-32B", tp=1), w).decode_tokens_per_s.estimate


def test_a_large_batch_pays_for_its_matmuls() -> None:
    """gfx906 has no matrix cores: at 64 sequences the matmuls cost about as much as the weights' bytes."""
    server = Server(CATALOG.models["meta-llama/Llama-3.1-8B-Instruct"], CATALOG.gpus["mi50-32gb"], 1, 65536, 64, 10**6)
    parts = step_parts(server, 64, 500)
    assert 0.5 < parts["compute"] / parts["weights"] < 3
    assert step_parts(server, 1, 500)["compute"] < 0.2 * parts["weights"]


def test_the_servers_workload_block_sets_the_plans_workload_and_a_too_long_one_is_refused() -> None:
    from components.planning.rules import assess
    from tests.stacks import errors, load, set_key, values_of, vllm_context

    values = set_key(values_of("big-chat"), "vllm.workload", {"prompt_tokens": 8000, "concurrency": 2})
    a = assess(vllm_context(load(values).settings), CATALOG)
    assert a.performance is not None and not a.problems
    assert a.performance.as_json()["workload"] == {"prompt_tokens": 8000, "output_tokens": 300, "concurrency": 2}
    default = assess(vllm_context(load(values_of("big-chat")).settings), CATALOG).performance
    assert default is not None and default.workload == CHAT
    assert a.performance.ttft_s.estimate > default.ttft_s.estimate

    too_long = set_key(values_of("big-chat"), "vllm.workload", {"prompt_tokens": 32768})
    assert errors(too_long) == [
        "Pulumi.test.yaml: rocm-inference:vllm.workload.prompt_tokens and output_tokens add up to 33068 tokens, "
        "more than max_model_len 32768: vLLM refuses such requests"
    ]


def test_a_cached_prompt_prefix_shortens_the_first_token_and_not_the_decode() -> None:
    """A system prompt or a conversation's earlier turns in vLLM's prefix cache: only the rest is prefilled."""
    from components.planning.rules import assess
    from tests.stacks import errors, load, set_key, values_of, vllm_context

    def plan(workload: dict[str, int]) -> Performance:
        values = set_key(values_of("big-chat"), "vllm.workload", workload)
        a = assess(vllm_context(load(values).settings), CATALOG)
        assert a.performance is not None and not a.problems
        return a.performance

    cold = plan({"prompt_tokens": 8000, "concurrency": 1})
    warm = plan({"prompt_tokens": 8000, "concurrency": 1, "cached_prompt_tokens": 7000})
    assert warm.as_json()["workload"] == {
        "prompt_tokens": 8000,
        "output_tokens": 300,
        "concurrency": 1,
        "cached_prompt_tokens": 7000,
    }
    # The first token waits for 1,000 tokens' prefill, not 8,000 (attention grows with the prompt: more than 8x)
    assert warm.ttft_s.estimate < cold.ttft_s.estimate / 5
    # The cache saves compute, not bytes: each step still reads the whole context's KV.
    assert warm.decode_tokens_per_s == cold.decode_tokens_per_s
    assert warm.prefill_tokens_per_s == cold.prefill_tokens_per_s  # one prompt alone, cold, as the field says
    assert warm.output_tokens_per_s.estimate > cold.output_tokens_per_s.estimate

    all_of_it = set_key(values_of("big-chat"), "vllm.workload", {"prompt_tokens": 800, "cached_prompt_tokens": 800})
    assert errors(all_of_it) == [
        "Pulumi.test.yaml: rocm-inference:vllm.workload.cached_prompt_tokens must be below prompt_tokens 800, got "
        "800: vLLM computes at least a prompt's last token even when the prefix cache holds all of it"
    ]
