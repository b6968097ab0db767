"""MoE, sliding-window and vision models planned from their recorded config.json (tests/data/configs)."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from components.planning.catalog import Architecture, load_catalog
from components.planning.memory import (
    PROFILES,
    MemoryInputs,
    encoder_output_width,
    encoder_profile,
    encoder_reserve_bytes,
    encoder_tokens_per_item,
    kv_layout,
    plan,
    weights_bytes_per_rank,
)
from components.planning.rules import assess
from tests.conftest import DATA
from tests.stacks import errors, load, values_of, vllm_context

CONFIGS = DATA / "configs"
# Quantization blocks for the tests' quantized variants: the recorded configs are the base releases
# (SOURCES.yaml says which quantized config.json files were not found); these are the scenario's inputs.
GPTQ4 = {"quant_method": "gptq", "bits": 4, "group_size": 128, "desc_act": False, "sym": True}
AWQ4 = {"quant_method": "awq", "bits": 4, "group_size": 128, "zero_point": True}


def config(name: str, **changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((CONFIGS / f"{name}.json").read_text())
    return {**data, **changes}


def stack(model: str, arch: dict[str, Any], **vllm: Any) -> dict[str, Any]:
    values = values_of("big-chat")
    values["vllm"] = {**values["vllm"], "model": model, "architecture": arch, **vllm}
    return values


@pytest.mark.parametrize("name", sorted(p.stem for p in CONFIGS.glob("*.json")))
def test_every_recorded_config_json_is_read_as_it_is(name: str) -> None:
    arch = Architecture.model_validate(config(name))
    assert arch.num_hidden_layers > 0 and arch.architecture_class in ("dense", "moe", "sliding-window")


def test_qwen3_30b_a3b_gptq_on_two_mi60_at_32k_plans_and_fits() -> None:
    loaded = load(stack("Qwen/Qwen3-30B-A3B-GPTQ-Int4", config("Qwen--Qwen3-30B-A3B", quantization_config=GPTQ4)))
    a = assess(vllm_context(loaded.settings), load_catalog())
    assert a.problems == [] and a.capacity is not None and a.capacity.fits
    c = a.capacity
    assert c.architecture_class == "moe" and "128 experts of 768 split by TP in 48 layers" in c.modelled
    # 30.5B parameters at 4 bits: ~16 GiB in all, ~8 GiB per GPU at TP 2 (fp16 embeddings and lm_head)
    assert 7.0 < c.weights_gib_per_gpu < 9.5
    assert c.kv_cache_tokens > 32768


def test_expert_weights_split_by_tensor_parallel() -> None:
    arch = Architecture.model_validate(config("Qwen--Qwen3-30B-A3B", quantization_config=GPTQ4))
    one, two = weights_bytes_per_rank(arch, 1, 2), weights_bytes_per_rank(arch, 2, 2)
    assert 1.8 < one / two < 2.0  # experts and attention halve; the replicated router does not


def test_shared_expert_and_router_are_counted() -> None:
    arch = Architecture.model_validate(config("Qwen--Qwen1.5-MoE-A2.7B-Chat"))
    assert arch.shared_expert_size == 5632
    no_shared = arch.model_copy(update={"shared_expert_intermediate_size": 0})
    extra = weights_bytes_per_rank(arch, 1, 2) - weights_bytes_per_rank(no_shared, 1, 2)
    assert extra == 24 * (3 * 2048 * 5632 * 2 + 2048 * 2)


@pytest.mark.parametrize(
    ("changes", "dense"),
    [
        ({}, 0),
        ({"mlp_only_layers": [0, 1]}, 2),
        ({"decoder_sparse_step": 2}, 24),
        ({"first_k_dense_replace": 3}, 3),
    ],
)
def test_dense_layers_of_moe_models(changes: dict[str, Any], dense: int) -> None:
    assert Architecture.model_validate(config("Qwen--Qwen3-30B-A3B", **changes)).dense_mlp_layers == dense


@pytest.mark.parametrize(
    ("tp", "message"),
    [
        (2, None),
        (4, None),  # 192 per GPU: moe_wna16 halves the group to 64
        (16, "splits the experts' moe_intermediate_size 768 into 48 per GPU"),
    ],
)
def test_moe_tensor_parallel_against_the_quantization_group(tp: int, message: str | None) -> None:
    from components.planning.rules import _moe_rules

    arch = Architecture.model_validate(config("Qwen--Qwen3-30B-A3B", quantization_config=GPTQ4))
    found = _moe_rules(arch, tp, "test")
    assert (found[0].message if found else None) is None if message is None else message in found[0].message


def test_gemma3_sliding_window_kv_is_counted_as_vllm_counts_it() -> None:
    arch = Architecture.model_validate(config("google--gemma-3-27b-it"))
    windows = arch.layer_windows()
    assert windows.count(None) == 10 and windows.count(1024) == 52 and windows[5] is None
    layout = kv_layout(arch, 2, 2, 16)
    # 10 full layers = group size; 52 sliding -> 6 groups (8 padding slots): 7 groups of 10 layers
    assert (layout.layers, layout.groups) == (10, 7)
    page = 16 * 2 * 8 * 128 * 2
    available = 10 * page * 7000
    assert layout.tokens(available, 16) == 7000 // 7 * 16


def test_gemma3_27b_awq_on_two_mi60_at_32k_plans_with_a_float16_warning() -> None:
    arch = config("google--gemma-3-27b-it", quantization_config=AWQ4)
    loaded = load(stack("google/gemma-3-27b-it-AWQ", arch, max_model_len=32768))
    a = assess(vllm_context(loaded.settings), load_catalog())
    assert a.problems == [] and a.capacity is not None and a.capacity.fits
    assert "52 sliding-window layers (window 1024) and 10 full: 7 KV cache groups" in a.capacity.modelled
    assert any("runs in float16" in w.message and "inf/NaN" in w.message for w in a.warnings)
    assert a.capacity.encoder_weights_gib_per_gpu > 0.1  # SigLIP tower, unquantized


def test_vision_language_model_plans_with_its_encoder() -> None:
    loaded = load(stack("Qwen/Qwen2.5-VL-7B-Instruct", config("Qwen--Qwen2.5-VL-7B-Instruct"), max_model_len=32768))
    c = assess(vllm_context(loaded.settings), load_catalog()).capacity
    assert c is not None and c.fits
    assert "vision encoder (32 layers, hidden 1280)" in c.modelled
    # ~675M parameters in fp16; the 32 blocks split by TP 2, patch embedding and merger replicated
    assert 0.55 < c.encoder_weights_gib_per_gpu < 0.8
    assert c.encoder_reserve_gib_per_gpu > 0


def test_unmodelled_architecture_warns_and_skips_the_verdict() -> None:
    arch = config("Qwen--Qwen3-30B-A3B", quantization_config={"quant_method": "mxfp4"})
    loaded = load(stack("x/mxfp4-moe", arch))
    a = assess(vllm_context(loaded.settings), load_catalog())
    assert a.problems == [] and a.capacity is not None and a.capacity.unmodelled == "mxfp4 quantization"
    assert any("the fit verdict is skipped" in w.message for w in a.warnings)


def test_shipped_plans_keep_their_figures() -> None:
    big = assess(vllm_context(load(values_of("big-chat")).settings), load_catalog()).capacity
    small = assess(vllm_context(load(values_of("small-chat")).settings), load_catalog()).capacity
    assert big is not None and small is not None
    assert (big.kv_cache_tokens, small.kv_cache_tokens) == (58176, 91584)


def test_dense_plan_is_unchanged_by_the_new_architectures() -> None:
    llama = load_catalog().models["casperhansen/llama-3.3-70b-instruct-awq"]
    c = plan(MemoryInputs(llama, 31.984375, 0.9, 2, 32768, 2048, 256, "float16", PROFILES["vllm-0.11"], True))
    assert c.kv_cache_tokens == 58176 and c.architecture_class == "dense" and c.kv_groups == 1


def test_architecture_file_beside_the_stack(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "qwen3-14b.json").write_text((CONFIGS / "Qwen--Qwen3-14B.json").read_text())
    values = values_of("big-chat")
    values["vllm"] = {**values["vllm"], "model": "Qwen/Qwen3-14B", "architecture_file": "qwen3-14b.json"}
    arch = load(values).settings.servers["vllm"].architecture
    assert arch is not None and arch.num_hidden_layers == 40
    values["vllm"]["architecture_file"] = "nope.json"
    [line] = errors(values)
    assert "rocm-inference:vllm.architecture_file is 'nope.json', which cannot be read beside the stack file" in line
    (tmp_path / "bad.json").write_text('{"hidden_size": 5120}')
    values["vllm"]["architecture_file"] = "bad.json"
    assert any("rocm-inference:vllm.architecture.num_hidden_layers is required" in ln for ln in errors(values))


def test_the_catalog_holds_the_models_gfx906_users_run_each_with_its_source() -> None:
    import yaml as _yaml

    from components.planning.catalog import CATALOG_FILE

    models = load_catalog().models
    sources = _yaml.safe_load((DATA / "configs" / "SOURCES.yaml").read_text())
    assert len(models) >= 12
    for model in models:
        assert model in sources and sources[model].get("gfx906"), f"{model} has no recorded source"
    text = CATALOG_FILE.read_text()
    assert "nlzy/vllm-gfx906 commit cf3b073ea" in text, "the catalog says who runs each model on gfx906"


def qwen3_vl_style(model_type: str, deepstack: list[int]) -> Architecture:
    """A Qwen-VL model from the recorded Qwen2.5-VL config with Qwen3-VL's encoder shape (patch 16,
    merge 2, gelu fc1/fc2, deepstack layers): the vLLM 0.11.2 arithmetic under test reads only these."""
    base = config("Qwen--Qwen2.5-VL-7B-Instruct")
    vision = {**base["vision_config"], "patch_size": 16, "hidden_act": "gelu_pytorch_tanh"}
    vision["deepstack_visual_indexes"] = deepstack
    return Architecture.model_validate({**base, "model_type": model_type, "vision_config": vision})


def test_qwen3_vl_profiles_its_largest_item_and_deepstack_width() -> None:
    # qwen3_vl.py _get_vision_info: the processor's size["longest_edge"] 16777216 px -> 16384 tokens
    # at patch 16 x merge 2 for an image; Qwen2-VL's 12845056 px would give 12544. The cached output is
    # out_hidden_size x (1 + 3 deepstack) wide.
    qwen3 = qwen3_vl_style("qwen3_vl_moe", [8, 16, 24])
    qwen2 = qwen3_vl_style("qwen2_5_vl", [])
    assert encoder_tokens_per_item(qwen3) == 16384 and encoder_tokens_per_item(qwen2) == 12544
    assert encoder_output_width(qwen3) == 4 * 3584 and encoder_output_width(qwen2) == 3584
    i3 = MemoryInputs(qwen3, 32.0, 0.9, 4, 32768, 2048, 256, "float16", PROFILES["vllm-0.11"])
    i2 = dataclasses.replace(i3, arch=qwen2)
    # vLLM profiles the larger of the largest image and the largest video (gpu_model_runner.py profile_run,
    # MultiModalBudget.get_modality_with_max_tokens). Qwen3-VL's video: 24576 frames sharing 25165824 px,
    # 12288 embeddings counted 12.5 times with their timestamps (qwen3_vl.py get_max_video_tokens) -> the
    # 153600-token budget vLLM 0.11 logs; the output is padded to it in the encoder cache.
    e3 = encoder_profile(i3)
    assert e3 is not None and (e3.modality, e3.frames, e3.item_embeddings, e3.budget) == ("video", 24576, 12288, 153600)
    # Qwen2.5-VL's video: frames of the largest image while they fit max_model_len, 4 frames -> 2 x 12544.
    e2 = encoder_profile(i2)
    assert e2 is not None and (e2.modality, e2.frames, e2.item_embeddings, e2.budget) == ("video", 4, 25088, 25088)
    assert encoder_reserve_bytes(i3, 2) - encoder_reserve_bytes(i2, 2) > (153600 - 25088) * 3584 * 2
    assert plan(i3).kv_cache_tokens < plan(i2).kv_cache_tokens
    # Three more mergers (deepstack_merger_list), each the size of the main one.
    assert weights_bytes_per_rank(qwen3, 4, 2) > weights_bytes_per_rank(qwen2, 4, 2)
    c = plan(i3)
    assert "1 video of 24576 frames, 12288 embeddings each (153600 with its placeholder text)" in c.modelled
    assert "padded to 1 x 153600 x 14336 in the encoder cache" in c.modelled
    assert "estimated: non-torch memory" in c.modelled and "the vision encoder's own activations" in c.modelled
    assert "not modelled: memory other processes hold on the GPU" in c.modelled
