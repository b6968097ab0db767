"""The maintained gfx906 image line (aiinfos/vllm-gfx906-mobydick) in the catalog, its recipes' flags on the command
line, and the tool-call parsers that decide whether the chat page calls functions natively.

A stack picks the image; the flags follow the image it picked. The seed's image keeps its command (and
`plan --against` shows no change for the shipped stacks: tests/test_plan_tool.py reads their plans).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from components.planning.catalog import load_catalog
from components.planning.chat_ui import function_calling
from components.planning.engines.vllm import capture_sizes, parsers_of, vllm_command
from components.settings import ServerSettings
from tests.conftest import shipped_plan
from tests.stacks import errors, load, plan_values, set_key, values_of

MOBYDICK = "aiinfos/vllm-gfx906-mobydick:v0.23.1rc0.x-rocm7.2.1-pytorch2.11.0"
SEED = "nalanzeyu/vllm-gfx906:v0.11.2-rocm6.3"

# A Qwen3.5-family hybrid MoE given inline, as a user gives a model the catalog lacks (its config.json keys:
# model_type qwen3_5_moe picks the family's parsers; the layer types make the memory plan a warning only).
QWEN35_MOE: dict[str, Any] = {
    "architectures": ["Qwen3_5MoeForConditionalGeneration"],
    "model_type": "qwen3_5_moe",
    "tie_word_embeddings": False,
    "text_config": {
        "model_type": "qwen3_5_moe_text",
        "hidden_size": 2048,
        "num_hidden_layers": 40,
        "num_attention_heads": 16,
        "num_key_value_heads": 2,
        "head_dim": 256,
        "vocab_size": 248320,
        "max_position_embeddings": 262144,
        "num_experts": 256,
        "num_experts_per_tok": 8,
        "moe_intermediate_size": 512,
        "shared_expert_intermediate_size": 512,
        "layer_types": (["linear_attention"] * 3 + ["full_attention"]) * 10,
        "mtp_num_hidden_layers": 1,
    },
    "quantization_config": {"quant_method": "awq", "bits": 4, "group_size": 128, "zero_point": True},
}


def _on_mobydick(values: dict[str, Any], key: str = "vllm") -> dict[str, Any]:
    out = set_key(values, f"{key}.image", MOBYDICK)
    out = set_key(out, f"{key}.model", "QuantTrio/Qwen3.5-35B-A3B-AWQ")
    return set_key(out, f"{key}.architecture", QWEN35_MOE)


def _server(values: dict[str, Any]) -> ServerSettings:
    s = load(values).settings
    return s.servers["vllm"]


def test_the_catalog_pins_the_lines_published_image_and_knows_latest_moves() -> None:
    c = load_catalog()
    image = c.image(MOBYDICK)
    assert image is not None and image.gfx == ("gfx906",)
    assert (image.vllm, image.rocm, image.torch, image.model_runner) == ("0.23.1rc0", "7.2.1", "2.11.0", "V1")
    assert image.environment["HSA_OVERRIDE_GFX_VERSION"] == "9.0.6"
    assert image.host_driver is not None and "dkms" in image.host_driver.lower()
    tags = c.image_tags(MOBYDICK)
    assert tags is not None and tags.pinned == MOBYDICK.split(":")[1] and "latest" in tags.moving
    # every parser family says where its recipe is, and no model type is claimed by two families
    types = [t for p in image.parsers.values() for t in p.model_types]
    assert len(types) == len(set(types)) and all(":README.md:" in p.source for p in image.parsers.values())
    # the seed's image carries none of it: its servers keep their command
    seed = c.image(SEED)
    assert seed is not None and not seed.parsers and not seed.environment and seed.recipe_dtype is None


def test_the_lines_moving_tag_is_warned_with_the_pinned_one_like_the_seeds() -> None:
    values = set_key(_on_mobydick(values_of("big-chat")), "vllm.image", "aiinfos/vllm-gfx906-mobydick:latest")
    assert not errors(values)
    found = "\n".join(load(values).warnings)
    assert "vllm.image" in found and "unpinned tag" in found and MOBYDICK in found, found


def test_a_qwen35_server_on_the_line_carries_its_recipes_flags_and_parsers(tmp_path: Path) -> None:
    plan = plan_values(_on_mobydick(values_of("big-chat")), tmp_path)
    c = plan.by_name("vllm-container").inputs
    cmd = c["command"]
    assert cmd[cmd.index("--dtype") + 1] == "float16"
    # tensor parallel 2: the trimmed capture, one graph per batch size up to the recipe's 4 sequences
    assert json.loads(cmd[cmd.index("--compilation-config") + 1]) == {"cudagraph_capture_sizes": [1, 2, 3, 4]}
    tail = cmd[cmd.index("--enable-auto-tool-choice") :]
    assert tail == ["--enable-auto-tool-choice", "--tool-call-parser", "qwen3_coder", "--reasoning-parser", "qwen3"]
    env = dict(e.split("=", 1) for e in c["envs"])
    assert env["HSA_OVERRIDE_GFX_VERSION"] == "9.0.6"
    assert env["FLASH_ATTENTION_TRITON_AMD_ENABLE"] == "TRUE" and env["VLLM_USE_V2_MODEL_RUNNER"] == "0"


def test_the_stacks_own_environment_and_dtype_win_over_the_images() -> None:
    values = set_key(_on_mobydick(values_of("big-chat")), "vllm.environment", {"VLLM_USE_V2_MODEL_RUNNER": "1"})
    values = set_key(values, "vllm.max_num_seqs", 2)
    s = _server(values)
    cmd = vllm_command(s, load_catalog())
    assert capture_sizes(s, load_catalog().image(s.image)) == (1, 2)
    assert "--enable-auto-tool-choice" in cmd and cmd.count("--dtype") == 1
    plan_env = dict(s.environment)
    assert plan_env == {"VLLM_USE_V2_MODEL_RUNNER": "1"}


def test_no_parser_where_the_image_names_none_for_the_family_or_on_one_gpu_no_trimmed_capture() -> None:
    c = load_catalog()
    # the seed's model on the new image: llama has no recipe there, so no tool parser
    llama = _server(set_key(values_of("big-chat"), "vllm.image", MOBYDICK))
    assert parsers_of(llama, c) is None and "--enable-auto-tool-choice" not in vllm_command(llama, c)
    one_gpu_values = set_key(_on_mobydick(values_of("big-chat")), "vllm.tensor_parallel_size", 1)
    one_gpu = _server(set_key(one_gpu_values, "vllm.gpus", [0]))
    assert capture_sizes(one_gpu, c.image(one_gpu.image)) == ()
    assert "--compilation-config" not in vllm_command(one_gpu, c)


def test_the_seeds_servers_keep_their_command() -> None:
    cmd = shipped_plan("big-chat").by_name("vllm-container").inputs["command"]
    assert not {"--enable-auto-tool-choice", "--compilation-config", "--dtype"} & set(cmd)


# --------------------------------------------------------------------------- the chat page's function calling


def _default_params(values: dict[str, Any]) -> dict[str, Any]:
    from components.planning.chat_ui import plan

    ui = plan(load(values, ("gateway_api_key",) if "gateway" in values else ()).settings, load_catalog())
    out: dict[str, Any] = json.loads(ui.environment["DEFAULT_MODEL_PARAMS"])
    return out


def test_the_chat_page_calls_functions_natively_where_the_server_has_a_tool_parser() -> None:
    assert _default_params(_on_mobydick(values_of("big-chat"))) == {"function_calling": "native"}


def test_the_chat_page_keeps_the_legacy_mode_where_the_server_has_no_tool_parser() -> None:
    assert _default_params(values_of("big-chat")) == {"function_calling": "legacy"}


@pytest.mark.parametrize(
    ("on_new_image", "mode"),
    [((), "legacy"), (("coder",), "legacy"), (("chat-a", "chat-b"), "legacy"), (None, "native")],
)
def test_a_fleet_calls_natively_only_when_every_server_behind_the_page_has_a_parser(
    on_new_image: tuple[str, ...] | None, mode: str
) -> None:
    values = values_of("fleet")
    names = list(values["servers"]) if on_new_image is None else list(on_new_image)
    for name in names:
        values = _on_mobydick(values, f"servers.{name}")
    s = load(values, ("gateway_api_key",)).settings
    assert function_calling(s, load_catalog()) == mode


# --------------------------------------------------------------------------- speculative decoding

MTP3 = {"method": "mtp", "num_speculative_tokens": 3}


def test_mtp_on_the_line_goes_on_the_command_and_the_capture_ladder_steps_by_k_plus_one(tmp_path: Path) -> None:
    values = set_key(_on_mobydick(values_of("big-chat")), "vllm.speculative", MTP3)
    values = set_key(values, "vllm.max_num_seqs", 4)
    cmd = plan_values(values, tmp_path).by_name("vllm-container").inputs["command"]
    assert json.loads(cmd[cmd.index("--speculative-config") + 1]) == MTP3
    # the fork's TP 2 recipe: k=3 with 4 sequences captures [4, 8, 12, 16] (running.md's capture ladder)
    assert json.loads(cmd[cmd.index("--compilation-config") + 1]) == {"cudagraph_capture_sizes": [4, 8, 12, 16]}


def test_ngram_carries_its_lookup_and_needs_no_draft_layers() -> None:
    ngram = {"method": "ngram", "num_speculative_tokens": 5, "prompt_lookup_max": 4}
    s = _server(set_key(set_key(values_of("big-chat"), "vllm.image", MOBYDICK), "vllm.speculative", ngram))
    cmd = vllm_command(s, load_catalog())
    assert json.loads(cmd[cmd.index("--speculative-config") + 1]) == ngram
    assert capture_sizes(s, load_catalog().image(s.image)) == (6, 12, 18, 24)


@pytest.mark.parametrize(
    ("image", "model_is_qwen35", "spec", "expected"),
    [
        # the seed's image: no recipe recorded for speculation; the message names the image that has one
        (SEED, True, MTP3, "rocm-inference:vllm.speculative.method is 'mtp', which the catalog records no recipe"),
        (SEED, True, MTP3, f"the image that runs it: {MOBYDICK}"),
        # a model without MTP layers on the image that runs MTP
        (MOBYDICK, False, MTP3, "has no MTP draft layers vLLM runs"),
        # ngram's own keys with another method
        (MOBYDICK, True, {**MTP3, "prompt_lookup_max": 4}, "rocm-inference:vllm.speculative"),
    ],
)
def test_speculation_the_image_or_the_model_cannot_run_is_refused_naming_the_key(
    image: str, model_is_qwen35: bool, spec: dict[str, Any], expected: str
) -> None:
    values = _on_mobydick(values_of("big-chat")) if model_is_qwen35 else values_of("big-chat")
    values = set_key(set_key(values, "vllm.image", image), "vllm.speculative", spec)
    found = "\n".join(errors(values))
    assert expected in found, found


@pytest.mark.parametrize(("k", "refused"), [(2, False), (3, True), (4, False)])
def test_k_must_be_at_most_or_a_multiple_of_the_models_mtp_layers(k: int, refused: bool) -> None:
    two_layers = {**QWEN35_MOE, "text_config": {**QWEN35_MOE["text_config"], "mtp_num_hidden_layers": 2}}
    values = set_key(_on_mobydick(values_of("big-chat")), "vllm.architecture", two_layers)
    values = set_key(values, "vllm.speculative", {"method": "mtp", "num_speculative_tokens": k})
    found = "\n".join(errors(values))
    assert ("vllm.speculative.num_speculative_tokens must be at most the model's 2 MTP layers" in found) is refused


def test_speculation_on_an_image_the_catalog_lacks_is_warned_not_refused() -> None:
    values = set_key(_on_mobydick(values_of("big-chat")), "vllm.image", "example.org/own/vllm-gfx906:1.0")
    values = set_key(values, "vllm.speculative", MTP3)
    assert not errors(values)
    assert any("vllm.speculative.method is 'mtp' on an image the catalog lacks" in w for w in load(values).warnings)
