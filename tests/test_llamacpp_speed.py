"""The llama.cpp speed model (components/planning/llamacpp_speed.py): hand-worked figures, and its fit
(bench/llamacpp_speed.py), which never sees a held-out point."""

from __future__ import annotations

import importlib.util
import math
import sys
from dataclasses import replace
from functools import cache
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from components.planning.catalog import load_catalog
from components.planning.gguf import GgufFacts, Tensor
from components.planning.llamacpp_memory import LlamaCppArgs
from components.planning.llamacpp_speed import (
    FAMILIES,
    FITTED,
    MMQ_TILE,
    ModelTraffic,
    Setup,
    _pairs,
    block_values,
    calibrated,
    constants_of,
    decode_parts,
    decode_rate,
    expert_padding,
    kv_scale,
    prefill_parts,
    prefill_rate,
    quant_family,
    server_speed,
    split_share,
    traffic,
)
from tests import test_llamacpp_memory as memory_tests
from tests.conftest import ROOT
from tests.test_llamacpp_memory import facts_of

MI50 = load_catalog().gpus["mi50-32gb"]  # 1024 GB/s, 26.5 TFLOPs FP16
# Round constants, so the figures below can be worked by hand.
ROUND = replace(
    FITTED,
    decode=dict.fromkeys(FAMILIES, 0.5),
    kv=0.5,
    layer_s=1e-4,
    layer_hop_s=1e-3,
    allreduce_s=5e-5,
    prefill=dict.fromkeys(FAMILIES, 0.5),
    attention=2.0,
    split_serial=0.2,
    sigma=0.25,
    prefill_sigma=0.35,
    multi_sigma=0.3,
)
DENSE = ModelTraffic(
    n_layer=10,
    quant="Q8_0",
    weights_read_bytes=5.12e9,
    weights_bytes=5.12e9,
    active_parameters=1e9,
    kv_bytes_per_token=1.024e5,
)


def test_a_decoded_token_is_its_bytes_at_the_bandwidth_plus_its_latencies() -> None:
    one = decode_parts(DENSE, Setup(MI50), 1000, ROUND)
    # 5.12 GB at half of 1024 GB/s: 10 ms; 10 layers x 0.1 ms; 1000 tokens x 102.4 kB of KV at half the bandwidth.
    assert one == pytest.approx({"weights": 0.010, "layers": 0.001, "kv": 0.0002, "hops": 0.0, "allreduce": 0.0})
    rate = decode_rate(DENSE, Setup(MI50), 1000, ROUND)
    assert rate.estimate == pytest.approx(1 / 0.0112)
    # The band: z of 80% (1.2816) x sigma 0.25 either side; the bound: the same bytes at the full bandwidth.
    assert rate.high / rate.estimate == pytest.approx(math.exp(1.28155 * 0.25), rel=1e-4)
    assert rate.estimate / rate.low == pytest.approx(math.exp(1.28155 * 0.25), rel=1e-4)
    assert rate.bound == pytest.approx(1 / (0.005 + 0.0001))


def test_a_layer_split_adds_hops_and_a_row_split_divides_the_bytes_and_pays_all_reduces() -> None:
    layer = decode_parts(DENSE, Setup(MI50, num_gpus=4, split_mode="layer"), 1000, ROUND)
    assert sum(layer.values()) == pytest.approx(0.0112 + 3 * 0.001)  # no speed-up: the layers run in turn
    row = decode_parts(DENSE, Setup(MI50, num_gpus=2, split_mode="row"), 1000, ROUND)
    assert row == pytest.approx({"weights": 0.005, "layers": 0.001, "kv": 0.0001, "hops": 0.0, "allreduce": 0.0005})
    multi = decode_rate(DENSE, Setup(MI50, num_gpus=2, split_mode="tensor"), 1000, ROUND)
    assert multi.high / multi.estimate == pytest.approx(math.exp(1.28155 * math.hypot(0.25, 0.3)), rel=1e-4)


def test_a_prefill_is_its_matmuls_its_attention_bytes_and_a_read_of_the_weights_per_micro_batch() -> None:
    parts = prefill_parts(DENSE, Setup(MI50, n_ubatch=512), 512, 0, ROUND)
    assert parts["matmul"] == pytest.approx(2 * 1e9 * 512 / (26.5e12 * 0.5))  # 77.3 ms
    # 512 x 513 / 2 (query, key) pairs, 102.4 kB of K and V each, at twice the HBM bandwidth.
    assert parts["attention"] == pytest.approx(512 * 513 / 2 * 1.024e5 / 2.048e12)  # 6.57 ms
    assert parts["weights"] == pytest.approx(0.010)  # one micro-batch reads the 5.12 GB once
    total = parts["matmul"] + parts["attention"] + parts["weights"]
    assert prefill_rate(DENSE, Setup(MI50, n_ubatch=512), 512, 0, ROUND).estimate == pytest.approx(512 / total)
    # Four micro-batches of 128: the weights four times.
    assert prefill_parts(DENSE, Setup(MI50, n_ubatch=128), 512, 0, ROUND)["weights"] == pytest.approx(0.040)
    # At depth 1000, each query sees 1000 more keys.
    deep = prefill_parts(DENSE, Setup(MI50, n_ubatch=512), 512, 1000, ROUND)["attention"]
    assert deep == pytest.approx((512 * 1000 + 512 * 513 / 2) * 1.024e5 / 2.048e12)
    # Split by tensor on 4 GPUs: 1/4 of the time and 0.2 x 3/4 of it unsplit.
    assert split_share(Setup(MI50, num_gpus=4, split_mode="tensor"), ROUND) == pytest.approx(0.25 + 0.15)
    assert split_share(Setup(MI50, num_gpus=4, split_mode="layer"), ROUND) == 1.0


def test_sliding_window_pairs_and_small_micro_batches_of_a_moe() -> None:
    assert _pairs(1, 4, None) == 1 + 2 + 3 + 4
    assert _pairs(1, 4, 2) == 1 + 2 + 2 + 2
    assert _pairs(3, 6, 4) == 3 + 4 + 4 + 4
    moe = replace(DENSE, expert_count=32, expert_used=4, expert_parameters=8e8, expert_bytes=4e9)
    # 16 tokens x 4 experts each reach 32 x (1 - (28/32)^16) = 28.2 experts, 2.3 tokens each: a 64-token tile each.
    reached = 32 * (1 - (28 / 32) ** 16)
    assert expert_padding(moe, 16) == pytest.approx(MMQ_TILE * reached / 64)
    assert expert_padding(moe, 2048) == 1.0
    assert expert_padding(DENSE, 16) == 1.0


def test_a_calibration_scales_the_estimates_to_what_the_box_measured_with_its_own_band() -> None:
    setup = Setup(MI50)
    fitted_decode = decode_rate(DENSE, setup, 1000).estimate
    fitted_prefill = prefill_rate(DENSE, setup, 512, 0).estimate
    c = calibrated(DENSE, setup, (1000, fitted_decode / 2), (512, 0, fitted_prefill * 1.25))
    assert (c.decode_factor, c.prefill_factor) == pytest.approx((2.0, 0.8))
    rate = decode_rate(DENSE, setup, 1000, c)
    assert rate.estimate == pytest.approx(fitted_decode / 2)
    assert (rate.high / rate.estimate, rate.estimate / rate.low) == pytest.approx((1.2, 1.2))
    assert prefill_rate(DENSE, setup, 512, 0, c).estimate == pytest.approx(fitted_prefill * 1.25)
    assert constants_of(block_values(c)) == replace(c, decode_factor=2.0, prefill_factor=0.8)
    with pytest.raises(ValueError, match=r"decode time is 50\.00x"):
        calibrated(DENSE, setup, (1000, fitted_decode / 50), (512, 0, fitted_prefill))


@pytest.mark.parametrize(
    ("quant", "family"),
    [
        ("Q8_0", "q8_0"),
        ("UD-Q8_K_XL", "q8_0"),
        ("Q4_0", "legacy"),
        ("Q5_1", "legacy"),
        ("Q4_K_M", "k"),
        ("UD-Q4_K_XL", "k"),
        ("Q6_K", "k"),
        ("IQ4_XS", "iq"),
        ("BF16", "bf16"),
        ("F16", "f16"),
        ("MXFP4", "mxfp4"),
    ],
)
def test_quantization_families(quant: str, family: str) -> None:
    assert quant_family(quant) == family


def test_an_unknown_quantization_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="TQ1_0"):
        quant_family("TQ1_0")


def _tiny_moe() -> GgufFacts:
    meta = {
        "general.architecture": "qwen3moe",
        "qwen3moe.block_count": 2,
        "qwen3moe.embedding_length": 64,
        "qwen3moe.attention.head_count": 4,
        "qwen3moe.attention.head_count_kv": 2,
        "qwen3moe.attention.key_length": 16,
        "qwen3moe.attention.value_length": 16,
        "qwen3moe.expert_count": 4,
        "qwen3moe.expert_used_count": 2,
    }
    tensors = [Tensor("token_embd.weight", "F16", (64, 100)), Tensor("output.weight", "Q8_0", (64, 100))]
    for il in range(2):
        tensors += [
            Tensor(f"blk.{il}.attn_norm.weight", "F32", (64,)),
            Tensor(f"blk.{il}.attn_q.weight", "Q8_0", (64, 64)),
            Tensor(f"blk.{il}.ffn_gate_exps.weight", "Q4_0", (64, 32, 4)),
        ]
    return GgufFacts(("m.gguf",), meta, tuple(tensors))


def test_traffic_from_a_gguf_counts_what_a_token_reads() -> None:
    t = traffic(_tiny_moe())
    # Q8_0: 34 bytes per 32; Q4_0: 18 per 32. The input embedding is a row lookup: not read.
    output, q, experts, norms = 100 * 68, 64 * 68, 32 * 4 * 36, 2 * 64 * 4
    assert t.weights_bytes == output + 2 * q + 2 * experts + norms
    assert t.weights_read_bytes == output + 2 * q + 2 * experts / 2 + norms  # 2 of 4 experts
    assert t.expert_bytes == 2 * experts
    assert t.active_parameters == 6400 + 2 * 4096 + 2 * 64 * 32 * 4 / 2
    assert t.expert_parameters == 2 * 64 * 32 * 4
    assert t.kv_bytes_per_token == 2 * 2 * (16 + 16) * 2  # 2 layers, 2 KV heads, K and V of 16, f16
    assert t.quant == "Q8_0"
    assert dict((f, b) for f, b, _ in t.families) == pytest.approx(
        {"q8_0": (output + 2 * q) / (output + 2 * q + experts), "legacy": experts / (output + 2 * q + experts)}
    )


def test_a_planned_server_gets_bands_for_its_split_cache_types_and_micro_batch() -> None:
    facts = _tiny_moe()
    args = LlamaCppArgs(n_ctx=4096, devices=("ROCm0", "ROCm1"), cache_type_k="q8_0", cache_type_v="q8_0", n_ubatch=256)
    assert kv_scale(args) == pytest.approx(34 / 32 / 2)
    speed = server_speed(facts, args, MI50, 1000, 300)
    setup = Setup(MI50, num_gpus=2, split_mode="layer", n_ubatch=256, kv_scale=34 / 64)
    assert speed.decode_tokens_per_s == decode_rate(traffic(facts), setup, 1150)
    assert speed.prefill_tokens_per_s == prefill_rate(traffic(facts), setup, 1000)
    assert speed.caveat is None
    assert speed.as_json()["workload"] == {"prompt_tokens": 1000, "output_tokens": 300, "concurrency": 1}
    on_host = server_speed(facts, replace(args, n_cpu_moe=1), MI50, 1000, 300)
    assert on_host.caveat is not None and "host memory" in on_host.caveat


@pytest.mark.parametrize("shape", ["GQA", "SWA", "MOE", "Q8", "MAMBA"])
def test_traffic_of_the_synthetic_models_the_memory_plan_is_checked_on(shape: str, tmp_path: Path) -> None:
    facts, _ = facts_of(tmp_path, shape.lower(), getattr(memory_tests, shape))
    t = traffic(facts)
    output = facts.by_name.get("output.weight") or facts.by_name["token_embd.weight"]  # tied: token_embd again
    blocks = sum(x.nbytes for x in facts.tensors if x.name.startswith("blk."))
    assert t.weights_bytes == blocks + output.nbytes + sum(
        x.nbytes for x in facts.tensors if x.name.startswith("output_norm")
    )
    assert t.weights_read_bytes <= t.weights_bytes
    assert (t.expert_count > 0) == (shape == "MOE")
    assert (t.swa_window > 0) == (shape == "SWA")
    assert (t.kv_bytes_per_token == 0) == (shape == "MAMBA")
    assert decode_rate(t, Setup(MI50)).estimate > 0


@cache
def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("llamacpp_speed_bench", ROOT / "bench" / "llamacpp_speed.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_the_held_out_points_are_the_ones_the_rule_names_and_a_fit_refuses_them() -> None:
    bench = _bench()
    rule = yaml.safe_load((ROOT / "data" / "llamacpp" / "bench.yaml").read_text())["held_out_rule"]
    points, _ = bench.load()
    held = [p for p in points if p.set != "dev"]
    assert held and all(p.source.removeprefix("https://github.com/") not in rule["dev"] for p in held)
    assert all(p.source in rule["dev"] for p in points if p.set == "dev")
    dev = [p for p in points if p.set == "dev"]
    for fit in (bench.fit_constants, bench.calibrate, lambda ps: bench.fit_band(ps, FITTED)):
        with pytest.raises(ValueError, match="dev points only"):
            fit([*dev, held[0]])


def test_the_module_constants_are_the_bench_fit_on_the_dev_points() -> None:
    bench = _bench()
    points, _ = bench.load()
    fitted = bench.calibrate([p for p in points if p.set == "dev"])
    for name in ("kv", "layer_s", "layer_hop_s", "allreduce_s", "attention", "split_serial", "sigma"):
        assert getattr(FITTED, name) == pytest.approx(getattr(fitted, name), rel=5e-3), name
    for name in ("prefill_sigma", "multi_sigma"):
        assert getattr(FITTED, name) == pytest.approx(getattr(fitted, name), rel=5e-3), name
    assert FITTED.decode == pytest.approx(fitted.decode, rel=5e-3)
    assert FITTED.prefill == pytest.approx(fitted.prefill, rel=5e-3)
