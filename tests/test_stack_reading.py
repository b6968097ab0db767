"""The stack file read as the Pulumi CLI reads it, and keys written the way other tools write them (issue 27,
items 3, 12, 14, 18 and 19): unquoted dates and YAML 1.2's scalars, merge keys, namespaces that are almost the
project's or written as a parent key, and did-you-means across naming conventions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from components.settings import StackConfigError, read_stack_file
from components.tools.plan import main, plan_stack
from tests.conftest import ROOT
from tests.stacks import errors, set_key, values_of

BIG = (ROOT / "Pulumi.big-chat.yaml").read_text()
FLEET = (ROOT / "Pulumi.fleet.yaml").read_text()
AFTER_VLLM = "    shm_size: 16g\n"
CALIBRATION = """    calibration:
      measured: {measured}
      model: casperhansen/llama-3.3-70b-instruct-awq
      tensor_parallel_size: 2
      image: nalanzeyu/vllm-gfx906:v0.11.2-rocm6.3
      weights_efficiency: 0.3
      experts_efficiency: 0.06
      kv_efficiency: 0.2
      kv_serial: 0.45
      matmul_efficiency: 0.6
      dequant_ops: 4.0
      allreduce_us: 60.0
      sequence_ms: 1.0
      prefill_factor: 1.0
"""


def written(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "Pulumi.mine.yaml"
    path.write_text(text)
    return path


def with_vllm(block: str) -> str:
    assert AFTER_VLLM in BIG
    return BIG.replace(AFTER_VLLM, AFTER_VLLM + block, 1)


def plan(tmp_path: Path, text: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["--file", str(written(tmp_path, text))])
    out = capsys.readouterr()
    return code, out.out, out.err


# --------------------------------------------------------------------------- 12. unquoted dates, as Pulumi reads them

# A timestamp reaches the program as Go's Time.String() (yaml.v3 reads it as a time.Time, Pulumi's config
# object turns that into its String(): sdk/go/common/resource/config/object.go L490-L491).
DATES = [
    ("2026-01-05", "2026-01-05 00:00:00 +0000 UTC"),
    ("2026-1-5", "2026-01-05 00:00:00 +0000 UTC"),
    ("2026-01-05T10:30:00Z", "2026-01-05 10:30:00 +0000 UTC"),
    ("2026-01-05T10:30:00.250+02:00", "2026-01-05 10:30:00.25 +0200 +0200"),
    ("2026-01-05 10:30:00", "2026-01-05 10:30:00 +0000 UTC"),
    # not a timestamp to Go's time.Parse: the text itself
    ("2026-02-30", "2026-02-30"),
    ("2026-01-05T10:30:00", "2026-01-05T10:30:00"),
    ("2001-12-14 21:59:43.10 -5", "2001-12-14 21:59:43.10 -5"),
]


@pytest.mark.parametrize(("date", "read"), DATES)
def test_12_an_unquoted_date_in_an_environment_is_read_as_pulumi_reads_it(
    date: str, read: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = with_vllm(f"    environment:\n      BUILD_DATE: {date}\n")
    stack = read_stack_file(written(tmp_path, text))
    assert stack.values["vllm"]["environment"]["BUILD_DATE"] == read
    envs = plan_stack(stack).by_name("vllm-container").inputs["envs"]
    assert f"BUILD_DATE={read}" in envs


@pytest.mark.parametrize("measured", ["2026-12-01", "2026-12-01T09:00:00Z", "'2026-12-01'"])
def test_12_a_calibration_block_with_an_unquoted_day_plans(
    measured: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = with_vllm(CALIBRATION.format(measured=measured))
    code, _out, err = plan(tmp_path, text, capsys)
    assert code == 0 and "Traceback" not in err, err
    perf = plan_stack(read_stack_file(written(tmp_path, text))).servers["vllm"].performance
    assert perf is not None and perf.calibrated is not None and perf.calibrated.startswith("2026-12-01")


# Other plain scalars that YAML 1.1 (PyYAML) and yaml.v3 (Pulumi) read differently (go-yaml/yaml v3
# resolve.go L52-L61, L124-L289), then through Pulumi's JSON (object.go L467-L479).
SCALARS: list[tuple[str, Any]] = [
    ("yes", "yes"),
    ("no", "no"),
    ("On", "On"),
    ("off", "off"),
    ("1:30", "1:30"),
    ("=", "="),
    ("0o17", 15),
    ("1e3", 1000),
    ("32768.0", 32768),
    ("08", 8),
    ("true", True),
    ("~", None),
    ("1.5", 1.5),
    ("0x1F", 31),
    ("1_000", 1000),
]


@pytest.mark.parametrize(("plain", "read"), SCALARS)
def test_12_plain_scalars_are_read_as_yaml_1_2_as_pulumi_does(plain: str, read: Any, tmp_path: Path) -> None:
    text = with_vllm(f"    environment:\n      X: {plain}\n")
    got = read_stack_file(written(tmp_path, text)).values["vllm"]["environment"]["X"]
    assert got == read and type(got) is type(read)


def test_12_a_switch_written_yes_reaches_the_container_as_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = with_vllm("    environment:\n      VLLM_USE_TRITON_FLASH_ATTN: no\n")
    envs = plan_stack(read_stack_file(written(tmp_path, text))).by_name("vllm-container").inputs["envs"]
    assert "VLLM_USE_TRITON_FLASH_ATTN=no" in envs


# --------------------------------------------------------------------------- 14. merge keys


def test_14_a_merge_key_is_read_as_pulumi_reads_it(tmp_path: Path) -> None:
    text = BIG.replace("  rocm-inference:embeddings:\n", "  rocm-inference:embeddings: &emb\n", 1)
    text = text.replace(
        "  rocm-inference:monitoring:",
        "  rocm-inference:unused:\n    <<: *emb\n    port: 8081\n  rocm-inference:monitoring:",
        1,
    )
    stack = read_stack_file(written(tmp_path, text))
    assert stack.values["unused"] == {**stack.values["embeddings"], "port": 8081}


MERGES = [
    # an environment shared by the server and the embeddings
    (
        "HTTPS_PROXY: http://proxy.lan:3128\n      NO_PROXY: localhost\n",
        "",
        ["HTTPS_PROXY=http://proxy.lan:3128", "NO_PROXY=localhost"],
    ),
    # a key written beside the merge wins over the merged one
    ("A: '1'\n      B: '2'\n", "      B: '3'\n", ["A=1", "B=3"]),
]


@pytest.mark.parametrize(("shared", "own", "envs"), MERGES, ids=["one anchor", "a key beside the merge"])
def test_14_merge_keys_plan(
    shared: str, own: str, envs: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = with_vllm("    environment: &env\n      " + shared)
    text = text.replace("    device: cpu\n", "    device: cpu\n    environment:\n      <<: *env\n" + own, 1)
    code, _out, err = plan(tmp_path, text, capsys)
    assert code == 0, err
    embeddings = plan_stack(read_stack_file(written(tmp_path, text))).by_name("embeddings-container").inputs["envs"]
    assert all(e in embeddings for e in envs), embeddings


def test_14_a_key_written_twice_beside_a_merge_is_still_refused(tmp_path: Path) -> None:
    text = with_vllm("    environment: &env\n      A: '1'\n")
    text = text.replace(
        "    device: cpu\n", "    device: cpu\n    environment:\n      <<: *env\n      B: '2'\n      B: '3'\n", 1
    )
    with pytest.raises(StackConfigError) as caught:
        read_stack_file(written(tmp_path, text))
    assert caught.value.lines[0].startswith("Pulumi.mine.yaml: key 'B' is written twice, at lines ")


# --------------------------------------------------------------------------- 3. namespaces that are almost ours

NEAR = ["rocm", "ROCM", "inference", "rocm-inf", "ROCm-Inference", "rocm_infer"]


@pytest.mark.parametrize("namespace", NEAR)
def test_3_a_key_of_ours_under_a_namespace_that_is_almost_ours_is_warned(
    namespace: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = plan(
        tmp_path, BIG.replace("config:\n", f"config:\n  {namespace}:monitoring:\n    retention: 7d\n", 1), capsys
    )
    assert code == 0, err
    assert (
        f"Pulumi.mine.yaml: {namespace}:monitoring is in namespace {namespace!r}, not 'rocm-inference': Pulumi keeps it "
        f"for a package named {namespace} and this project never reads it, so its settings are not used; if it is "
        "this project's, write it rocm-inference:monitoring"
    ) in out


@pytest.mark.parametrize("namespace", ["rocminference", "rocm-inferencee", "rocm_inference"])
def test_3_a_namespace_one_typo_away_stays_refused(
    namespace: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _out, err = plan(
        tmp_path, BIG.replace("config:\n", f"config:\n  {namespace}:monitoring:\n    retention: 7d\n", 1), capsys
    )
    assert code == 1
    assert (
        f"Pulumi.mine.yaml: {namespace}:monitoring is not a known key (did you mean 'rocm-inference:monitoring'?)"
        in err
    )


@pytest.mark.parametrize("namespace", ["rocm", "inference", "ROCm-Inference"])
def test_3_a_section_moved_to_an_almost_namespace_is_explained_where_it_is_missing(
    namespace: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _out, err = plan(tmp_path, BIG.replace("  rocm-inference:vllm:", f"  {namespace}:vllm:", 1), capsys)
    assert code == 1
    assert "Pulumi.mine.yaml: rocm-inference:vllm is required" in err
    assert f"Pulumi.mine.yaml: {namespace}:vllm is in namespace {namespace!r}, not 'rocm-inference'" in err


@pytest.mark.parametrize(
    "key", ["aws:region", "docker:host", "rocm:gfx_arch", "pulumi:disable-default-providers", "kubernetes:context"]
)
def test_3_foreign_namespaces_pass_without_a_word(key: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = plan(tmp_path, BIG.replace("config:\n", f"config:\n  {key}: x\n", 1), capsys)
    assert code == 0, err
    assert key not in out


# --------------------------------------------------------------------------- 19. the namespace as a parent key


def _as_parent(text: str, parent: str) -> str:
    """Every `rocm-inference:KEY:` of the file written as `KEY:` under one `parent:` key."""
    head, body = text.split("config:\n", 1)
    lines = ["    " + line if line.strip() else line for line in body.replace("  rocm-inference:", "  ").splitlines()]
    return head + f"config:\n  {parent}:\n" + "\n".join(lines) + "\n"


@pytest.mark.parametrize("parent", ["rocm-inference", "rocm-inference:", "rocm"])
def test_19_the_namespace_written_as_a_parent_key_says_how_pulumi_writes_keys(
    parent: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _out, err = plan(tmp_path, _as_parent(BIG, parent), capsys)
    assert code == 1 and "Traceback" not in err
    assert (
        f"Pulumi.mine.yaml: {parent} holds chat_ui, embeddings, host, monitoring, vllm as keys under it, but Pulumi "
        "does not read a namespace as a parent key: it reads one key named "
        f"rocm-inference:{parent} and none of these; write each key with the namespace in its own name, directly "
        "under `config:` (rocm-inference:chat_ui:, rocm-inference:embeddings:, rocm-inference:host:, "
        "rocm-inference:monitoring:, rocm-inference:vllm:)"
    ) in err
    assert "is not a known key" not in err


def test_19_the_namespace_as_a_parent_key_outside_config_says_it_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = _as_parent(BIG, "rocm-inference").replace("config:\n  rocm-inference:\n", "rocm-inference:\n", 1)
    text = text.replace("\n    ", "\n  ")
    code, _out, err = plan(tmp_path, text + "config: {}\n", capsys)
    assert code == 1
    assert "Pulumi.mine.yaml: rocm-inference holds chat_ui, embeddings, host, monitoring, vllm as keys under it" in err
    assert "under `config:` (rocm-inference:chat_ui:" in err


def test_19_a_key_named_like_a_section_without_namespace_is_the_projects(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bare key is the project's (Pulumi's loaders.go): not a parent key, and it plans."""
    code, _out, err = plan(tmp_path, BIG.replace("  rocm-inference:monitoring:", "  monitoring:", 1), capsys)
    assert code == 0, err


# --------------------------------------------------------------------------- 18. other tools' names for our keys

ALLOWED_SERVER = (
    "architecture, architecture_file, cache_volume, calibration, container_name, download, download_timeout, dtype, "
    "engine, environment, "
    "gpu_memory_utilization, gpus, health_interval, host, image, max_model_len, max_num_batched_tokens, max_num_seqs, "
    "model, model_revision, port, served_model_name, shm_size, speculative, stall_timeout, startup_timeout, tensor_parallel_size, "
    "workload"
)
CONVENTIONS = [
    ("max_tokens", 8192, "max_model_len"),
    ("context_length", 8192, "max_model_len"),
    ("n_ctx", 8192, "max_model_len"),
    ("num_ctx", 8192, "max_model_len"),
    ("max_seq_len", 8192, "max_model_len"),
    ("max-model-len", 8192, "max_model_len"),
    ("tp", 2, "tensor_parallel_size"),
    ("num_shard", 2, "tensor_parallel_size"),
    ("mem_fraction_static", 0.9, "gpu_memory_utilization"),
    ("max_batch_size", 8, "max_num_seqs"),
    ("max_batch_prefill_tokens", 4096, "max_num_batched_tokens"),
    ("model_id", "casperhansen/llama-3.3-70b-instruct-awq", "model"),
    ("revision", "main", "model_revision"),
    ("torch_dtype", "float16", "dtype"),
    ("env", {"A": "1"}, "environment"),
]


@pytest.mark.parametrize(("name", "value", "ours"), CONVENTIONS)
def test_18_a_key_named_as_another_tool_names_it_gets_our_name(name: str, value: Any, ours: str) -> None:
    found = errors(set_key(values_of("big-chat"), f"vllm.{name}", value))
    assert found == [
        f"Pulumi.test.yaml: rocm-inference:vllm.{name} is not a known key (did you mean {ours!r}? this project's "
        f"name for {name}); allowed: {ALLOWED_SERVER}"
    ]


SECRETS_ELSEWHERE = [
    ("big-chat", "embeddings.api_key", "embeddings_api_key"),
    ("big-chat", "embeddings.infinity_api_key", "embeddings_api_key"),
    ("big-chat", "vllm.hf_token", "hf_token"),
    ("big-chat", "vllm.HF_TOKEN", "hf_token"),
    ("big-chat", "monitoring.admin_password", "grafana_admin_password"),
    ("big-chat", "chat_ui.admin_password", "chat_ui_admin_password"),
    ("big-chat", "host.ssh_key", "ssh_private_key"),
    ("fleet", "gateway.master_key", "gateway_api_key"),
    ("fleet", "gateway.api_key", "gateway_api_key"),
    ("fleet", "hosts.gpu-a.private_key", "ssh_private_key"),
]


@pytest.mark.parametrize(("stack", "key", "secret"), SECRETS_ELSEWHERE)
def test_18_a_secret_written_in_its_section_names_the_projects_secret_key(stack: str, key: str, secret: str) -> None:
    token = "Qwerty987Secret"
    found = errors(set_key(values_of(stack), key, token), ("gateway_api_key",) if stack == "fleet" else ())
    assert found == [
        f"Pulumi.test.yaml: rocm-inference:{key} is not a known key: this project reads that secret from "
        f"rocm-inference:{secret}, a key of its own, set with `pulumi config set --secret rocm-inference:{secret} "
        "...`; remove it from here, where it is in plain text (and replace the secret if the file was shared or "
        "committed)"
    ]
    assert token not in found[0]


@pytest.mark.parametrize(
    ("key", "value"), [("vllm.api_key", None), ("vllm.max_model_len", 8192), ("embeddings.batch_size", 16)]
)
def test_18_our_own_names_pass(key: str, value: Any) -> None:
    values = set_key(values_of("big-chat"), key, value) if value is not None else values_of("big-chat")
    assert errors(values, ("servers.vllm.api_key",) if key == "vllm.api_key" else ()) == []


def test_18_an_unrelated_name_keeps_the_close_match() -> None:
    found = errors(set_key(values_of("big-chat"), "vllm.max_model_length", 8192))
    assert "did you mean 'max_model_len'?" in found[0]


@pytest.mark.parametrize(("date", "read"), [d for d in DATES if d[0] != d[1]][:3])
def test_12_an_unquoted_date_is_warned_with_what_pulumi_makes_of_it(
    date: str, read: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = plan(tmp_path, with_vllm(f"    environment:\n      BUILD_DATE: {date}\n"), capsys)
    assert code == 0, err
    assert (
        f"Pulumi.mine.yaml: rocm-inference:vllm.environment.BUILD_DATE is {date}, an unquoted date: Pulumi reads it "
        f"as a timestamp and hands the program {read!r}, which is what the plan shows; quote it ('{date}') to keep "
        "it as written"
    ) in out


@pytest.mark.parametrize("value", ["'2026-01-05'", '"2026-01-05"', "2026-02-30", "v2026-01-05", "2026-01-05T10:30:00"])
def test_12_a_quoted_date_or_text_that_is_no_timestamp_is_not_warned(
    value: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = plan(tmp_path, with_vllm(f"    environment:\n      BUILD_DATE: {value}\n"), capsys)
    assert code == 0, err
    assert "an unquoted date" not in out + err
