"""Read a GGUF model's facts from its headers alone, with ranged HTTP reads through huggingface_hub.

`gguf`'s GGUFReader memory-maps a whole file; a 4-bit 30B model is 18 GB. The header (metadata, then one
record per tensor: name, dimensions, type, offset) is at the start of the file, a few MB at most, most of it the
tokenizer. This reads the first MiB, and while the header does not parse to its last tensor record, the next
range of twice the size, appended (never a byte twice). The layout is GGUF's (ggml/src/gguf.cpp gguf_init_from_file
and gguf-py/gguf/gguf_reader.py): magic, version, tensor count, key-value count, the key-values, the tensor infos;
values by the `gguf` package's GGUFValueType. For a split model (`-00001-of-0000N.gguf`, `split.count` in its
header) every split's header is read: each lists its own tensors.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable, Sequence
from typing import Any

from components.planning.gguf import GgufError, GgufFacts, Tensor, planner_metadata, type_name

FIRST_RANGE = 1 << 20
MAX_HEADER = 256 << 20  # a header past this is not a model's
SPLIT_NAME = re.compile(r"^(?P<stem>.*)-(?P<no>\d{5})-of-(?P<count>\d{5})\.gguf$")

# Reads bytes [start, end) of a file; a short answer means the file ended.
RangeReader = Callable[[str, int, int], bytes]


class NeedMore(Exception):
    """The buffer ends before the header does."""


class _Cursor:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise NeedMore
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def unpack(self, fmt: str) -> Any:
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt)))[0]

    def string(self) -> str:
        return self.take(self.unpack("Q")).decode("utf-8", errors="replace")


def _scalar_formats() -> dict[int, str]:
    from gguf import GGUFValueType as V

    return {
        V.UINT8: "B", V.INT8: "b", V.UINT16: "H", V.INT16: "h", V.UINT32: "I", V.INT32: "i",
        V.FLOAT32: "f", V.BOOL: "?", V.UINT64: "Q", V.INT64: "q", V.FLOAT64: "d",
    }  # fmt: skip


def _value(cur: _Cursor, vtype: int, formats: dict[int, str], keep: bool) -> Any:
    from gguf import GGUFValueType as V

    if vtype == V.STRING:
        return cur.string()
    if vtype == V.ARRAY:
        itype, count = cur.unpack("I"), cur.unpack("Q")
        if not keep and itype in formats:  # an array the plan does not read is skipped, not decoded
            cur.take(struct.calcsize("<" + formats[itype]) * count)
            return None
        if not keep and itype == V.STRING:  # the tokenizer's tokens and merges
            for _ in range(count):
                cur.take(cur.unpack("Q"))
            return None
        return [_value(cur, itype, formats, keep) for _ in range(count)]
    if vtype in formats:
        return cur.unpack(formats[vtype])
    raise GgufError(f"unknown GGUF value type {vtype}")


def parse_header(data: bytes, file: int = 0) -> tuple[dict[str, Any], list[Tensor], int]:
    """(metadata, tensors, data offset) from a buffer that starts with a GGUF file. Raises NeedMore while the
    buffer ends before the last tensor record, GgufError when it is not GGUF."""
    from gguf import GGUF_MAGIC

    cur = _Cursor(data)
    if cur.unpack("I") != GGUF_MAGIC:
        raise GgufError("not a GGUF file (no GGUF magic)")
    version = cur.unpack("I")
    if version not in (2, 3):
        raise GgufError(f"GGUF version {version} is not read here (2 and 3 are)")
    n_tensors, n_kv = cur.unpack("Q"), cur.unpack("Q")
    formats = _scalar_formats()
    metadata: dict[str, Any] = {}
    for _ in range(n_kv):
        key = cur.string()
        value = _value(
            cur,
            cur.unpack("I"),
            formats,
            keep=key.endswith(("_pattern", "head_count", "head_count_kv", "recurrent_layers", "feed_forward_length")),
        )
        if value is not None:
            metadata[key] = value
    tensors = []
    for _ in range(n_tensors):
        name = cur.string()
        shape = tuple(cur.unpack("Q") for _ in range(cur.unpack("I")))
        tensors.append(Tensor(name, type_name(cur.unpack("I")), shape, file, cur.unpack("Q")))
    alignment = int(metadata.get("general.alignment", 32))
    return metadata, tensors, (cur.pos + alignment - 1) // alignment * alignment


def read_header(read: RangeReader, name: str, file: int = 0) -> tuple[dict[str, Any], list[Tensor]]:
    """One file's header through `read`: the first MiB, then ranges of twice the size until it parses."""
    data = b""
    want = FIRST_RANGE
    while True:
        chunk = read(name, len(data), want)
        data += chunk
        try:
            metadata, tensors, _ = parse_header(data, file)
            return metadata, tensors
        except NeedMore:
            if len(data) < want:
                raise GgufError(f"{name} ends inside its GGUF header ({len(data)} bytes)") from None
            if want >= MAX_HEADER:
                raise GgufError(f"{name}'s GGUF header is longer than {MAX_HEADER >> 20} MiB") from None
            want *= 2


def split_names(name: str, count: int) -> list[str]:
    """Every split's file name from the first's (`X-00001-of-00003.gguf`)."""
    m = SPLIT_NAME.match(name)
    if count <= 1:
        return [name]
    if not m or int(m.group("no")) != 1 or int(m.group("count")) != count:
        raise GgufError(f"{name} says it is split in {count} files but is not named X-00001-of-{count:05d}.gguf")
    return [f"{m.group('stem')}-{i:05d}-of-{count:05d}.gguf" for i in range(1, count + 1)]


def read_facts(read: RangeReader, name: str) -> GgufFacts:
    """The facts of a model whose (first) file is `name`: every split's header."""
    metadata, tensors = read_header(read, name)
    names = split_names(name, int(metadata.get("split.count", 1)))
    for index, other in enumerate(names[1:], start=1):
        more, their = read_header(read, other, index)
        if int(more.get("split.no", index)) != index:
            raise GgufError(f"{other} says it is split {more.get('split.no')}, not {index}")
        tensors.extend(their)
    alignment = int(metadata.get("general.alignment", 32))
    return GgufFacts(tuple(names), planner_metadata(metadata), tuple(tensors), alignment)


def pick_files(files: Sequence[str], wanted: str) -> str:
    """The GGUF file to read for FILE_OR_QUANT among a repository's files: the file itself, or the one (or the
    first split) whose name carries the quantization ("Q4_K_M"). Raises GgufError listing what there is."""
    ggufs = sorted(f for f in files if f.endswith(".gguf"))
    if wanted in ggufs:
        return wanted
    tag = re.compile(rf"(^|[-_./]){re.escape(wanted)}([-_./]|$)", re.IGNORECASE)
    found = [f for f in ggufs if tag.search(f) and not f.rsplit("/", 1)[-1].startswith("mmproj")]
    firsts = [f for f in found if not SPLIT_NAME.match(f.rsplit("/", 1)[-1]) or "-00001-of-" in f]
    if len(firsts) == 1:
        return firsts[0]
    quants = sorted({m.group(0).strip("-_./") for f in ggufs for m in [QUANT.search(f)] if m})
    if not firsts:
        raise GgufError(f"no GGUF file matches {wanted!r}; the repository has {', '.join(quants) or 'none'}")
    raise GgufError(f"{wanted!r} matches {len(firsts)} files ({', '.join(firsts)}): give the file's name")


QUANT = re.compile(r"(?<![A-Za-z0-9])(I?Q\d[A-Z0-9_]*|F16|BF16|F32)(?![A-Za-z0-9])", re.IGNORECASE)


def hub_reader(repo: str, revision: str | None, token: str | None, endpoint: str | None = None) -> RangeReader:
    """Ranged GETs of the repository's files at `revision` through huggingface_hub's session (its headers,
    its proxies, HF_ENDPOINT), redirects followed."""
    from huggingface_hub import get_session, hf_hub_url
    from huggingface_hub.utils import build_hf_headers  # type: ignore[attr-defined]  # exported lazily

    def read(name: str, start: int, end: int) -> bytes:
        url = hf_hub_url(repo, name, revision=revision, endpoint=endpoint)
        headers = {**build_hf_headers(token=token), "Range": f"bytes={start}-{end - 1}"}
        response = get_session().get(url, headers=headers, follow_redirects=True)
        if response.status_code == 416:  # the range starts past the end
            return b""
        if response.status_code not in (200, 206):
            raise GgufError(f"{repo}/{name}: HTTP {response.status_code} for bytes {start}-{end - 1}")
        body = response.content
        if response.status_code == 200:  # a server that ignores Range sends the whole file
            body = body[start:end]
        return bytes(body)

    return read
