"""The llama.cpp memory plan against the real llama-server (tests/engine/llama_cpp.py): on tiny synthetic GGUF models
of several shapes (tests/llama_cpp_models.py), the model and KV buffers the plan gives each device and the host
match what the server logs it allocated within 1%, the compute buffers within 15%. Two rpc-servers on loopback are
the two devices, so the layer split and the tensor split apply. Skipped with one line where llama.cpp cannot be
built; the first build is long (outside the warm test time), later runs take the cached one.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from components.planning.gguf import GgufFacts
from components.planning.llamacpp_memory import (
    LlamaCppArgs,
    LlamaCppPlanError,
    kv_cells,
    largest_context,
    layer_devices,
    plan,
    recurrent_layers,
    server_arguments,
    state_bytes_per_sequence,
    swa_layers,
    warnings,
)
from components.tools.gguf_header import read_facts
from tests.engine.hostproc import HostProcess
from tests.engine.llama_cpp import Build, build_or_skip, run_server, start_rpc_server
from tests.llama_cpp_models import Shape, write_model

MiB = 1 << 20
SERVER_HOST = "127.0.0.41"
RPC_HOSTS = ("127.0.0.42", "127.0.0.43")

GQA = Shape(n_embd=512, n_head=8, n_head_kv=2, head_dim=64, n_ff=1536, n_vocab=2048)
SWA = replace(GQA, arch="gemma3", n_layer=6, n_swa=256, tied=True)
MOE = replace(GQA, arch="qwen3moe", n_expert=8, n_expert_used=2, n_ff_exp=256)
Q8 = replace(GQA, weights="Q8_0")
MAMBA = Shape(arch="mamba2", n_embd=512, head_dim=64, n_vocab=2048, ssm_state=128)


def local_reader(folder: Path) -> Callable[[str, int, int], bytes]:
    def read(name: str, start: int, end: int) -> bytes:
        with (folder / name).open("rb") as f:
            f.seek(start)
            return f.read(end - start)

    return read


def facts_of(tmp: Path, name: str, shape: Shape, split: int = 0) -> tuple[GgufFacts, Path]:
    files = write_model(tmp / f"{name}.gguf", shape, split)
    return read_facts(local_reader(tmp), files[0].name), files[0]


# --- the rules alone ---------------------------------------------------------------------------------------


def test_layers_go_to_devices_by_the_tensor_split_and_the_output_layer_counts_as_one() -> None:
    two = ("RPC0", "RPC1")
    assert layer_devices(4, LlamaCppArgs(n_ctx=512, devices=two, tensor_split=(1, 1))) == [0, 0, 0, 1, 1]
    assert layer_devices(4, LlamaCppArgs(n_ctx=512, devices=two, tensor_split=(3, 1))) == [0, 0, 0, 0, 1]
    # -ngl 3: the first two layers stay on the CPU, the last two and the output layer are offloaded
    assert layer_devices(4, LlamaCppArgs(n_ctx=512, devices=two, tensor_split=(1, 1), n_gpu_layers=3)) == [
        -1, -1, 0, 0, 1,
    ]  # fmt: skip
    assert layer_devices(4, LlamaCppArgs(n_ctx=512, devices=two, split_mode="none", main_gpu=1)) == [1] * 5
    assert layer_devices(4, LlamaCppArgs(n_ctx=512)) == [-1] * 5
    with pytest.raises(LlamaCppPlanError, match="3 entries for 2 devices"):
        layer_devices(4, LlamaCppArgs(n_ctx=512, devices=two, tensor_split=(1, 1, 1)))


def test_the_context_is_padded_and_split_by_the_slots_unless_unified(tmp_path: Path) -> None:
    facts, _ = facts_of(tmp_path, "swa", SWA)
    assert kv_cells(facts, LlamaCppArgs(n_ctx=1000)) == (1024, 1024, 1, 768)
    assert kv_cells(facts, LlamaCppArgs(n_ctx=4096, n_parallel=3)) == (4608, 1536, 3, 768)
    assert kv_cells(facts, LlamaCppArgs(n_ctx=4096, n_parallel=3, kv_unified=True)) == (4096, 4096, 1, 1280)
    assert kv_cells(facts, LlamaCppArgs(n_ctx=4096, swa_full=True)) == (4096, 4096, 1, 4096)
    assert swa_layers(facts) == [True] * 5 + [False]


def test_the_command_sets_every_sizing_argument() -> None:
    args = LlamaCppArgs(n_ctx=8192, n_parallel=2, devices=("ROCm0", "ROCm1"), n_cpu_moe=3, cache_type_k="Q8_0")
    assert server_arguments(args, "/models/m.gguf") == [
        "-m", "/models/m.gguf", "-c", "8192", "-np", "2", "--fit", "off", "-no-kvu", "-fa", "on",
        "-b", "2048", "-ub", "512", "-ctk", "q8_0", "-ctv", "f16", "--cache-ram", "8192", "-lm", "mmap",
        "-ngl", "all", "-sm", "layer", "-mg", "0", "-ts", "1,1", "--n-cpu-moe", "3",
    ]  # fmt: skip
    gib = 1 << 30
    args = LlamaCppArgs(n_ctx=4096, devices=("ROCm0", "ROCm1"), device_memory=(32 * gib, 16 * gib), kv_unified=True)
    assert server_arguments(args, "m.gguf")[-6:] == ["-sm", "layer", "-mg", "0", "-ts", "32768,16384"]
    assert "-kvu" in server_arguments(args, "m.gguf")


def test_recurrent_layers_and_their_state(tmp_path: Path) -> None:
    facts, _ = facts_of(tmp_path, "mamba", MAMBA)
    assert recurrent_layers(facts) == [True] * 4
    assert state_bytes_per_sequence(facts) == (4 * 3 * (1024 + 2 * 128), 4 * 128 * 1024)
    gqa, _ = facts_of(tmp_path, "gqa", GQA)
    assert recurrent_layers(gqa) == [False] * 4 and state_bytes_per_sequence(gqa) == (0, 0)
    memory = plan(facts, LlamaCppArgs(n_ctx=4096, n_parallel=3))
    assert memory.host.kv == 4 * 3 * sum(state_bytes_per_sequence(facts))  # no KV cache: the state, per slot


def test_a_quantized_v_cache_without_flash_attention_is_refused(tmp_path: Path) -> None:
    facts, _ = facts_of(tmp_path, "gqa", GQA)
    with pytest.raises(LlamaCppPlanError, match="quantized V cache"):
        plan(facts, LlamaCppArgs(n_ctx=512, cache_type_v="q8_0", flash_attn=False))


# --- against the real llama-server -----------------------------------------------------------------------------

LINE = re.compile(
    r"(?P<what>load_tensors|llama_kv_cache|llama_memory_recurrent|sched_reserve|llama_context):\s+(?P<buf>\S+)\s+"
    r"(?P<kind>model|KV|RS|compute|output) buffer size =\s+(?P<mib>[\d.]+) MiB"
)


@dataclass
class Allocated:
    """What the server's log says it allocated, per device (by its rpc address) and on the host, in MiB."""

    devices: dict[str, dict[str, float]]
    host: dict[str, float]


def allocated(log: str, addresses: list[str]) -> Allocated:
    devices: dict[str, dict[str, float]] = {a: {"model": 0.0, "kv": 0.0, "compute": 0.0} for a in addresses}
    host = {"model": 0.0, "kv": 0.0, "compute": 0.0}
    for m in LINE.finditer(log):
        kind = {"model": "model", "KV": "kv", "RS": "kv", "compute": "compute", "output": "compute"}[m.group("kind")]
        address = re.search(r"\[(.+)\]", m.group("buf"))
        target = devices[address.group(1)] if address else host
        target[kind] += float(m.group("mib"))
    return Allocated(devices, host)


def args_for(a: LlamaCppArgs, model: Path, rpc: list[str]) -> list[str]:
    return server_arguments(a, str(model), rpc)


@dataclass
class Real:
    build: Build
    work: Path
    rpc: list[HostProcess]

    @property
    def addresses(self) -> list[str]:
        return [r.url for r in self.rpc]


@pytest.fixture
def real(tmp_path: Path) -> Iterator[Real]:
    """The pinned llama-server and two rpc-servers on loopback, the two devices: fresh ones for each test (an
    rpc-server whose client was stopped mid-session may not take the next one)."""
    build = build_or_skip()
    work = tmp_path / "rpc"
    rpc: list[HostProcess] = []
    try:
        for i, host in enumerate(RPC_HOSTS):
            rpc.append(start_rpc_server(build, host, work, f"rpc{i}"))
        yield Real(build, work, rpc)
    finally:
        for r in rpc:
            r.stop()


# (shape, the server's sizing arguments, devices, files it is split into by tensor count)
CASES: dict[str, tuple[Shape, dict[str, Any], int, int]] = {
    "gqa-cpu-only": (GQA, {"n_ctx": 4096}, 0, 0),
    "gqa-two-devices-split-3-1": (GQA, {"n_ctx": 4096, "tensor_split": (3, 1)}, 2, 0),
    "gqa-partial-offload": (GQA, {"n_ctx": 4096, "tensor_split": (1, 1), "n_gpu_layers": 3}, 2, 0),
    "gqa-no-flash-attention": (GQA, {"n_ctx": 4096, "tensor_split": (1, 1), "flash_attn": False}, 2, 0),
    "gqa-split-files": (GQA, {"n_ctx": 2048, "tensor_split": (1, 1), "n_gpu_layers": 2}, 2, 15),
    "slots-split": (GQA, {"n_ctx": 8192, "n_parallel": 4, "tensor_split": (1, 1)}, 2, 0),
    "slots-shared": (GQA, {"n_ctx": 8192, "n_parallel": 4, "kv_unified": True, "tensor_split": (1, 1)}, 2, 0),
    "sliding-window": (SWA, {"n_ctx": 8192, "tensor_split": (1, 1)}, 2, 0),
    "sliding-window-slots-shared": (SWA, {"n_ctx": 8192, "n_parallel": 3, "kv_unified": True}, 2, 0),
    "quantized-kv": (Q8, {"n_ctx": 4096, "cache_type_k": "Q8_0", "cache_type_v": "Q4_0", "tensor_split": (1, 1)}, 2, 0),
    "moe-experts-on-host": (MOE, {"n_ctx": 4096, "n_cpu_moe": 2, "tensor_split": (1, 1)}, 2, 0),
    "moe-all-experts-on-host": (MOE, {"n_ctx": 4096, "cpu_overrides": (r"\.ffn_(up|down|gate)_exps",)}, 2, 0),
    "moe-all-offloaded": (MOE, {"n_ctx": 4096, "n_ubatch": 256, "tensor_split": (1, 1)}, 2, 0),
    "recurrent-state": (MAMBA, {"n_ctx": 4096, "n_parallel": 3, "tensor_split": (1, 1)}, 2, 0),
    "recurrent-state-cpu": (MAMBA, {"n_ctx": 4096, "n_parallel": 1, "n_ubatch": 256}, 0, 0),
}
# Compute buffers within 15%, except where some layers' experts are kept on the host and others not: the graph is
# then cut between the device and the CPU in ways the plan does not follow (up to 38% off on the grid behind it,
# bench/llamacpp_memory.py). Model and KV buffers are within 1% everywhere.
COMPUTE_TOLERANCE = {"moe-experts-on-host": 0.40}


def close(planned: int, logged: float, tolerance: float) -> bool:
    """A planned size against a logged one (MiB printed to 0.01): within tolerance, or the print's rounding."""
    return abs(planned / MiB - logged) <= max(tolerance * logged, 0.006)


@pytest.mark.llama_cpp
def test_the_server_warns_and_refuses_as_the_plan_says(real: Real, tmp_path: Path) -> None:
    """A context beyond the training context: both warn. A quantized V cache without flash attention: the plan
    refuses, and the server exits with its error."""
    facts, model = facts_of(tmp_path, "gqa", GQA)
    beyond = LlamaCppArgs(n_ctx=8192)
    assert [w.split(":")[0] for w in warnings(facts, beyond)] == [
        "each slot's context (8192 tokens) is beyond the 4096 tokens llama was trained on"
    ]
    assert warnings(facts, LlamaCppArgs(n_ctx=4096)) == []
    ready, log = run_server(real.build, args_for(beyond, model, []), SERVER_HOST, tmp_path / "beyond")
    assert ready and "n_ctx_seq (8192) > n_ctx_train (4096) -- possible training context overflow" in log
    ready, log = run_server(real.build, args_for(LlamaCppArgs(n_ctx=4096), model, []), SERVER_HOST, tmp_path / "ok")
    assert ready and "possible training context overflow" not in log
    refused = LlamaCppArgs(n_ctx=4096, flash_attn=False, cache_type_v="Q8_0")
    with pytest.raises(LlamaCppPlanError, match="quantized V cache"):
        plan(facts, refused)
    ready, log = run_server(real.build, args_for(refused, model, []), SERVER_HOST, tmp_path / "refused")
    assert not ready and "quantized V cache requires flash_attn to be enabled" in log


@pytest.mark.llama_cpp
@pytest.mark.parametrize(("cache_ram", "printed"), [(512, "512 MiB"), (-1, "no limit")])
def test_the_prompt_cache_ceiling_counts_in_host_memory(
    cache_ram: int, printed: str, real: Real, tmp_path: Path
) -> None:
    facts, model = facts_of(tmp_path, "gqa", GQA)
    args = LlamaCppArgs(n_ctx=4096, cache_ram_mib=cache_ram)
    planned = plan(facts, args)
    if cache_ram < 0:
        assert planned.host_total is None
        assert warnings(facts, args) == [
            "the prompt cache has no limit (--cache-ram -1): it can grow into all of the host's memory"
        ]
    else:
        assert planned.host_total == planned.host.total + cache_ram * MiB
    ready, log = run_server(real.build, args_for(args, model, []), SERVER_HOST, tmp_path / "server")
    assert ready and f"prompt cache is enabled, size limit: {printed}" in log


def test_a_context_the_slots_do_not_divide_is_rounded_up_with_a_warning(tmp_path: Path) -> None:
    facts, _ = facts_of(tmp_path, "gqa", GQA)
    assert warnings(facts, LlamaCppArgs(n_ctx=4000, n_parallel=3)) == [
        "the context 4000 is not a multiple of 256 per slot for 3 slots: llama.cpp makes it 4608 (1536 per slot)"
    ]


@pytest.mark.llama_cpp
@pytest.mark.parametrize("case", list(CASES))
def test_the_plan_matches_what_the_real_server_allocates(case: str, real: Real, tmp_path: Path) -> None:
    shape, sizing, n_dev, split = CASES[case]
    facts, model = facts_of(tmp_path, case, shape, split)
    addresses = real.addresses[:n_dev]
    args = LlamaCppArgs(devices=tuple(addresses), **sizing)
    ready, log = run_server(real.build, args_for(args, model, addresses), SERVER_HOST, tmp_path / "server")
    assert ready, log[-3000:]
    logged = allocated(log, addresses)
    planned = plan(facts, args)
    pairs = [(planned.host, logged.host, "host")]
    pairs += [(planned.devices[i], logged.devices[a], a) for i, a in enumerate(addresses)]
    compute_tolerance = COMPUTE_TOLERANCE.get(case, 0.15)
    for p, r, where in pairs:
        assert close(p.model, r["model"], 0.01), (case, where, "model", p.model / MiB, r["model"])
        assert close(p.kv, r["kv"], 0.01), (case, where, "KV", p.kv / MiB, r["kv"])
        assert close(p.compute, r["compute"], compute_tolerance), (case, where, "compute", p.compute / MiB, r)


def _vm_size(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmSize for {pid}")


# The first device's memory: above the plan's total; below it but above the total without pipelining (llama.cpp
# retries without it); below that.
LIMITS = {"fits": (1.10, False), "fits-without-pipelining": (0.90, False), "does-not-fit": (0.90, True)}


@pytest.mark.llama_cpp
@pytest.mark.parametrize("limit", list(LIMITS))
def test_fits_or_not_as_the_real_server_finds_it(limit: str, real: Real, tmp_path: Path) -> None:
    """llama-server loads, or fails to allocate, as the plan says. The first device is an rpc-server whose address
    space is limited to what it uses idle plus the memory given (prlimit --as), so an allocation past it fails as
    it would on a full GPU."""
    if shutil.which("prlimit") is None or not Path("/proc/self/status").exists():
        pytest.skip("prlimit and /proc are needed to give an rpc-server a memory limit")
    facts, model = facts_of(tmp_path, "gqa", GQA)
    device = start_rpc_server(real.build, "127.0.0.45", tmp_path, "limited")
    try:
        args = LlamaCppArgs(n_ctx=4096, devices=(device.url, real.addresses[1]), tensor_split=(1, 1))
        planned = plan(facts, args)
        first = planned.devices[0]
        margin, unpipelined = LIMITS[limit]
        memory = int(margin * (first.model + first.kv + planned.unpipelined_compute[0] if unpipelined else first.total))
        assert planned.unpipelined_compute[0] < 0.8 * first.compute  # the middle case is one
        fits = not planned.over([memory, planned.devices[1].total])
        assert fits == (limit != "does-not-fit")
        subprocess.run(["prlimit", f"--pid={device.pid}", f"--as={_vm_size(device.pid) + memory}"], check=True)
        addresses = [device.url, real.addresses[1]]
        ready, log = run_server(real.build, args_for(args, model, addresses), SERVER_HOST, tmp_path / "server")
        assert ready == fits, log[-3000:]
        assert ("retrying without pipeline parallelism" in log) == (limit != "fits")
    finally:
        device.stop()


def test_the_largest_context_that_fits_is_the_last_that_does(tmp_path: Path) -> None:
    facts, _ = facts_of(tmp_path, "gqa", GQA)
    args = LlamaCppArgs(n_ctx=32768, devices=("A",))
    memory = [plan(facts, replace(args, n_ctx=3072)).devices[0].total]
    assert largest_context(facts, args, memory) == 3072
    assert largest_context(facts, args, [memory[0] - 1]) == 2816
    assert largest_context(facts, args, [1]) == 0
    assert largest_context(facts, args, [1 << 40]) == 32768
    assert largest_context(facts, replace(args, n_ctx=0), [1 << 40]) == 4096  # the training context
