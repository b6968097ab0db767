"""The GGUF header reader (components/tools/gguf_header.py) against a local HTTP server that serves the Hub's
/resolve/ paths with byte ranges: it reads only the headers, every split's, through huggingface_hub's session,
and its facts are those of the `gguf` package's own reader of the whole files."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import gguf
import pytest
import yaml

from components.planning.gguf import GgufError, GgufFacts
from components.settings import read_stack_file
from components.tools import gguf_header
from components.tools import model as model_tool
from components.tools.gguf_header import hub_reader, pick_files, read_facts
from components.tools.plan import plan_stack
from tests.llama_cpp_models import Shape, write_model
from tests.local_http import JsonHandler, serving

HOST = "127.0.0.44"
REPO = "synthetic/tiny-GGUF"
REVISION = "0123456789abcdef0123456789abcdef01234567"
# A model whose metadata alone outgrows the first range (as a real tokenizer does): the reader must ask for more.
LONG_HEADER = Shape(description=1_200_000)


class RangeServer:
    """Files of one folder at /REPO/resolve/REVISION/NAME, with Range requests; it records each request."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.requests: list[tuple[str, str | None]] = []
        self.lock = threading.Lock()


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[tuple[str, RangeServer]]:
    state = RangeServer(tmp_path)

    class Handler(JsonHandler):
        def do_GET(self) -> None:
            prefix = f"/{REPO}/resolve/{REVISION}/"
            rng = self.headers.get("Range")
            with state.lock:
                state.requests.append((self.path, rng))
            path = state.folder / self.path.removeprefix(prefix)
            if not self.path.startswith(prefix) or not path.is_file():
                self.json_reply(404, {"error": "Entry not found"})
                return
            data = path.read_bytes()
            m = re.fullmatch(r"bytes=(\d+)-(\d+)", rng or "")
            if not m:
                self.send_response(200)
                body = data
            else:
                start, end = int(m.group(1)), min(int(m.group(2)), len(data) - 1)
                if start >= len(data):
                    self.json_reply(416, {"error": "Range Not Satisfiable"})
                    return
                body = data[start : end + 1]
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    with serving(HOST, Handler) as url:
        yield url, state


def whole_file_facts(files: list[Path]) -> dict[str, tuple[str, tuple[int, ...], int, int]]:
    """Every tensor's (type, shape, file, offset) as gguf's GGUFReader reads the whole files."""
    out = {}
    for index, f in enumerate(files):
        reader = gguf.GGUFReader(f)
        for t in reader.tensors:
            shape = tuple(int(d) for d in t.shape)
            out[t.name] = (t.tensor_type.name, shape, index, int(t.data_offset - reader.data_offset))
    return out


def facts_table(facts: GgufFacts) -> dict[str, tuple[str, tuple[int, ...], int, int]]:
    return {t.name: (t.type, t.shape, t.file, t.offset) for t in facts.tensors}


def test_reads_only_the_header_with_ranges_and_agrees_with_ggufs_own_reader(
    hub: tuple[str, RangeServer], tmp_path: Path
) -> None:
    url, server = hub
    files = write_model(tmp_path / "tiny-Q8_0.gguf", replace(Shape(), weights="Q8_0"))
    facts = read_facts(hub_reader(REPO, REVISION, None, endpoint=url), "tiny-Q8_0.gguf")
    assert facts_table(facts) == whole_file_facts(files)
    assert facts.metadata["llama.attention.head_count_kv"] == 2
    assert "tokenizer.ggml.tokens" not in facts.metadata
    assert server.requests == [(f"/{REPO}/resolve/{REVISION}/tiny-Q8_0.gguf", "bytes=0-1048575")]
    assert files[0].stat().st_size > 2 * gguf_header.FIRST_RANGE  # the weights were not read


def test_a_header_longer_than_the_first_range_is_read_on_in_growing_ranges(
    hub: tuple[str, RangeServer], tmp_path: Path
) -> None:
    url, server = hub
    files = write_model(tmp_path / "long-header-F16.gguf", LONG_HEADER)
    facts = read_facts(hub_reader(REPO, REVISION, None, endpoint=url), "long-header-F16.gguf")
    assert facts_table(facts) == whole_file_facts(files)
    assert [r for _, r in server.requests] == ["bytes=0-1048575", "bytes=1048576-2097151"]


def test_every_split_header_is_read_and_each_lists_its_own_tensors(
    hub: tuple[str, RangeServer], tmp_path: Path
) -> None:
    url, server = hub
    files = write_model(tmp_path / "tiny-F16.gguf", Shape(), split_max_tensors=15)
    assert [f.name for f in files] == [f"tiny-F16-0000{i}-of-00003.gguf" for i in (1, 2, 3)]
    facts = read_facts(hub_reader(REPO, REVISION, None, endpoint=url), files[0].name)
    assert facts_table(facts) == whole_file_facts(files)
    assert facts.files == tuple(f.name for f in files)
    assert [(p.rsplit("/", 1)[1], r) for p, r in server.requests] == [(f.name, "bytes=0-1048575") for f in files]
    assert GgufFacts.from_block(facts.to_block()).tensors == facts.tensors


def test_a_file_that_is_not_gguf_or_is_missing_says_so(hub: tuple[str, RangeServer], tmp_path: Path) -> None:
    url, _ = hub
    (tmp_path / "notes.gguf").write_bytes(b"not a model" * 100)
    read = hub_reader(REPO, REVISION, None, endpoint=url)
    with pytest.raises(GgufError, match="not a GGUF file"):
        read_facts(read, "notes.gguf")
    with pytest.raises(GgufError, match="HTTP 404"):
        read_facts(read, "absent.gguf")
    (tmp_path / "cut.gguf").write_bytes(write_model(tmp_path / "whole.gguf", Shape())[0].read_bytes()[:2000])
    with pytest.raises(GgufError, match="ends inside its GGUF header"):
        read_facts(read, "cut.gguf")


def test_the_file_is_picked_by_its_name_or_its_quantization() -> None:
    files = [
        "README.md",
        "Model-Q4_K_M.gguf",
        "Model-Q8_0.gguf",
        "mmproj-Model-Q8_0.gguf",
        "Q6_K/Model-Q6_K-00001-of-00002.gguf",
        "Q6_K/Model-Q6_K-00002-of-00002.gguf",
    ]
    assert pick_files(files, "Model-Q8_0.gguf") == "Model-Q8_0.gguf"
    assert pick_files(files, "q4_k_m") == "Model-Q4_K_M.gguf"
    assert pick_files(files, "Q8_0") == "Model-Q8_0.gguf"
    assert pick_files(files, "Q6_K") == "Q6_K/Model-Q6_K-00001-of-00002.gguf"
    with pytest.raises(GgufError, match="no GGUF file matches 'Q5_K_M'; the repository has Q4_K_M, Q6_K, Q8_0"):
        pick_files(files, "Q5_K_M")


def test_the_model_tool_prints_the_gguf_block_of_a_quantization(
    hub: tuple[str, RangeServer], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`python -m components.model REPO --gguf Q8_0`: the file picked among the repository's, only its headers
    read, and a block that gives back the same facts."""
    url, server = hub
    files = write_model(tmp_path / "tiny-Q8_0.gguf", replace(Shape(), weights="Q8_0"))
    write_model(tmp_path / "tiny-F16.gguf", Shape())
    listing = ["README.md", "tiny-F16.gguf", "tiny-Q8_0.gguf"]
    monkeypatch.setattr(model_tool, "repo_files", lambda model, revision, token: listing)
    monkeypatch.setattr(model_tool, "hub_reader", lambda m, r, t: hub_reader(m, r, t, endpoint=url))
    assert model_tool.main([REPO, "--revision", REVISION, "--gguf", "Q8_0"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"# {REPO}: tiny-Q8_0.gguf, llama, 4 layers, 1 file(s)\n")
    block = yaml.safe_load(out[out.index("gguf:") :])["gguf"]
    assert facts_table(GgufFacts.from_block(block)) == whole_file_facts(files)
    assert server.requests == [(f"/{REPO}/resolve/{REVISION}/tiny-Q8_0.gguf", "bytes=0-1048575")]


def test_the_model_tool_names_the_quantizations_there_are(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(model_tool, "repo_files", lambda model, revision, token: ["m-Q4_K_M.gguf", "m-Q8_0.gguf"])
    assert model_tool.main([REPO, "--gguf", "Q5_K_M"]) == 1
    assert capsys.readouterr().err == (
        f"model: {REPO}: no GGUF file matches 'Q5_K_M'; the repository has Q4_K_M, Q8_0\n"
    )
    with pytest.raises(SystemExit) as exit_:
        model_tool.main([REPO, "--gguf", "Q8_0", "--write", "small-chat", "--revision", "main"])
    assert exit_.value.code == 2
    assert "--gguf with --write needs --revision COMMIT, the 40 hex digits" in capsys.readouterr().err


def test_the_model_tool_writes_the_gguf_block_into_a_llamacpp_server(
    hub: tuple[str, RangeServer], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--gguf FILE --write STACK --server NAME: the block and the revision go into that server, the stack then
    plans the file read (components/planning/engines/llamacpp.py)."""
    url, _ = hub
    write_model(tmp_path / "tiny-Q8_0.gguf", replace(Shape(), weights="Q8_0"))
    monkeypatch.setattr(model_tool, "repo_files", lambda model, revision, token: ["tiny-Q8_0.gguf"])
    monkeypatch.setattr(model_tool, "hub_reader", lambda m, r, t: hub_reader(m, r, t, endpoint=url))
    stack = tmp_path / "stacks" / "Pulumi.tiny.yaml"
    stack.parent.mkdir()
    text = (Path(__file__).parent / "stacks" / "Pulumi.llamacpp-moe.yaml").read_text()
    head = text[: text.index("      gguf:")]
    stack.write_text(
        head.replace("unsloth/Qwen3-30B-A3B-GGUF", REPO).replace("file: Q4_K_M", "file: Q8_0") + "      gguf: {}\n"
    )
    monkeypatch.setattr(model_tool, "stack_path", lambda name: tmp_path / "stacks" / f"Pulumi.{name}.yaml")
    args = [REPO, "--revision", REVISION, "--gguf", "Q8_0", "--write", "tiny", "--server", "moe"]
    assert model_tool.main(args) == 0
    server = read_stack_file(stack).values["servers"]["moe"]
    assert server["model_revision"] == REVISION
    assert GgufFacts.from_block(server["gguf"]).files == ("tiny-Q8_0.gguf",)
    assert (
        plan_stack(read_stack_file(stack))
        .by_name("moe-container")
        .inputs["command"][2]
        .endswith(f"/snapshots/{REVISION}/tiny-Q8_0.gguf")
    )
