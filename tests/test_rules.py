"""Every validation rule, table-driven: one valid and one or more invalid cases each."""

from __future__ import annotations

from typing import Any

import pytest

from components.planning.catalog import load_catalog
from components.planning.rules import assess
from tests.stacks import errors, load, set_key, values_of, vllm_context

QWEN72_UNPADDED = {
    "num_hidden_layers": 80,
    "hidden_size": 8192,
    "num_attention_heads": 64,
    "num_key_value_heads": 8,
    "intermediate_size": 29568,
    "vocab_size": 152064,
    "max_position_embeddings": 32768,
    "quantization_config": {"quant_method": "awq", "bits": 4, "group_size": 128},
}


def big(**changes: Any) -> dict[str, Any]:
    values = values_of("big-chat")
    for key, value in changes.items():
        values = set_key(values, key.replace("__", "."), value)
    return values


@pytest.mark.parametrize("stack", ["big-chat", "small-chat"])
def test_shipped_stacks_are_valid_and_fit(stack: str) -> None:
    loaded = load(values_of(stack))
    capacity = assess(vllm_context(loaded.settings), load_catalog()).capacity
    assert capacity is not None and capacity.fits
    assert capacity.max_concurrency >= 1
    assert loaded.warnings == ()


INVALID: list[tuple[str, dict[str, Any], tuple[str, ...], str]] = [
    # (case, values, secrets, the one expected line after "Pulumi.test.yaml: rocm-inference:")
    (
        "unknown top-level key",
        {**values_of("big-chat"), "vlm": {}},
        (),
        "vlm is not a known key (did you mean 'vllm'?); allowed: chat_ui, chat_ui_admin_password, download_proxy, embeddings, embeddings_api_key, gateway, gateway_api_key, grafana_admin_password, hf_token, host, hosts, monitoring, servers, ssh_private_key, vllm, vllm_api_key",
    ),
    (
        "unknown nested key",
        big(vllm__max_model_lenn=3),
        (),
        "vllm.max_model_lenn is not a known key (did you mean 'max_model_len'?); allowed: architecture, architecture_file, cache_volume, calibration, container_name, download, download_timeout, dtype, engine, environment, gpu_memory_utilization, gpus, health_interval, host, image, max_model_len, max_num_batched_tokens, max_num_seqs, model, model_revision, port, served_model_name, shm_size, speculative, stall_timeout, startup_timeout, tensor_parallel_size, workload",
    ),
    ("wrong type", big(vllm__max_model_len="32k"), (), "vllm.max_model_len must be an integer, got '32k'"),
    (
        "utilization above 1",
        big(vllm__gpu_memory_utilization=1.3),
        (),
        "vllm.gpu_memory_utilization must be in (0, 1], got 1.3",
    ),
    (
        "utilization zero",
        big(vllm__gpu_memory_utilization=0),
        (),
        "vllm.gpu_memory_utilization must be in (0, 1], got 0.0",
    ),
    ("port too large", big(vllm__port=70000), (), "vllm.port must be <= 65535, got 70000"),
    ("port zero", big(embeddings__port=0), (), "embeddings.port must be >= 1, got 0"),
    ("max_model_len too small", big(vllm__max_model_len=0), (), "vllm.max_model_len must be >= 16, got 0"),
    ("shm size format", big(vllm__shm_size="16q"), (), "vllm.shm_size must be a size like 16g, 512m or 1gb, got '16q'"),
    (
        "GPU not in inventory",
        big(vllm__gpus=[0, 5]),
        (),
        "vllm.gpus[1] is GPU 5, which is not in rocm-inference:host.gpus (indices [0, 1])",
    ),
    ("GPU given twice", big(vllm__gpus=[1, 1]), (), "vllm.gpus lists a GPU more than once: [1, 1]"),
    (
        "TP is not the GPU count",
        big(vllm__tensor_parallel_size=1),
        (),
        "vllm.tensor_parallel_size must equal the number of GPUs in rocm-inference:vllm.gpus (2), got 1",
    ),
    (
        "host port twice",
        big(embeddings__port=8000),
        (),
        "embeddings.port is host port 8000, which vLLM server vllm already uses (rocm-inference:vllm.port): give the "
        "embeddings server or vLLM server vllm another host port",
    ),
    (
        "render node twice in the host",
        big(**{"host__gpus[1]__render": 128}),
        (),
        "host.gpus lists render [128] more than once",
    ),
    (
        "unknown GPU",
        big(host__gpu="mi61"),
        (),
        "host.gpu is 'mi61': not a GPU of the catalog (did you mean 'mi60'?); allowed: mi100, mi210, mi50-16gb, mi50-32gb, mi60, radeon-pro-vii, radeon-vii",
    ),
    (
        "managed env var",
        big(vllm__environment={"HIP_VISIBLE_DEVICES": "0"}),
        (),
        "vllm.environment has 'HIP_VISIBLE_DEVICES', which this project sets itself (from the GPUs and secrets of the stack)",
    ),
    (
        "secret-looking env var",
        big(vllm__environment={"MY_API_TOKEN": "x"}),
        (),
        "vllm.environment has 'MY_API_TOKEN' with a name that says it is a secret: in plain text it would show in the plan, the compose export and `docker inspect`; make it a secret entry: pulumi config set --secret --path 'rocm-inference:vllm.environment.MY_API_TOKEN' VALUE (see README, Secrets)",
    ),
    (
        "docker url",
        big(host__docker="tcp://box:2375"),
        (),
        "host.docker must be unix:///path/to/docker.sock or ssh://user@host[:port], got 'tcp://box:2375'",
    ),
]


@pytest.mark.parametrize(("case", "values", "secrets", "expected"), INVALID, ids=[c[0] for c in INVALID])
def test_invalid_stacks_give_one_clear_line(
    case: str, values: dict[str, Any], secrets: tuple[str, ...], expected: str
) -> None:
    assert errors(values, secrets) == [f"Pulumi.test.yaml: rocm-inference:{expected}"]


def test_bind_beyond_loopback_needs_the_api_keys() -> None:
    wide = big(host__bind="10.0.0.5")
    [line] = errors(wide)
    assert "rocm-inference:host.bind is 10.0.0.5" in line and "rocm-inference:vllm_api_key" in line
    assert "rocm-inference:embeddings_api_key" in line
    [line] = errors(wide, ("vllm_api_key",))
    assert "vllm_api_key" not in line and "embeddings_api_key" in line
    assert load(wide, ("vllm_api_key", "embeddings_api_key")).settings.hosts["host"].bind == "10.0.0.5"
    assert load(big(host__bind="127.0.0.2")).settings.hosts["host"].bind_is_loopback


def test_all_errors_of_a_file_at_once() -> None:
    values = big(vllm__gpu_memory_utilization=2, vllm__port="x", host__gpu="")
    lines = errors({**values, "bogus": 1})
    assert len(lines) == 4
    assert {line.split(" ", 2)[1] for line in lines} == {
        "rocm-inference:bogus",
        "rocm-inference:vllm.gpu_memory_utilization",
        "rocm-inference:vllm.port",
        "rocm-inference:host.gpu",
    }


def test_unpinned_image_is_a_warning_not_an_error() -> None:
    loaded = load(big(embeddings__image="michaelf34/infinity:latest"))
    assert loaded.warnings == (
        "Pulumi.test.yaml: rocm-inference:embeddings.image is 'michaelf34/infinity:latest', an unpinned tag "
        "that moves under you: pin a released tag or a digest (the catalog pins michaelf34/infinity:0.0.77-cpu)",
    )
    assert "untagged" not in str(load(big(vllm__image="nalanzeyu/vllm-gfx906@sha256:" + "a" * 64)).warnings)
    assert len(load(big(vllm__image="nalanzeyu/vllm-gfx906")).warnings) == 1


# --------------------------------------------------------------------------- model rules


def test_70b_on_one_mi60_is_refused_with_the_reason() -> None:
    [line] = errors(big(vllm__gpus=[0], vllm__tensor_parallel_size=1))
    assert "rocm-inference:vllm.model does not fit: its weights alone take 37.1 GiB per GPU" in line
    assert "the weights are the problem, not max_model_len" in line and "more GPUs (tensor_parallel_size)" in line


def test_weights_that_do_not_fit_a_small_gpu_are_filed_under_the_model() -> None:
    [line] = errors(big(host__gpu_memory_gib=16))
    assert "rocm-inference:vllm.model does not fit: its weights alone take" in line
    assert "rocm-inference:host.gpu_memory_gib 16" in line


def test_bf16_on_gfx906_is_refused() -> None:
    assert errors(big(vllm__dtype="bfloat16")) == [
        "Pulumi.test.yaml: rocm-inference:vllm.dtype is 'bfloat16', which AMD Instinct MI60 (gfx906) does not run: "
        "allowed float16 or auto"
    ]
    assert load(big(vllm__dtype="float16")).settings.servers["vllm"].dtype == "float16"


def test_tp3_on_a_64_head_model_is_refused() -> None:
    values = big(vllm__gpus=[0, 1, 2], vllm__tensor_parallel_size=3)
    values["host"]["gpus"].append({"index": 2, "card": 3, "render": 130})
    lines = errors(values)
    assert any("vllm.tensor_parallel_size must divide the model's 64 attention heads" in line for line in lines)


def test_awq_tensor_parallel_that_breaks_the_group_size_is_refused() -> None:
    values = big(vllm__model="example/qwen2-72b-awq-unpadded", vllm__architecture=QWEN72_UNPADDED)
    assert errors(values) == [
        "Pulumi.test.yaml: rocm-inference:vllm.tensor_parallel_size splits intermediate_size 29568 into 14784 per GPU, "
        "not a multiple of the awq group_size 128: vLLM fails with 'input size not aligned with the quantized weight "
        "shape' (intermediate_size must be divisible by group_size x TP = 256), got 2"
    ]
    padded = {**QWEN72_UNPADDED, "intermediate_size": 29696}  # what Qwen's own AWQ release pads to
    assert load(set_key(values, "vllm.architecture", padded)).settings.servers["vllm"].architecture is not None


def test_unknown_model_needs_its_architecture() -> None:
    [line] = errors(big(vllm__model="someone/some-model"))
    assert "rocm-inference:vllm.model is 'someone/some-model', which is not in the model catalog" in line
    assert "its config.json, as it is, under rocm-inference:vllm.architecture" in line
    assert "python -m components.model someone/some-model --write STACK" in line


def test_inline_architecture_takes_config_json_as_it_is_and_names_a_missing_key() -> None:
    # Unknown keys inside architecture are ignored (config.json has dozens the planner never reads)...
    arch = {**QWEN72_UNPADDED, "intermediate_size": 29696, "rope_theta": 1e6, "num_experts_per_tok": 8}
    assert load(big(vllm__model="x/y", vllm__architecture=arch)).settings.servers["vllm"].architecture is not None
    # ...but a key the planner needs is named when it is missing.
    del arch["num_hidden_layers"]
    [line] = errors(big(vllm__model="x/y", vllm__architecture=arch))
    assert "rocm-inference:vllm.architecture.num_hidden_layers is required" in line
    # Unknown keys elsewhere are still refused.
    [line] = errors(big(vllm__max_model_lenn=3))
    assert "vllm.max_model_lenn is not a known key" in line


def test_max_model_len_beyond_the_models_positions_is_refused() -> None:
    values = set_key(values_of("small-chat"), "vllm.max_model_len", 65536)
    assert errors(values) == [
        "Pulumi.test.yaml: rocm-inference:vllm.max_model_len must be at most the model's max_position_embeddings "
        "32768 (vLLM refuses longer contexts), got 65536"
    ]


def test_kv_cache_too_small_says_what_fits_and_the_utilization_needed() -> None:
    [line] = errors(big(vllm__max_model_len=65536))
    assert "rocm-inference:vllm.max_model_len is 65536, but the KV cache holds" in line
    assert "use max_model_len" in line and "or raise gpu_memory_utilization to 0.94" in line
    assert "holds 58176 tokens per GPU" in line and "use max_model_len 58176 or less" in line
    [line] = errors(big(vllm__max_model_len=131072))
    assert "use max_model_len 58176 or less; no gpu_memory_utilization makes room for 131072 tokens" in line
    assert ", (" not in line


def test_gpu_memory_override_changes_the_verdict() -> None:
    assert load(big()).settings.hosts["host"].gpu_memory_gib is None
    [line] = errors(big(host__gpu_memory_gib=24))
    assert "rocm-inference:vllm.max_model_len" in line


def test_image_built_for_another_gfx_is_refused() -> None:
    [line] = errors(big(host__gpu="mi100"))
    assert line == (
        "Pulumi.test.yaml: rocm-inference:vllm.image is built for gfx906, but rocm-inference:host.gpu 'mi100' is gfx908"
    )


def test_quantization_the_image_does_not_run_is_refused() -> None:
    arch = {**QWEN72_UNPADDED, "intermediate_size": 29696, "quantization_config": {"quant_method": "fp8", "bits": 8}}
    [line] = errors(big(vllm__model="x/fp8", vllm__architecture=arch))
    assert "is quantized with fp8, which nalanzeyu/vllm-gfx906:v0.11.2-rocm6.3 does not run" in line


def test_unknown_image_and_unquantized_model_are_warnings() -> None:
    arch = {k: v for k, v in QWEN72_UNPADDED.items() if k != "quantization_config"}
    arch.update(num_hidden_layers=4, intermediate_size=2048, hidden_size=1024, num_attention_heads=16)
    loaded = load(big(vllm__model="x/tiny", vllm__architecture=arch))
    assert any("is not quantized: unquantized models are slow on gfx906" in w for w in loaded.warnings)
    loaded = load(big(vllm__image="example/vllm:1.0"))
    assert any("not in the image catalog" in w for w in loaded.warnings)


# compressed-tensors holds many number formats: the one in its config_groups is the one checked (issue 27).
def _compressed(weights: dict[str, Any], acts: dict[str, Any] | None = None) -> dict[str, Any]:
    group: dict[str, Any] = {"targets": ["Linear"], "weights": {"strategy": "channel", "symmetric": True, **weights}}
    if acts is not None:
        group["input_activations"] = {"strategy": "token", "dynamic": True, "symmetric": True, **acts}
    quant = {"quant_method": "compressed-tensors", "format": "float-quantized", "config_groups": {"group_0": group}}
    # 30 of the 80 layers: 8-bit weights that fit the two GPUs, so that only the format can refuse them
    return {**QWEN72_UNPADDED, "num_hidden_layers": 30, "intermediate_size": 29696, "quantization_config": quant}


FP8_W = {"num_bits": 8, "type": "float"}


@pytest.mark.parametrize(
    ("arch", "said"),
    [
        (_compressed(FP8_W, {"num_bits": 8, "type": "float"}), "input_activations: float, 8 bits"),  # FP8 dynamic
        (_compressed(FP8_W), "config_groups weights: float, 8 bits"),  # FP8 weights only (W8A16-FP8)
        (_compressed({**FP8_W, "group_size": 128, "strategy": "group"}), "weights: float, 8 bits"),
    ],
)
def test_a_compressed_tensors_fp8_checkpoint_is_refused_like_fp8(arch: dict[str, Any], said: str) -> None:
    [line] = errors(big(vllm__model="x/fp8-ct", vllm__architecture=arch))
    assert "is quantized with fp8 (compressed-tensors, " in line and said in line
    assert "which nalanzeyu/vllm-gfx906:v0.11.2-rocm6.3 does not run: it supports awq, gptq, compressed-tensors" in line


@pytest.mark.parametrize(
    ("arch", "scheme"),
    [
        (_compressed({"num_bits": 8, "type": "int"}, {"num_bits": 8, "type": "int"}), "w8a8-int (compressed-tensors"),
        (_compressed({"num_bits": 4, "type": "float", "group_size": 16}), "fp4 (compressed-tensors"),
    ],
)
def test_other_compressed_tensors_formats_are_warned_as_unknown_to_the_image(arch: dict[str, Any], scheme: str) -> None:
    warned = load(big(vllm__model="x/ct", vllm__architecture=arch)).warnings
    assert any(f"is quantized with {scheme}" in w and "is not known to run" in w for w in warned), warned


@pytest.mark.parametrize(
    "weights",
    [{"num_bits": 4, "type": "int", "group_size": 128, "strategy": "group"}, {"num_bits": 4, "group_size": 128}],
)
def test_a_compressed_tensors_w4a16_checkpoint_still_passes(weights: dict[str, Any]) -> None:
    arch = _compressed(weights)
    arch["quantization_config"]["format"] = "pack-quantized"
    loaded = load(big(vllm__model="x/w4a16", vllm__architecture=arch))
    assert not [w for w in loaded.warnings if "quantized with" in w]


def test_compressed_tensors_fp8_is_fp8_on_an_image_that_runs_fp8() -> None:
    from components.planning.catalog import QuantizationConfig

    quant = QuantizationConfig.model_validate(_compressed(FP8_W)["quantization_config"])
    assert quant.scheme == "fp8" and "fp8" in load_catalog().images["rocm/vllm"].quantizations
