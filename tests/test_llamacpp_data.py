"""The published llama.cpp data under data/llamacpp (images, start-up logs, speed): every entry names where it
was read, carries the fields the planner and the speed bench need, in sane units, and no text of its sources."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT

LLAMACPP = ROOT / "data" / "llamacpp"
SOURCE_FILE = re.compile(r"^[\w.-]+/[\w.-]+@[0-9a-f]{40}:\S+$")
SOURCE_THREAD = re.compile(r"^https://github\.com/[\w.-]+/[\w.-]+/(issues|pull|discussions)/\d+(#\S+)?$")
SOURCE_PAGE = re.compile(r"^https://\S+$")
TEST_NAME = re.compile(r"^(pp\d+|tg\d+|pp\d+\+tg\d+)(@d\d+)?$")
# a reference (file at a commit, an address) may be long; any other string is a value, short and unquoted
LONGEST_VALUE = 120


def _load(name: str) -> Any:
    return yaml.safe_load((LLAMACPP / name).read_text())


def _strings(value: Any, key: str = "") -> list[tuple[str, str]]:
    if isinstance(value, str):
        return [(key, value)]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in _strings(v, str(k))]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v, key)]
    return []


def _is_reference(text: str) -> bool:
    return bool(SOURCE_FILE.match(text) or SOURCE_PAGE.match(text))


def _check_no_text(where: str, entry: Any) -> None:
    for key, text in _strings(entry):
        assert '"' not in text, (where, key, text)
        if not _is_reference(text):
            assert len(text) <= LONGEST_VALUE, (where, key, text)


def _check_source(where: str, entry: dict[str, Any]) -> None:
    source = entry["source"]
    assert SOURCE_FILE.match(source) or SOURCE_THREAD.match(source), (where, source)
    if SOURCE_THREAD.match(source):
        # a post in a thread is found by its author and its place in the thread or its date
        assert entry["comment_by"], where
        date, turn = entry.get("date"), entry.get("turn")
        assert date is None or re.match(r"^\d{4}-\d\d-\d\d$", str(date)), (where, date)
        assert turn is None or (isinstance(turn, int) and turn >= 0), (where, turn)
        assert date is not None or turn is not None, (where, "neither a date nor a turn")
    for key, value in entry.items():
        if key == "line" or key.endswith("_line"):
            assert isinstance(value, int) and value > 0, (where, key, value)
        if key.endswith("_lines"):
            assert value and all(isinstance(v, int) and v > 0 for v in value), (where, key, value)
        if key.endswith("_source"):
            assert _is_reference(value), (where, key, value)


def test_the_folder_holds_what_its_readme_describes() -> None:
    names = sorted(p.name for p in LLAMACPP.iterdir())
    assert names == ["README.md", "bench.yaml", "images.yaml", "startup_logs.yaml"]
    readme = (LLAMACPP / "README.md").read_text()
    for name in names[1:]:
        assert f"`{name}`" in readme, name


def test_every_image_names_its_source_entrypoint_and_server() -> None:
    doc = _load("images.yaml")
    assert {i["id"] for i in doc["images"]} >= {"mixa3607-ggml", "kyuz0-toolbox"}
    for image in doc["images"]:
        where = image["id"]
        _check_source(where, image)
        _check_no_text(where, image)
        assert re.match(r"^docker\.io/[\w.-]+/[\w.-]+$", image["image"]), where
        assert isinstance(image["entrypoint"], list), where
        assert image["llama_server_path"].startswith("/") and image["llama_server_path"].endswith("/llama-server")
        assert image["rocm_version"] if "rocm_version" in image else image["rocm_versions"], where
        assert image["host_driver"]["requirement_source"].startswith("https://"), where
        assert image["tags"]["scheme_moving"], where
    for other in doc["not_images"]:
        _check_source(other["id"], other)
        assert other["image"] is None


def _owner_repo(source: str) -> str:
    if source.startswith("https://github.com/"):
        return "/".join(source.split("/")[3:5])
    return source.split("@")[0]


def _points() -> tuple[dict[str, Any], list[dict[str, Any]]]:
    doc = _load("bench.yaml")
    return doc["held_out_rule"], doc["points"]


def test_every_speed_point_has_a_source_a_class_and_sane_units() -> None:
    rule, points = _points()
    ids = [p["id"] for p in points]
    assert len(ids) == len(set(ids)), "ids are unique"
    for point in points:
        where = point["id"]
        _check_source(where, point)
        _check_no_text(where, point)
        assert point["set"] in ("dev", "heldout"), where
        owner_repo = _owner_repo(point["source"])
        assert owner_repo in rule[point["set"]], (where, owner_repo, "the held-out rule is by source")
        assert TEST_NAME.match(point["test"]), (where, point["test"])
        assert 0.5 < point["tokens_per_s"] < 20000, (where, point["tokens_per_s"])
        assert point["tool"] in ("llama-bench", "llama-server"), where
        assert point["backend"] in ("ROCm", "Vulkan"), where
        assert point["quant"] and (point.get("model_file") or point.get("model_type")), where
        gpus = point["num_gpus"]
        assert gpus is None or (isinstance(gpus, int) and 1 <= gpus <= 16), where
        size_bytes, size_gib = point.get("model_size_bytes"), point.get("model_size_gib")
        assert size_bytes is None or 1e8 < size_bytes < 1e12, where
        assert size_gib is None or 0.1 < size_gib < 1000, where
        if point["test"].startswith("tg") and point.get("concurrency") in (None, 1):
            # a single stream on these boards decodes well under 300 tokens/s
            assert point["tokens_per_s"] < 300, where
        if point["tool"] == "llama-server":
            assert isinstance(point["concurrency"], int) and point["concurrency"] >= 1, where


def test_the_speed_data_reaches_across_models_quantizations_and_both_classes() -> None:
    _, points = _points()
    for cls in ("dev", "heldout"):
        chosen = [p for p in points if p["set"] == cls]
        assert len({p.get("model_file") or p["model_type"] for p in chosen}) >= 5, cls
        assert len({p["quant"] for p in chosen}) >= 4, cls
        assert any(p["test"].startswith("pp") for p in chosen) and any(p["test"].startswith("tg") for p in chosen)
    assert len(points) >= 40


def _logs() -> list[dict[str, Any]]:
    logs: list[dict[str, Any]] = _load("startup_logs.yaml")["logs"]
    return logs


def _mib_values(entry: dict[str, Any]) -> list[float]:
    """Every buffer size the entry copies from its log: the keys ending in _mib and the per-device maps."""
    found: list[float] = []
    for key, value in entry.items():
        if isinstance(value, dict):
            if key.endswith("_mib"):
                found += list(value.values())
            else:
                found += _mib_values(value)
        elif key.endswith("_mib"):
            found.append(value)
    return found


def test_every_startup_log_names_its_post_and_copies_buffer_sizes() -> None:
    logs = _logs()
    ids = [log["id"] for log in logs]
    assert len(ids) == len(set(ids))
    for log in logs:
        where = log["id"]
        _check_source(where, log)
        _check_no_text(where, log)
        assert log["set"] in ("dev", "heldout"), where
        # dev logs come from gfx906 boards; the held-out ones from other GPUs
        assert (log.get("gpu_arch") == "gfx906") == (log["set"] == "dev"), where
        assert log["backend"] in ("ROCm", "Vulkan", "CUDA"), where
        assert log["printed"] and set(log["printed"]) <= {
            "metadata",
            "shape",
            "command",
            "model",
            "context",
            "kv",
            "compute",
        }
        sizes = _mib_values(log)
        assert sizes, (where, "no buffer size")
        # sizes are MiB with two decimals as llama.cpp prints them; none is negative or beyond 1 TiB
        assert all(isinstance(v, float) and 0 <= v < 1024 * 1024 for v in sizes), (where, sizes)
        kv = log.get("kv", {})
        if "total_mib" in kv and "k_mib" in kv and "v_mib" in kv:
            assert abs(kv["k_mib"] + kv["v_mib"] - kv["total_mib"]) < 0.02, where
        if "per_device_mib" in kv and "total_mib" in kv:
            assert abs(sum(kv["per_device_mib"].values()) - kv["total_mib"]) < 0.05, where


def test_the_startup_logs_hold_both_classes() -> None:
    sets = [log["set"] for log in _logs()]
    assert sets.count("dev") >= 4 and sets.count("heldout") >= 5


@pytest.mark.parametrize("bad", ['the model "ran" fine', "x" * (LONGEST_VALUE + 1)])
def test_the_text_check_refuses_a_quote_or_a_sentence(bad: str) -> None:
    with pytest.raises(AssertionError):
        _check_no_text("example", {"note_like": bad})


def test_the_source_check_refuses_a_reference_without_a_commit() -> None:
    with pytest.raises(AssertionError):
        _check_source("example", {"source": "mixa3607/ML-gfx906:llama.cpp/README.md"})
