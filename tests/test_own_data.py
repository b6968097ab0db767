"""The project carries its own data: nothing reads or names the folder beside the repository it grew up
with (a user's clone has none), and the published measurements under data/ keep numbers, settings and
references, never the sources' words."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT

# Spelt in parts so that this file does not name what it looks for.
OUTSIDE = re.compile(
    r"\.\./" + "shared" + r"\b|/work/" + "shared" + r"|\b" + "shared" + r"/(data|seed|design|schemas|hooks)\b"
)
SKIPPED = {".git", "venv", "node_modules", "__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache"}
THROUGHPUT = ROOT / "data" / "throughput"
SOURCE_FILE = re.compile(r"^[\w.-]+/[\w.-]+@[0-9a-f]{40}:\S+$")
SOURCE_THREAD = re.compile(r"^https://github\.com/[\w.-]+/[\w.-]+/(issues|pull)/\d+$")


def _project_files() -> list[Path]:
    out: list[Path] = []
    for path in ROOT.rglob("*"):
        if path.is_file() and not SKIPPED.intersection(path.relative_to(ROOT).parts) and path.suffix != ".png":
            out.append(path)
    return out


def test_no_project_file_points_outside_the_repository() -> None:
    found = []
    for path in _project_files():
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        found += [
            f"{path.relative_to(ROOT)}:{n}" for n, line in enumerate(text.splitlines(), 1) if OUTSIDE.search(line)
        ]
    assert not found, f"these lines name a folder a user's clone does not have: {found}"


@pytest.mark.parametrize(
    "line",
    ["THROUGHPUT = ROOT / '../" + "shared' / 'data'", "see ../" + "shared", "from " + "shared" + "/seed/x.md"],
)
def test_the_check_sees_a_reference_outside(line: str) -> None:
    assert OUTSIDE.search(line)


def _points() -> list[tuple[str, dict[str, Any]]]:
    files = sorted(THROUGHPUT.glob("*.json"))
    assert [f.name for f in files] == ["mixa3607-2xmi50.json", "other-sources.json"]
    return [(f.name, point) for f in files for point in json.loads(f.read_text())]


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def test_every_published_point_names_its_source() -> None:
    for name, point in _points():
        source = point["source"]
        assert SOURCE_FILE.match(source) or SOURCE_THREAD.match(source), (name, point["id"], source)
        if SOURCE_THREAD.match(source):
            assert point["comment_by"] and re.match(r"^\d{4}-\d\d-\d\d", point["date"]), (name, point["id"])
        if "line" in point:
            assert isinstance(point["line"], int) and point["line"] > 0


def test_the_published_points_carry_no_text_of_their_sources() -> None:
    for name, point in _points():
        words = [k for k in point if k in ("quote", "note") or k.endswith(("_note", "_notes"))]
        assert not words, (name, point["id"], words)
        for text in _strings(point):
            # figures, settings and references are short and quote nothing; a sentence is neither
            assert '"' not in text and len(text) <= 170 and len(text.split()) <= 6, (name, point["id"], text)
