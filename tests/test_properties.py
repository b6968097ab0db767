"""Property tests of the config boundary: valid stacks load; one bad field gives one clear error."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from components.settings import StackConfigError
from tests.stacks import load, set_key

MODELS = {  # model -> tensor-parallel sizes its heads and AWQ groups allow
    "Qwen/Qwen2.5-7B-Instruct-AWQ": [1, 2, 4],
    "Qwen/Qwen2.5-14B-Instruct-AWQ": [1, 2, 4],
}


@st.composite
def valid_stacks(draw: st.DrawFn) -> dict[str, Any]:
    host_gpus = draw(st.integers(min_value=1, max_value=8))
    model = draw(st.sampled_from(sorted(MODELS)))
    tp = draw(st.sampled_from([t for t in MODELS[model] if t <= host_gpus]))
    owned = draw(st.permutations(list(range(host_gpus))))[:tp]
    first_card = draw(st.integers(min_value=0, max_value=2))
    port = draw(st.integers(min_value=1024, max_value=60000))
    values: dict[str, Any] = {
        "host": {
            "docker": draw(
                st.sampled_from(["unix:///var/run/docker.sock", "ssh://ops@gpu-box", "ssh://ops@gpu-box:2222"])
            ),
            "ssh_host_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl",
            "gpu": draw(st.sampled_from(["mi60", "mi50-32gb"])),
            "gpus": [{"index": i, "card": first_card + i, "render": 128 + i} for i in range(host_gpus)],
            "groups": {"video": draw(st.integers(0, 999)), "render": draw(st.integers(0, 999))},
        },
        "vllm": {
            "image": "nalanzeyu/vllm-gfx906:v0.11.2-rocm6.3",
            "model": model,
            "gpus": owned,
            "tensor_parallel_size": tp,
            "max_model_len": draw(st.integers(min_value=256, max_value=8192)),
            "gpu_memory_utilization": draw(st.floats(min_value=0.8, max_value=0.95)),
            "shm_size": draw(st.sampled_from(["8g", "16g", "1024m", "2gb"])),
            "port": port,
        },
    }
    if draw(st.booleans()):
        values["embeddings"] = {
            "image": "michaelf34/infinity:0.0.77-cpu",
            "model": "nomic-ai/nomic-embed-text-v1.5",
            "port": port + 1,
        }
    return values


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_stacks())
def test_every_valid_generated_stack_loads(values: dict[str, Any]) -> None:
    loaded = load(values)
    assert loaded.settings.servers["vllm"].tensor_parallel_size == len(loaded.settings.servers["vllm"].gpus)


# One field at a time into a value it must refuse.
MUTATIONS: list[tuple[str, Any]] = [
    ("vllm.gpu_memory_utilization", 1.5),
    ("vllm.gpu_memory_utilization", 0),
    ("vllm.gpu_memory_utilization", -0.2),
    ("vllm.gpu_memory_utilization", "high"),
    ("vllm.port", 0),
    ("vllm.port", 65536),
    ("vllm.port", "eight thousand"),
    ("vllm.max_model_len", -1),
    ("vllm.max_model_len", "long"),
    ("vllm.max_model_len", 1.5),
    ("vllm.shm_size", "lots"),
    ("vllm.shm_size", 16),
    ("vllm.shm_size", "100k"),
    ("vllm.tensor_parallel_size", 0),
    ("vllm.dtype", "int3"),
    ("vllm.image", "has space:1"),
    ("vllm.model", ""),
    ("vllm.startup_timeout", 5),
    ("vllm.bogus_key", 1),
    ("host.docker", "tcp://x:2375"),
    ("host.bind", "everywhere"),
    ("host.groups.video", -1),
    ("host.groups.render", "render"),
    ("host.gpus[0].render", 12),
    ("host.gpus[0].index", "zero"),
    ("host.gpus", []),
    ("vllm.gpus", []),
    ("vllm.gpus[0]", "first"),
    ("host.gpu_memory_gib", -4),
    ("host.surprise", True),
]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_stacks(), st.sampled_from(MUTATIONS))
def test_one_bad_field_gives_exactly_one_clear_error_naming_it(
    values: dict[str, Any], mutation: tuple[str, Any]
) -> None:
    key, bad = mutation
    try:
        load(set_key(values, key, bad))
    except StackConfigError as exc:
        lines = exc.lines
    else:
        raise AssertionError(f"{key}={bad!r} was accepted")
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"Pulumi.test.yaml: rocm-inference:{key} "), lines[0]
    assert "Traceback" not in lines[0] and "pydantic" not in lines[0].lower()
