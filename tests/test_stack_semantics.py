"""Stacks that are valid key by key but say something that cannot be (issue 27): each refused or warned with
the stack file, the full key, what was found and what is allowed; the legitimate neighbours still pass."""

from __future__ import annotations

from typing import Any

import pytest

from tests.stacks import errors, load, set_key, values_of

FLEET_SECRETS = ("gateway_api_key",)
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _one(lines: list[str], *said: str) -> str:
    found = [line for line in lines if all(s in line for s in said)]
    assert len(found) == 1, lines
    return found[0]


# --------------------------------------------------------------------------- 16: revisions written another way


@pytest.mark.parametrize(
    ("key", "value", "said"),
    [
        (
            "vllm.model",
            "Qwen/Qwen2.5-14B-Instruct-AWQ@abc1234",
            [
                "rocm-inference:vllm.model",
                "pip's way",
                "model: Qwen/Qwen2.5-14B-Instruct-AWQ",
                "model_revision",
                "40 hex digits",
            ],
        ),
        (
            "vllm.model",
            f"Qwen/Qwen2.5-14B-Instruct-AWQ@{COMMIT}",
            ["rocm-inference:vllm.model", "pip's way", f"model_revision: {COMMIT}"],
        ),
        (
            "vllm.model",
            f"https://huggingface.co/Qwen/Qwen2.5-14B-Instruct-AWQ/commit/{COMMIT}",
            ["rocm-inference:vllm.model", "model: Qwen/Qwen2.5-14B-Instruct-AWQ", f"model_revision: {COMMIT}"],
        ),
        (
            "vllm.model_revision",
            f"Qwen/Qwen2.5-14B-Instruct-AWQ@{COMMIT}",
            ["rocm-inference:vllm.model_revision", "pip's way", f"model_revision: {COMMIT}"],
        ),
        (
            "vllm.model_revision",
            f"https://huggingface.co/Qwen/Qwen2.5-7B-Instruct/commit/{COMMIT}",
            ["rocm-inference:vllm.model_revision", "revision of Qwen/Qwen2.5-7B-Instruct,", "model is"],
        ),
        (
            "vllm.model_revision",
            "https://huggingface.co/Qwen/Qwen2.5-14B-Instruct-AWQ",
            ["rocm-inference:vllm.model_revision", "names no revision", "40 hex digits"],
        ),
    ],
)
def test_a_revision_written_pip_style_or_as_a_page_is_refused_naming_model_revision(
    key: str, value: str, said: list[str]
) -> None:
    lines = errors(set_key(values_of("small-chat"), key, value))
    line = _one(lines, *said)
    assert line.startswith("Pulumi.test.yaml: ")


@pytest.mark.parametrize(
    "value",
    [
        f"https://huggingface.co/Qwen/Qwen2.5-14B-Instruct-AWQ/commit/{COMMIT}",
        f"https://huggingface.co/Qwen/Qwen2.5-14B-Instruct-AWQ/tree/{COMMIT}",
        f"huggingface.co/qwen/qwen2.5-14b-instruct-awq/commit/{COMMIT}",
    ],
)
def test_the_commit_page_of_the_model_itself_is_taken_as_its_commit(value: str) -> None:
    settings = load(set_key(values_of("small-chat"), "vllm.model_revision", value)).settings
    assert settings.servers["vllm"].model_revision == COMMIT


@pytest.mark.parametrize("value", [COMMIT, "main", "v1.0", "refs/pr/1"])
def test_plain_revisions_stay_as_written(value: str) -> None:
    settings = load(set_key(values_of("small-chat"), "vllm.model_revision", value)).settings
    assert settings.servers["vllm"].model_revision == value


# --------------------------------------------------------------------------- 17: a host path as a volume


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("chat_ui.data_volume", "/srv/open-webui"),
        ("chat_ui.data_volume", "./webui-data"),
        ("chat_ui.data_volume", "~/webui"),
        ("chat_ui.data_volume", "data/webui"),
        ("servers.chat-a.cache_volume", "/mnt/models"),
        ("embeddings.cache_volume", "/var/cache/infinity"),
    ],
)
def test_a_host_path_as_a_volume_says_it_must_be_a_volume_name(key: str, value: str) -> None:
    lines = errors(set_key(values_of("fleet"), key, value), FLEET_SECRETS)
    line = _one(lines, f"rocm-inference:{key}")
    assert f"is {value!r}, a host path" in line and "volume name" in line and "not supported" in line


@pytest.mark.parametrize("value", ["open-webui-data", "webui_2", "chat.data"])
def test_volume_names_pass(value: str) -> None:
    settings = load(set_key(values_of("fleet"), "chat_ui.data_volume", value), FLEET_SECRETS).settings
    assert settings.chat_ui is not None and settings.chat_ui.data_volume == value


# --------------------------------------------------------------------------- 5: one machine, two spellings


@pytest.mark.parametrize(
    ("key", "value", "named"),
    [
        ("hosts.gpu-b.docker", "ssh://ops@10.0.0.5", "its bind '10.0.0.5'"),  # gpu-a's bind address
        ("hosts.gpu-b.docker", "ssh://ops@GPU-A.LAN.", "ssh://ops@gpu-a.lan"),  # case and the root's dot
        ("hosts.gpu-b.address", "Gpu-A.lan.", "ssh://ops@gpu-a.lan"),
        ("hosts.gpu-b.address", "10.0.0.5", "its bind '10.0.0.5'"),
        ("hosts.gpu-b.bind", "10.0.0.5", "its bind '10.0.0.5'"),  # the same bind address
    ],
)
def test_one_machine_written_two_ways_is_refused(key: str, value: str, named: str) -> None:
    lines = errors(set_key(values_of("fleet"), key, value), FLEET_SECRETS)
    line = _one(lines, "is the machine of rocm-inference:hosts.gpu-a")
    assert f"rocm-inference:hosts.gpu-b.{key.rsplit('.', 1)[1]}" in line and named in line
    assert "GPUs given out twice" in line


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("hosts.gpu-b.docker", "ssh://ops@gpu-a.lan:2222"),  # another port of one name: a NAT's forward
        ("hosts.gpu-b.bind", "10.0.0.50"),
        ("hosts.gpu-b.address", "gpu-a.lan2"),
        ("hosts.gpu-b.address", "gpu-b.LAN."),
    ],
)
def test_machines_that_only_look_alike_pass(key: str, value: str) -> None:
    assert errors(set_key(values_of("fleet"), key, value), FLEET_SECRETS) == []


# --------------------------------------------------------------------------- 6: replicas that are not replicas


def _warnings(values: dict[str, Any], secrets: tuple[str, ...] = FLEET_SECRETS) -> tuple[str, ...]:
    return load(values, secrets).warnings


@pytest.mark.parametrize(
    ("a", "b", "found", "other"),
    [
        (None, COMMIT, repr(COMMIT), "unset (the repository's main branch"),
        (COMMIT, None, "unset (the repository's main branch", repr(COMMIT)),
        (COMMIT, "v2", "'v2'", repr(COMMIT)),
    ],
)
def test_replicas_at_different_revisions_are_warned(a: str | None, b: str | None, found: str, other: str) -> None:
    values = values_of("fleet")
    for server, revision in (("chat-a", a), ("chat-b", b)):
        if revision is not None:
            values = set_key(values, f"servers.{server}.model_revision", revision)
    line = _one(list(_warnings(values)), "rocm-inference:servers.chat-b.model_revision")
    assert f"is {found}" in line and f"rocm-inference:servers.chat-a has {other}" in line
    assert "'llama-3.3-70b'" in line and "one model_revision" in line


def test_replicas_differing_in_revision_and_context_get_both_warnings() -> None:
    values = set_key(values_of("fleet"), "servers.chat-b.model_revision", COMMIT)
    values = set_key(values, "servers.chat-b.max_model_len", 16384)
    warned = _warnings(values)
    _one(list(warned), "servers.chat-b.model_revision")
    _one(list(warned), "servers.chat-b.max_model_len")


def test_replicas_at_one_revision_and_other_models_at_theirs_pass() -> None:
    values = set_key(values_of("fleet"), "servers.chat-a.model_revision", COMMIT)
    values = set_key(values, "servers.chat-b.model_revision", COMMIT)
    values = set_key(values, "servers.coder.model_revision", "main")
    assert not [w for w in _warnings(values) if "model_revision" in w]


# --------------------------------------------------------------------------- 7: loopback address, LAN bind

SMALL_SECRETS = ("vllm_api_key", "embeddings_api_key")


@pytest.mark.parametrize("address", [None, "localhost", "LOCALHOST", "127.0.0.1", "127.0.1.1", "::1"])
def test_a_loopback_address_on_a_host_that_binds_its_lan_address_is_warned(address: str | None) -> None:
    values = set_key(values_of("small-chat"), "host.bind", "192.168.1.20")
    values["host"].pop("address")
    if address is not None:
        values = set_key(values, "host.address", address)
    line = _one(list(_warnings(values, SMALL_SECRETS)), "rocm-inference:host.address")
    shown = address or "localhost"
    assert f"is {shown!r}" in line and "rocm-inference:host.bind is 192.168.1.20" in line
    assert "address: 192.168.1.20" in line and ("(the default)" in line) == (address is None)


def test_the_gateways_host_with_a_loopback_address_is_warned_with_the_gateways_url() -> None:
    values = set_key(values_of("fleet"), "hosts.gpu-a.address", "localhost")
    line = _one(list(_warnings(values)), "rocm-inference:hosts.gpu-a.address")
    assert "rocm-inference:hosts.gpu-a.bind is 10.0.0.5" in line and "the gateway at http://localhost:4000" in line


@pytest.mark.parametrize(
    ("bind", "address"),
    [("127.0.0.1", "localhost"), ("192.168.1.20", "192.168.1.20"), ("192.168.1.20", "box.lan")],
)
def test_an_address_that_matches_the_bind_is_not_warned(bind: str, address: str) -> None:
    values = set_key(set_key(values_of("small-chat"), "host.bind", bind), "host.address", address)
    assert not [w for w in _warnings(values, SMALL_SECRETS) if "host.address" in w]


# --------------------------------------------------------------------------- 15: GGUF and MLX repositories as models


@pytest.mark.parametrize(
    ("model", "said"),
    [
        ("TheBloke/Qwen2.5-14B-Instruct-GGUF", "a GGUF repository (its name says GGUF)"),
        ("bartowski/Qwen2.5-14B-Instruct-gguf", "a GGUF repository (its name says GGUF)"),
        ("mlx-community/Qwen2.5-14B-Instruct-4bit", "an MLX repository (it is published by mlx-community)"),
        ("lmstudio-community/Qwen2.5-14B-Instruct-MLX-4bit", "an MLX repository (its name says MLX)"),
    ],
)
def test_a_gguf_or_mlx_repository_as_a_vllm_model_says_what_it_is(model: str, said: str) -> None:
    [line] = errors(set_key(values_of("small-chat"), "vllm.model", model))
    assert line.startswith(f"Pulumi.test.yaml: rocm-inference:vllm.model is {model!r}, {said}")
    assert "vLLM does not load here" in line and "AWQ or GPTQ" in line
    assert "--write STACK" not in line and "architecture" not in line  # the advice that cannot work


def test_an_architecture_with_mlx_quantization_is_an_mlx_repository() -> None:
    from tests.test_model_tool import MLX_CONFIG

    values = set_key(values_of("small-chat"), "vllm.model", "someone/qwen-4bit")
    [line] = errors(set_key(values, "vllm.architecture", MLX_CONFIG))
    assert "rocm-inference:vllm.model is 'someone/qwen-4bit', an MLX repository (its config.json has MLX's" in line


def test_names_that_only_resemble_gguf_or_mlx_are_not_taken_for_them() -> None:
    [line] = errors(set_key(values_of("small-chat"), "vllm.model", "someone/mlxtend-7b"))
    assert "which is not in the model catalog" in line


# --------------------------------------------------------------------------- 10, 21: calibration blocks edited wrong


def _calibrated(**changes: Any) -> dict[str, Any]:
    from tests.test_calibration import CALIBRATION

    return set_key(values_of("big-chat"), "vllm.calibration", CALIBRATION | changes)


@pytest.mark.parametrize(
    ("key", "value", "said"),
    [
        ("sequence_ms", 1030.0, "1e+03 times the uncalibrated 1.03"),  # microseconds written as milliseconds
        ("allreduce_us", 0.06, "1/890 of the uncalibrated 53.4"),  # milliseconds written as microseconds
        ("moe_layer_us", 0.375, "1/1e+03 of the uncalibrated 375"),
        ("prefill_factor", 120.0, "120 times the uncalibrated 1"),  # a percentage for a factor
        ("prefill_factor", 0.01, "1/100 of the uncalibrated 1"),
        ("dequant_ops", 415.0, "100 times the uncalibrated 4.15"),
        ("experts_efficiency", 0.006, "1/75.7 of the uncalibrated 0.454"),
    ],
)
def test_a_calibration_value_no_box_could_measure_is_refused_naming_its_field(
    key: str, value: float, said: str
) -> None:
    lines = errors(_calibrated(**{key: value}))
    line = _one(lines, f"rocm-inference:vllm.calibration.{key} is {value:g}, ")
    assert said in line and "another unit" in line and "--calibrate --write" in line
    assert "max_model_len" not in line


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"prefill_factor": 0.05},
        {"prefill_factor": 0.3},
        {"sequence_ms": 20.0},
        {"allreduce_us": 3.0},
        {"weights_efficiency": 0.9, "experts_efficiency": 0.03},
    ],
)
def test_calibrations_a_box_can_measure_pass(changes: dict[str, Any]) -> None:
    assert errors(_calibrated(**changes)) == []


def test_a_block_the_fit_writes_at_its_extremes_passes() -> None:
    from components.planning.calibration import SANE, block_values, implausible, scaled
    from components.planning.performance import Efficiency

    for a, b in ((SANE[0], SANE[1]), (SANE[1], SANE[0]), (SANE[1], SANE[1])):
        eff = scaled(Efficiency(), a, b, a)  # what fit writes for these factors
        assert implausible(block_values(eff)) == []


@pytest.mark.parametrize("factor", [5.0, 20.0])
def test_a_calibrated_prefill_that_stretches_the_hang_window_names_the_calibration(factor: float) -> None:
    warned = load(_calibrated(prefill_factor=factor)).warnings
    line = _one(list(warned), "rocm-inference:vllm.calibration.prefill_factor")
    assert f"is {factor:g}: " in line and "stall_timeout" in line and "against 906 s uncalibrated" in line
    assert not [w for w in warned if "rocm-inference:vllm.max_model_len" in w]


# --------------------------------------------------------------------------- 9: download settings on the server


@pytest.mark.parametrize(
    ("variable", "field"),
    [
        ("HF_ENDPOINT", "download.endpoint"),
        ("HTTPS_PROXY", "download.proxy (a proxy with a login: the secret rocm-inference:download_proxy)"),
        ("https_proxy", "download.proxy"),
        ("Http_Proxy", "download.proxy"),
        ("NO_PROXY", "download.no_proxy"),
        ("no_proxy", "download.no_proxy"),
    ],
)
def test_download_variables_in_a_servers_environment_are_warned_with_the_download_key(
    variable: str, field: str
) -> None:
    values = set_key(values_of("fleet"), f"servers.chat-a.environment.{variable}", "http://10.0.0.1:3128")
    line = _one(list(_warnings(values)), "rocm-inference:servers.chat-a.environment has")
    assert f"has {variable!r}, which reaches only the vLLM server" in line and "offline" in line
    assert f"set rocm-inference:servers.chat-a.{field}" in line and "10.0.0.1" not in line


def test_a_download_variable_as_a_secret_entry_is_warned_without_its_value() -> None:
    secrets = (*FLEET_SECRETS, "servers.coder.environment.HTTPS_PROXY")
    line = _one(list(load(values_of("fleet"), secrets).warnings), "rocm-inference:servers.coder.environment has")
    assert "'HTTPS_PROXY' (a secret entry)" in line and "rocm-inference:download_proxy" in line


def test_the_single_host_form_names_its_own_key() -> None:
    values = set_key(values_of("small-chat"), "vllm.environment.HF_ENDPOINT", "https://hf-mirror.example")
    line = _one(list(_warnings(values, ())), "rocm-inference:vllm.environment has")
    assert "set rocm-inference:vllm.download.endpoint" in line


@pytest.mark.parametrize(
    ("key", "value", "said"),
    [
        ("vllm.download.proxy", "http://ops:Hunter2-proxy-pass@proxy.lan:3128", "a password in a URL"),
        ("vllm.download.endpoint", "hf-mirror.example", "must be a URL such as"),
        ("vllm.download.proxy", "proxy.lan:3128", "must be a URL such as"),
    ],
)
def test_download_settings_that_cannot_work_are_refused_without_echoing_a_secret(
    key: str, value: str, said: str
) -> None:
    line = _one(errors(set_key(values_of("small-chat"), key, value)), f"rocm-inference:{key}")
    assert said in line and "Hunter2" not in line
    if "password" in said:
        assert "pulumi config set --secret rocm-inference:download_proxy" in line


def test_a_plain_proxy_and_the_secret_one_together_are_refused() -> None:
    values = set_key(values_of("small-chat"), "vllm.download.proxy", "http://proxy.lan:3128")
    line = _one(errors(values, ("download_proxy",)), "rocm-inference:vllm.download.proxy")
    assert "and so is the secret rocm-inference:download_proxy" in line


@pytest.mark.parametrize(
    "values",
    [
        set_key(values_of("fleet"), "servers.chat-a.download", {"endpoint": "https://hf-mirror.example"}),
        set_key(
            values_of("fleet"), "servers.chat-a.download", {"proxy": "socks5h://10.0.0.1:1080", "no_proxy": "*.lan"}
        ),
        # Infinity downloads its model at its own start: the proxy belongs in its environment
        set_key(values_of("fleet"), "embeddings.environment.HTTPS_PROXY", "http://proxy.lan:3128"),
        set_key(values_of("fleet"), "servers.chat-a.environment.VLLM_LOGGING_LEVEL", "INFO"),
    ],
)
def test_download_settings_in_their_place_pass_quietly(values: dict[str, Any]) -> None:
    assert not [w for w in _warnings(values) if "download" in w]


# --------------------------------------------------------------------------- 4: the chat page against its stack


def _ui_env(stack: str, **env: str) -> dict[str, Any]:
    values = values_of(stack)
    values["chat_ui"] = {**values["chat_ui"], "environment": env}
    return values


def _fleet_errors(values: dict[str, Any]) -> list[str]:
    return errors(values, FLEET_SECRETS)


@pytest.mark.parametrize(
    ("env", "named", "said"),
    [
        (
            {"DEFAULT_MODELS": "casperhansen/llama-3.3-70b-instruct-awq"},
            "DEFAULT_MODELS naming 'casperhansen/llama-3.3-70b-instruct-awq'",
            "the Hub id of the model the stack serves as 'llama-3.3-70b'",
        ),
        (
            {"DEFAULT_PINNED_MODELS": "Qwen/Qwen2.5-7B-Instruct-AWQ"},
            "DEFAULT_PINNED_MODELS naming 'Qwen/Qwen2.5-7B-Instruct-AWQ'",
            "write 'qwen2.5-7b'",
        ),
        ({"TASK_MODEL_EXTERNAL": "gpt-4o-mini"}, "TASK_MODEL_EXTERNAL naming 'gpt-4o-mini'", "no server of the stack"),
        ({"TASK_MODEL": "llama3.2:3b"}, "TASK_MODEL naming 'llama3.2:3b'", "'llama-3.3-70b', 'qwen2.5-7b'"),
        ({"DEFAULT_MODELS": "llama-3.3-70b,mistral-7b"}, "DEFAULT_MODELS naming 'mistral-7b'", "no server"),
    ],
)
def test_the_page_naming_a_model_no_server_serves_is_refused(env: dict[str, str], named: str, said: str) -> None:
    line = _one(_fleet_errors(_ui_env("fleet", **env)), "rocm-inference:chat_ui.environment has " + named)
    assert said in line


@pytest.mark.parametrize(
    "env",
    [
        {"DEFAULT_MODELS": "llama-3.3-70b"},
        {"DEFAULT_MODELS": "qwen2.5-7b, llama-3.3-70b", "TASK_MODEL_EXTERNAL": "qwen2.5-7b"},
        {"DEFAULT_PINNED_MODELS": ""},
    ],
)
def test_the_pages_models_by_their_served_names_pass(env: dict[str, str]) -> None:
    assert _fleet_errors(_ui_env("fleet", **env)) == []


def test_a_server_without_a_served_name_is_named_by_its_hub_id() -> None:
    assert errors(_ui_env("big-chat", DEFAULT_MODELS="casperhansen/llama-3.3-70b-instruct-awq")) == []


@pytest.mark.parametrize(
    ("key", "value", "said"),
    [
        ("query_prefix", "query: ", "the prefix of intfloat/"),  # e5's kept after switching to nomic
        ("document_prefix", "passage: ", "whose prefix is 'search_document: '"),
        ("query_prefix", "search_query:", "without the separator it was trained with: Open WebUI joins"),
        ("document_prefix", "search_document", "write 'search_document: '"),
    ],
)
def test_embedding_prefixes_of_another_model_or_without_their_separator_are_refused(
    key: str, value: str, said: str
) -> None:
    values = set_key(values_of("big-chat"), f"chat_ui.{key}", value)
    line = _one(errors(values), f"rocm-inference:chat_ui.{key} is {value!r}")
    assert said in line and "nomic-ai/nomic-embed-text-v1.5" in line


@pytest.mark.parametrize(
    ("model", "key", "value", "said"),
    [
        ("BAAI/bge-small-en-v1.5", "query_prefix", "search_query: ", "the prefix of nomic-ai/"),
        ("BAAI/bge-small-en-v1.5", "query_prefix", "Represent this sentence for searching", "without a separator"),
        ("nomic-ai/nomic-embed-text-v1.5", "query_prefix", "find: ", "not nomic-ai/nomic-embed-text-v1.5's own"),
    ],
)
def test_doubtful_prefixes_are_warned(model: str, key: str, value: str, said: str) -> None:
    values = set_key(set_key(values_of("big-chat"), "embeddings.model", model), f"chat_ui.{key}", value)
    line = _one(list(load(values).warnings), f"rocm-inference:chat_ui.{key} is {value!r}")
    assert said in line


@pytest.mark.parametrize(
    ("model", "overrides"),
    [
        ("nomic-ai/nomic-embed-text-v1.5", {"query_prefix": "search_query: ", "document_prefix": "search_document: "}),
        ("nomic-ai/nomic-embed-text-v1.5", {"query_prefix": "", "document_prefix": ""}),
        ("intfloat/e5-large-v2", {"query_prefix": "query: "}),
        ("BAAI/bge-small-en-v1.5", {"query_prefix": "Represent this sentence for searching relevant passages: "}),
    ],
)
def test_prefixes_of_the_model_itself_pass_quietly(model: str, overrides: dict[str, str]) -> None:
    values = set_key(values_of("big-chat"), "embeddings.model", model)
    values["chat_ui"] = {**values["chat_ui"], **overrides}
    assert not [w for w in load(values).warnings if "prefix" in w]


def test_a_reranker_the_offline_page_would_load_itself_is_refused() -> None:
    line = _one(errors(_ui_env("big-chat", RAG_RERANKING_MODEL="BAAI/bge-reranker-v2-m3")), "RAG_RERANKING_MODEL")
    assert "can never load it" in line and "RAG_RERANKING_ENGINE=external" in line


def test_a_reranker_served_elsewhere_passes() -> None:
    env = {
        "RAG_RERANKING_MODEL": "bge-reranker",
        "RAG_RERANKING_ENGINE": "external",
        "RAG_EXTERNAL_RERANKER_URL": "http://10.0.0.9:7998/rerank",
    }
    assert errors(_ui_env("big-chat", **env)) == []


@pytest.mark.parametrize(
    ("params", "said"),
    [
        ('{"function_calling": "native"}', "function_calling native:"),
        ('{"temperature": 0.6}', "function_calling unset, so Open WebUI's default, native,"),
    ],
)
def test_native_function_calling_towards_servers_without_a_tool_parser_is_refused(params: str, said: str) -> None:
    line = _one(_fleet_errors(_ui_env("fleet", DEFAULT_MODEL_PARAMS=params)), "DEFAULT_MODEL_PARAMS")
    assert said in line and "rocm-inference:servers.chat-a, rocm-inference:servers.chat-b" in line
    assert "servers.coder refuse with a 400" in line and '"function_calling": "legacy"' in line


def test_legacy_function_calling_passes() -> None:
    env = {"DEFAULT_MODEL_PARAMS": '{"function_calling": "legacy", "temperature": 0.6}'}
    assert _fleet_errors(_ui_env("fleet", **env)) == []


def test_whether_a_server_has_a_tool_parser_is_read_from_the_plan(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fact is the image recipes' parser for the server's model (engines/vllm.py parsers_of, which its
    command line carries), not a fixed rule: where every server has one, native function calling passes."""
    from components.planning.catalog import Parsers
    from components.planning.engines import vllm

    hermes = Parsers(model_types=("llama", "qwen2"), tool_call="hermes", source="a recipe")
    values = _ui_env("fleet", DEFAULT_MODEL_PARAMS='{"function_calling": "native"}')
    assert _fleet_errors(values) != []
    monkeypatch.setattr(
        vllm, "parsers_of", lambda srv, catalog: None if srv.served_model_name == "qwen2.5-7b" else hermes
    )
    line = _one(_fleet_errors(values), "DEFAULT_MODEL_PARAMS")
    assert "rocm-inference:servers.coder refuses with a 400" in line and "chat-a" not in line
    monkeypatch.setattr(vllm, "parsers_of", lambda srv, catalog: hermes)
    assert _fleet_errors(values) == []
