"""`python -m components.verify`: its own errors, the embeddings name check, and --load, against a small local
OpenAI-style server (127.0.0.8, a free port: never a well-known one on 127.0.0.1)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from components.tools.verify import main, percentile, run
from tests.local_http import JsonHandler, serving

HOST = "127.0.0.8"
MODEL = "qwen2.5-7b"
EMB = "nomic-ai/nomic-embed-text-v1.5"


class Handler(JsonHandler):
    embeddings_model = EMB
    requests: list[str] = []  # noqa: RUF012  # every path asked for, in order (reset per test by the fixture)
    served_max_model_len = 16384

    def do_GET(self) -> None:
        Handler.requests.append(self.path)
        if self.path in ("/health", "/v1/../health"):
            return self.json_reply(200, {})
        if self.path == "/v1/models":
            return self.json_reply(200, {"data": [{"id": MODEL, "max_model_len": self.served_max_model_len}]})
        self.json_reply(404, {})

    def do_POST(self) -> None:
        Handler.requests.append(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        if self.path == "/v1/chat/completions":
            return self.json_reply(
                200, {"choices": [{"message": {"content": "OK"}}], "usage": {"completion_tokens": 5}}
            )
        if self.path == "/embeddings":
            return self.json_reply(200, {"model": self.embeddings_model, "data": [{"embedding": [0.1, 0.2]}]})
        self.json_reply(404, {})


@pytest.fixture
def server() -> Iterator[str]:
    Handler.requests = []
    with serving(HOST, Handler) as base:
        yield base


def outputs(base: str) -> dict[str, Any]:
    return {
        "servers": {"vllm": {"base_url": base + "/v1", "model": MODEL, "max_model_len": 16384}},
        "openai_base_url": base + "/v1",
        "embeddings_base_url": base,
        "embeddings_model": EMB,
    }


def test_verify_passes_and_load_reports_rates_and_latencies(
    server: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = tmp_path / "outputs.json"
    file.write_text(json.dumps(outputs(server)))
    assert main(["s", "--outputs", str(file), "--load", "4", "--duration", "1"]) == 0
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if ln.startswith("load "))
    assert line.startswith(f"load {MODEL}: 4 concurrent chats for 1 s: ") and "requests/s" in line and "p95" in line
    assert "(0 failed)" in line


def test_the_embeddings_model_name_must_match(server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Handler, "embeddings_model", "BAAI/bge-m3")
    checks = {c.name: c for c in run(outputs(server), None, lambda line: None)}
    assert checks["embedding"].ok and not checks["embeddings model name"].ok
    assert checks["embeddings model name"].detail == f"BAAI/bge-m3, planned {EMB}"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "verify: cannot read"),
        ("{not json", "is not JSON"),
        ("[1, 2]", "is not a JSON object of stack outputs"),
        (json.dumps({"servers": {"vllm": {"model": MODEL}}}), "lack servers.vllm.base_url"),
        (json.dumps({"embeddings_base_url": "http://x"}), "lack embeddings_model"),
    ],
)
def test_a_missing_or_broken_outputs_file_is_a_clear_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | None, message: str
) -> None:
    file = tmp_path / "outputs.json"
    if content is not None:
        file.write_text(content)
    assert main(["s", "--outputs", str(file)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_percentile_by_nearest_rank() -> None:
    assert percentile([], 0.5) == 0.0
    assert percentile([5.0, 1.0, 3.0, 2.0, 4.0], 0.5) == 3.0
    assert percentile([float(i) for i in range(1, 101)], 0.95) == 95.0


def _flat(base: str) -> dict[str, Any]:
    """The outputs of a single-host stack deployed before the fleet form (no `servers`)."""
    return {"openai_base_url": base + "/v1", "served_model": MODEL, "max_model_len": 16384}


@pytest.mark.parametrize("shape", [outputs, _flat], ids=["servers", "flat"])
@pytest.mark.parametrize("served", [8192, 32768])
def test_a_server_running_another_max_model_len_than_planned_fails(
    server: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    shape: Any,
    served: int,
) -> None:
    """A stale container (the stack changed max_model_len, the container was not replaced) answers every
    request: only /v1/models tells. Shorter or longer than planned, verify fails and says which."""
    monkeypatch.setattr(Handler, "served_max_model_len", served)
    file = tmp_path / "outputs.json"
    file.write_text(json.dumps(shape(server)))
    assert main(["s", "--outputs", str(file)]) == 1
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if "/v1/models" in ln and "max_model_len" in ln)
    assert line.lstrip().startswith("FAIL")
    assert f"max_model_len {served}, planned 16384" in line and "pulumi up" in line


@pytest.mark.parametrize("shape", [outputs, _flat], ids=["servers", "flat"])
def test_the_planned_max_model_len_passes(server: str, shape: Any) -> None:
    checks = {c.name: c for c in run(shape(server), None, lambda line: None)}
    models = next(c for name, c in checks.items() if name.endswith("vLLM /v1/models"))
    assert models.ok and models.detail == f"{MODEL}, max_model_len 16384 (planned 16384)"


# --------------------------------------------------------------------------- outputs that cannot be tried as they are


def _masked(base: str, key: str) -> dict[str, Any]:
    out = outputs(base) | {"gateway_container": "litellm-gateway", "gateway_api_key": "sk-real"}
    out["servers"]["vllm"]["api_key"] = "real-key-0123"
    if key == "servers":
        out["servers"] = "[secret]"  # a secret inside makes the whole output one
    elif key.startswith("servers."):
        out["servers"]["vllm"]["api_key"] = "[secret]"
    else:
        out[key] = "[secret]"
    return out


@pytest.mark.parametrize("key", ["gateway_api_key", "servers.vllm.api_key", "servers", "embeddings_api_key"])
def test_outputs_saved_without_show_secrets_are_refused_before_any_request(
    server: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], key: str
) -> None:
    file = tmp_path / "outputs.json"
    file.write_text(json.dumps(_masked(server, key)))
    assert main(["s", "--outputs", str(file)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"verify: {file}: {key} is masked ([secret]): the outputs were saved without --show-secrets, and the mask is "
        "no key; save them with `pulumi stack output --json --show-secrets > FILE`, or run verify without --outputs"
    ]
    assert Handler.requests == [], "nothing is tried with the mask as a key"


def test_the_flat_outputs_masked_key_is_named_too(
    server: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = tmp_path / "outputs.json"
    file.write_text(json.dumps(_flat(server) | {"vllm_api_key": "[secret]"}))
    assert main(["s", "--outputs", str(file)]) == 2
    assert f"verify: {file}: vllm_api_key is masked" in capsys.readouterr().err and Handler.requests == []


def test_a_masked_output_verify_does_not_read_is_no_reason_to_stop(server: str, tmp_path: Path) -> None:
    file = tmp_path / "outputs.json"
    file.write_text(json.dumps(outputs(server) | {"grafana_admin_password": "[secret]"}))
    assert main(["s", "--outputs", str(file)]) == 0 and Handler.requests


@pytest.mark.parametrize(
    ("key", "value", "said"),
    [
        (
            "servers.vllm.base_url",
            "{host}/v1",
            "which has no http:// or https:// scheme and host: write 'http://{host}/v1'",
        ),
        (
            "servers.vllm.base_url",
            "gpu-box:8000/v1",
            "which has no http:// or https:// scheme and host: write 'http://gpu-box:8000/v1'",
        ),
        (
            "openai_base_url",
            "//{host}/v1",
            "which has no http:// or https:// scheme and host: write 'http://{host}/v1'",
        ),
        (
            "embeddings_base_url",
            "ftp://{host}",
            "which has no http:// or https:// scheme and host: write 'http://{host}'",
        ),
        ("embeddings_base_url", 8000, "not a URL: it should read like http://gpu-box:8000/v1"),
        ("servers.vllm.model", ["m"], "not a model name"),
    ],
)
def test_an_address_without_a_scheme_is_refused_before_any_request(
    server: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], key: str, value: Any, said: str
) -> None:
    host = server.removeprefix("http://")
    out = outputs(server)
    if isinstance(value, str):
        value = value.format(host=host)
    if key.startswith("servers."):
        out["servers"]["vllm"][key.rsplit(".", 1)[1]] = value
    else:
        out[key] = value
    file = tmp_path / "outputs.json"
    file.write_text(json.dumps(out))
    assert main(["s", "--outputs", str(file)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"verify: {file}: {key} is {value!r}, {said.format(host=host)}"]
    assert Handler.requests == []


@pytest.mark.parametrize("base", ["http://{host}/v1", "http://{host}/v1/", "HTTP://{host}/v1"])
def test_addresses_with_a_scheme_are_tried(server: str, tmp_path: Path, base: str) -> None:
    out = outputs(server)
    out["servers"]["vllm"]["base_url"] = base.format(host=server.removeprefix("http://"))
    file = tmp_path / "outputs.json"
    file.write_text(json.dumps(out))
    assert main(["s", "--outputs", str(file)]) == 0


# --------------------------------------------------------------------------- whose outputs (issue 27)


def test_a_deployment_names_its_stack_in_its_outputs() -> None:
    from components.tools.verify import STACK_OUTPUT
    from tests.conftest import shipped_plan

    for stack in ("big-chat", "fleet"):
        assert shipped_plan(stack).outputs[STACK_OUTPUT] == {"project": "rocm-inference", "stack": stack}


@pytest.mark.parametrize(
    ("stack", "recorded", "said"),
    [
        ("big-chat", {"project": "rocm-inference", "stack": "fleet"}, "outputs of stack 'fleet' of project"),
        ("big-chat", {"project": "other-llm", "stack": "big-chat"}, "of project 'other-llm', not of stack 'big-chat'"),
        ("acme/rocm-inference/big-chat", {"project": "rocm-inference", "stack": "small-chat"}, "'small-chat'"),
        ("big-chat", "big-chat", "is 'big-chat', not the {project, stack}"),
    ],
)
def test_another_stacks_outputs_are_refused_before_any_request(
    stack: str, recorded: Any, said: str, server: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = tmp_path / "outputs.json"
    file.write_text(json.dumps(outputs(server) | {"stack": recorded}))
    assert main([stack, "--outputs", str(file)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"verify: {file}: ") and said in err and "Traceback" not in err
    assert Handler.requests == []


@pytest.mark.parametrize("stack", ["big-chat", "acme/rocm-inference/big-chat", "rocm-inference/big-chat"])
def test_the_stacks_own_outputs_are_said_to_be_its(
    stack: str, server: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = tmp_path / "outputs.json"
    file.write_text(json.dumps(outputs(server) | {"stack": {"project": "rocm-inference", "stack": "big-chat"}}))
    assert main([stack, "--outputs", str(file)]) == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines() if "outputs are stack" in ln)
    assert line.lstrip().startswith("ok") and "project rocm-inference, stack big-chat" in line


def test_outputs_of_a_deployment_older_than_the_check_are_said_unchecked_not_failed(
    server: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = tmp_path / "outputs.json"
    file.write_text(json.dumps(outputs(server)))
    assert main(["big-chat", "--outputs", str(file)]) == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines() if "outputs are stack" in ln)
    assert "not checked: these outputs do not name their stack" in line
