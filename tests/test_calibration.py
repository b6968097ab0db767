"""Calibration: the speed model fitted on a server timed on its box (`verify --calibrate`), against a stub
that generates at a known rate (127.0.0.9, a free port), and the fit itself on exact figures."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.planning.calibration import FIXED, PER_SEQUENCE, Measured, fit
from components.planning.catalog import load_catalog
from components.planning.performance import Efficiency, step_parts, step_seconds
from components.planning.rules import server_contexts, speed_inputs_of
from components.settings import read_stack_file
from components.tools.calibrate import write_calibration
from components.tools.plan import main as plan_main
from components.tools.plan import plan_stack
from components.tools.verify import main
from tests.local_http import JsonHandler, serving
from tests.stacks import load, plan_values, set_key, values_of

HOST = "127.0.0.9"
# The stub's known rates: a decode step of STEP_S + PER_SEQ_S x (requests decoding at once), a prefill of
# PREFILL_S per prompt token, then the first token one step later (as the model has it).
STEP_S, PER_SEQ_S, PREFILL_S = 0.04, 0.02, 0.0005
MODEL = "casperhansen/llama-3.3-70b-instruct-awq"


class Stub(JsonHandler):
    protocol_version = "HTTP/1.1"
    streams = True  # False: a server that answers a streamed request in one piece
    active = 0
    lock = threading.Lock()

    def do_GET(self) -> None:
        if self.path == "/health":
            return self.json_reply(200, {})
        if self.path == "/v1/models":
            return self.json_reply(200, {"data": [{"id": MODEL, "max_model_len": 32768}]})
        self.json_reply(404, {})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
        prompt = len(body["messages"][0]["content"].split())
        tokens = int(body.get("max_tokens") or 8)
        usage = {"prompt_tokens": prompt, "completion_tokens": tokens, "total_tokens": prompt + tokens}
        if not body.get("stream") or not Stub.streams:
            return self.json_reply(200, {"choices": [{"message": {"content": "OK"}}], "usage": usage})
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()

        def event(payload: dict[str, Any] | str) -> None:
            text = payload if isinstance(payload, str) else json.dumps(payload)
            self.wfile.write(f"data: {text}\n\n".encode())
            self.wfile.flush()

        time.sleep(PREFILL_S * prompt)
        with Stub.lock:
            Stub.active += 1
        try:
            for _ in range(tokens):
                with Stub.lock:
                    step = STEP_S + PER_SEQ_S * Stub.active
                time.sleep(step)
                event({"choices": [{"index": 0, "delta": {"content": "x"}}]})
        finally:
            with Stub.lock:
                Stub.active -= 1
        event({"choices": [], "usage": usage})
        event("[DONE]")


@pytest.fixture
def stub() -> Iterator[str]:
    with serving(HOST, Stub) as base:
        yield base


def workload_stack(tmp_path: Path) -> Path:
    values = set_key(
        values_of("big-chat"), "vllm.workload", {"prompt_tokens": 200, "output_tokens": 24, "concurrency": 4}
    )
    plan_values(values, tmp_path, stack="cal")
    return tmp_path / "Pulumi.cal.yaml"


def test_calibration_recovers_the_stubs_known_rate_and_the_next_plan_shows_it(
    stub: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = workload_stack(tmp_path)
    before = plan_stack(read_stack_file(path)).servers["vllm"].performance
    assert before is not None and before.calibrated is None
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps({"servers": {"vllm": {"base_url": stub + "/v1", "model": MODEL}}}))
    assert main(["cal", "--outputs", str(outputs), "--file", str(path), "--calibrate", "--write"]) == 0
    out = capsys.readouterr().out
    assert "calibrate vllm:" in out and "written to Pulumi.cal.yaml" in out
    block = yaml.safe_load(path.read_text())["config"]["rocm-inference:vllm"]["calibration"]
    assert block["model"] == MODEL and block["tensor_parallel_size"] == 2

    after = plan_stack(read_stack_file(path)).servers["vllm"].performance
    assert after is not None and after.calibrated == block["measured"]
    # one request alone: the stub's step at one sequence
    known = 1 / (STEP_S + PER_SEQ_S)
    assert after.decode_tokens_per_s.estimate == pytest.approx(known, rel=0.10)
    # four at once, each request a prefill then 24 steps at four sequences
    request = PREFILL_S * 200 + 24 * (STEP_S + 4 * PER_SEQ_S)
    assert after.output_tokens_per_s.estimate == pytest.approx(4 * 24 / request, rel=0.10)
    # and a narrower band than the fitted model's
    width = after.decode_tokens_per_s.high / after.decode_tokens_per_s.low
    assert width < before.decode_tokens_per_s.high / before.decode_tokens_per_s.low
    assert plan_main(["--file", str(path)]) == 0
    assert "Speed (calibrated on the box " in capsys.readouterr().out


def test_a_server_that_does_not_stream_cannot_be_calibrated_and_says_so(
    stub: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Stub, "streams", False)
    path = workload_stack(tmp_path)
    text = path.read_text()
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps({"servers": {"vllm": {"base_url": stub + "/v1", "model": MODEL}}}))
    assert main(["cal", "--outputs", str(outputs), "--file", str(path), "--calibrate", "--write"]) == 1
    out = capsys.readouterr().out
    assert "calibrate vllm: 3 of 3 requests at 1 at once failed or streamed no tokens" in out, out
    assert path.read_text() == text, "nothing written"


# --------------------------------------------------------------------------- the fit, on exact figures


def test_the_fit_recovers_known_factors_from_two_runs() -> None:
    ctx = server_contexts(load(values_of("big-chat")).settings)["vllm"]
    inputs = speed_inputs_of(ctx, load_catalog())
    assert inputs is not None
    server, _ = inputs
    base = Efficiency()
    a, b = 1.3, 0.7  # the box: weights and all-reduces 1.3x slower, per-sequence work 0.7x

    def measured(batch: int, context: int) -> float:
        parts = step_parts(server, batch, context, base)
        return a * sum(parts[k] for k in FIXED) + b * sum(parts[k] for k in PER_SEQUENCE)

    runs = [Measured(1, 1100, measured(1, 1100)), Measured(8, 1100, measured(8, 1100))]
    f = fit(server, runs)
    assert f.decode_factor == pytest.approx(a) and f.batch_factor == pytest.approx(b)
    assert f.efficiency.weights == pytest.approx(base.weights / a)
    assert f.efficiency.sequence_s == pytest.approx(base.sequence_s * b)
    # and the fitted efficiencies give those steps back
    for batch in (1, 8):
        assert step_seconds(server, batch, 1100, f.efficiency) == pytest.approx(measured(batch, 1100))


def test_a_measurement_faster_than_the_roofline_is_refused() -> None:
    ctx = server_contexts(load(values_of("big-chat")).settings)["vllm"]
    inputs = speed_inputs_of(ctx, load_catalog())
    assert inputs is not None
    with pytest.raises(ValueError, match="faster than the GPUs' memory bandwidth"):
        fit(inputs[0], [Measured(1, 1100, 0.02)])


# A calibration block of big-chat's server, as `verify --calibrate --write` writes one.
CALIBRATION: dict[str, Any] = {
    "measured": "2026-12-01",
    "model": MODEL,
    "tensor_parallel_size": 2,
    "image": "nalanzeyu/vllm-gfx906:v0.11.2-rocm6.3",
    "weights_efficiency": 0.3,
    "experts_efficiency": 0.06,
    "kv_efficiency": 0.2,
    "kv_serial": 0.45,
    "matmul_efficiency": 0.6,
    "dequant_ops": 4.0,
    "allreduce_us": 60.0,
    "sequence_ms": 1.0,
    "prefill_factor": 1.0,
}


def test_a_calibration_of_another_model_is_ignored_and_said(tmp_path: Path) -> None:
    block = CALIBRATION | {"model": "Qwen/Qwen2.5-7B-Instruct-AWQ"}
    loaded = load(set_key(values_of("big-chat"), "vllm.calibration", block))
    assert any(
        "vllm.calibration was measured for another server (model Qwen/Qwen2.5-7B-Instruct-AWQ then, "
        "casperhansen/llama-3.3-70b-instruct-awq now)" in w
        for w in loaded.warnings
    ), loaded.warnings
    p = plan_values(set_key(values_of("big-chat"), "vllm.calibration", block), tmp_path)
    perf = p.servers["vllm"].performance
    assert perf is not None and perf.calibrated is None


def test_the_fleet_form_gets_the_block_under_its_server(tmp_path: Path) -> None:
    path = tmp_path / "Pulumi.fleet.yaml"
    path.write_text((Path(__file__).resolve().parents[1] / "Pulumi.fleet.yaml").read_text())
    block = {"measured": "2026-12-02", "model": "Qwen/Qwen2.5-7B-Instruct-AWQ", "tensor_parallel_size": 1}
    write_calibration(path, "coder", False, block)
    write_calibration(path, "coder", False, block | {"measured": "2026-12-03"})
    doc = yaml.safe_load(path.read_text())["config"]
    assert doc["rocm-inference:servers"]["coder"]["calibration"]["measured"] == "2026-12-03"
    assert doc["rocm-inference:servers"]["coder"]["port"] == 8001, "the rest of the block is kept"
    assert "calibration" not in doc["rocm-inference:servers"]["chat-b"]
    assert path.read_text().count("calibration:") == 1


def test_the_stall_window_takes_the_calibrated_prefill_rate() -> None:
    from components.planning.rules import server_stall_seconds

    base = CALIBRATION
    catalog = load_catalog()

    def window(factor: float | None) -> int:
        values = values_of("big-chat")
        if factor is not None:
            values = set_key(values, "vllm.calibration", base | {"prefill_factor": factor})
        return server_stall_seconds(server_contexts(load(values).settings)["vllm"], catalog)

    fitted = window(None)
    assert window(3.0) > 2 * fitted, "a box that prefills three times slower gets a longer window"
    # a faster box: the window follows its rate, but never below the fitted estimate's
    assert window(0.5) < fitted and window(0.1) == window(0.05)  # 0.05: the least factor a calibration writes


# --------------------------------------------------------------------------- --against


def test_a_change_against_an_older_plan_says_how_it_moves_the_speed(tmp_path: Path) -> None:
    from tests.test_day_two import day_two

    def shorter(values: dict[str, Any], secure: dict[str, Any]) -> None:
        values["vllm"]["max_num_seqs"] = 2  # two of the four requests now queue: a longer TTFT

    d = day_two(tmp_path, "big-chat", shorter)
    assert len(d.speed) == 1 and d.speed[0].startswith("vllm: ")
    assert "TTFT" in d.speed[0] and "slower" in d.speed[0]
    assert "decode" not in d.speed[0], "one request alone decodes as fast as before"


# --------------------------------------------------------------------------- advice


def _advice(values: dict[str, Any]) -> list[str]:
    from components.planning.rules import assess

    return assess(server_contexts(load(values).settings)["vllm"], load_catalog()).advice


def test_a_model_given_more_gpus_than_it_needs_is_weighed_as_replicas() -> None:
    values = set_key(values_of("small-chat"), "vllm.gpus", [0, 1])
    values = set_key(values, "vllm.tensor_parallel_size", 2)
    values = set_key(values, "vllm.workload", {"prompt_tokens": 1000, "output_tokens": 300, "concurrency": 16})
    lines = [a for a in _advice(values) if a.startswith("the model also fits on 1 GPU")]
    assert len(lines) == 1, _advice(values)
    # both figures, each from the speed model, and a verdict for this workload (which one wins is the model's)
    assert (
        "2 replicas of tensor parallel 1 on these 2 GPUs" in lines[0] and "tokens/s together at 16 requests" in lines[0]
    )
    assert any(v in lines[0] for v in ("2 replicas serve more together", "serves as much or more", "about even"))
    # one request alone decodes faster on the wider server
    alone = re.search(r"one request alone decodes at ([\d.]+) against ([\d.]+) tokens/s now", lines[0])
    assert alone is not None and float(alone.group(1)) < float(alone.group(2))
    # big-chat's 70B fits only across both GPUs: nothing to weigh
    assert not any(a.startswith("the model also fits") for a in _advice(values_of("big-chat")))


def test_requests_queued_behind_max_num_seqs_are_said_with_the_way_out() -> None:
    values = set_key(values_of("small-chat"), "vllm.max_num_seqs", 2)
    lines = [a for a in _advice(values) if "queue behind max_num_seqs 2" in a]
    assert len(lines) == 1 and "raise max_num_seqs to 4" in lines[0]


def test_a_long_chunked_prefill_is_said_with_its_stall() -> None:
    lines = [a for a in _advice(values_of("big-chat")) if "chunks of max_num_batched_tokens 2,048" in a]
    assert len(lines) == 1 and "16 chunks" in lines[0]
    fewer = set_key(values_of("big-chat"), "vllm.max_num_batched_tokens", 512)
    smaller = next(a for a in _advice(fewer) if "chunks of max_num_batched_tokens 512" in a)
    assert "64 chunks" in smaller


def test_the_widest_fitted_band_says_how_to_narrow_it() -> None:
    """big-chat's one request across two GPUs: the band the published boxes disagree on most."""
    lines = [a for a in _advice(values_of("big-chat")) if "--calibrate --write" in a]
    assert len(lines) == 1, _advice(values_of("big-chat"))
    assert lines[0].startswith("one request alone on 2 GPUs decodes at ") and "disagree most" in lines[0]
    # once the box is measured, its own band: nothing to say
    measured = set_key(values_of("big-chat"), "vllm.calibration", CALIBRATION)
    assert not any("--calibrate" in a for a in _advice(measured)), _advice(measured)
    # one GPU of a measured family: a band of about 2x, nothing to say
    assert not any("--calibrate" in a for a in _advice(values_of("small-chat")))


def test_a_block_keeps_the_moe_latency_and_an_older_block_without_it_stands_alone() -> None:
    from components.planning.calibration import block_values, efficiency_of

    measured = Efficiency(weights=0.3, experts=0.3, moe_layer_s=5e-4)
    block = block_values(measured)
    assert block["moe_layer_us"] == 500.0
    assert efficiency_of(block).moe_layer_s == pytest.approx(5e-4)
    # Written before the MoE latency was modelled: its experts' rate was measured with the latency in it.
    older = {k: v for k, v in block.items() if k != "moe_layer_us"}
    assert efficiency_of(older).moe_layer_s == 0.0
    assert efficiency_of(older | {"moe_layer_us": None}).moe_layer_s == 0.0  # as the settings model dumps it
