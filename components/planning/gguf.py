"""A GGUF model's facts, as the llama.cpp memory plan reads them: the metadata it needs and every tensor's name,
type, shape and place in its file. components/tools/gguf_header.py reads them from the files' headers; the stack
keeps them as a compact block (`to_block` / `from_block`), so the plan needs no network.

Type sizes are the `gguf` package's (GGML_QUANT_SIZES: elements per block, bytes per block), the same table as
ggml's type traits. A tensor's bytes are ggml_row_size(type, ne0) times its other dimensions (ggml/src/ggml.c,
ggml_row_size and ggml_nbytes). Tensor data in a GGUF file follow each other, each offset rounded up to the file's
alignment (general.alignment, 32 when absent: gguf-py/gguf/constants.py GGUF_DEFAULT_ALIGNMENT), so the block keeps
the order and shapes and derives the offsets; an offset that does not follow that rule is kept as written.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

DEFAULT_ALIGNMENT = 32

# The metadata the plan reads, by their name after the architecture's prefix ("qwen3moe.block_count"), and a few
# general ones. Only these go into the block; the tokenizer's arrays and the chat template stay out.
ARCH_KEYS = (
    "block_count",
    "context_length",
    "embedding_length",
    "feed_forward_length",
    "expert_feed_forward_length",
    "expert_count",
    "expert_used_count",
    "vocab_size",
    "attention.head_count",
    "attention.head_count_kv",
    "attention.key_length",
    "attention.value_length",
    "attention.sliding_window",
    "attention.sliding_window_pattern",
    "ssm.conv_kernel",
    "ssm.inner_size",
    "ssm.state_size",
    "ssm.group_count",
    "full_attention_interval",
    "attention.recurrent_layers",
)
GENERAL_KEYS = ("general.architecture", "general.name", "general.file_type", "general.alignment", "split.count")

BLOCK_TENSOR = re.compile(r"^blk\.(\d+)\.(.+)$")


class GgufError(Exception):
    """A GGUF file or block that cannot be read; the message says which and why, in one line."""


@functools.cache
def type_traits(type_name: str) -> tuple[int, int]:
    """(elements per block, bytes per block) of a ggml type by its name ("Q4_K", "F16")."""
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    try:
        return GGML_QUANT_SIZES[GGMLQuantizationType[type_name]]
    except KeyError:
        raise GgufError(f"unknown ggml type {type_name!r}") from None


def type_name(type_id: int) -> str:
    from gguf import GGMLQuantizationType

    try:
        return GGMLQuantizationType(type_id).name
    except ValueError:
        raise GgufError(f"unknown ggml type id {type_id}") from None


def row_bytes(type_name: str, n: int) -> int:
    """ggml_row_size: the bytes of n elements of a type (n a multiple of its block)."""
    block, size = type_traits(type_name)
    return size * n // block


def pad(n: int, to: int) -> int:
    return (n + to - 1) // to * to


@dataclass(frozen=True)
class Tensor:
    name: str
    type: str  # ggml type name, e.g. "Q4_K"
    shape: tuple[int, ...]  # ne0 first, as GGUF lists them
    file: int = 0  # which split holds it
    offset: int = 0  # from the start of its file's data section

    @property
    def nbytes(self) -> int:
        return row_bytes(self.type, self.shape[0]) * math.prod(self.shape[1:])

    @property
    def layer(self) -> int | None:
        m = BLOCK_TENSOR.match(self.name)
        return int(m.group(1)) if m else None


@dataclass(frozen=True)
class GgufFacts:
    files: tuple[str, ...]
    metadata: Mapping[str, Any]
    tensors: tuple[Tensor, ...]
    alignment: int = DEFAULT_ALIGNMENT
    by_name: Mapping[str, Tensor] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_name", {t.name: t for t in self.tensors})

    @property
    def arch(self) -> str:
        return str(self.metadata["general.architecture"])

    def get(self, key: str, default: Any = None) -> Any:
        """An architecture key by its name after the prefix ("block_count")."""
        return self.metadata.get(f"{self.arch}.{key}", default)

    @property
    def n_layer(self) -> int:
        return int(self.get("block_count"))

    def per_layer(self, key: str, default: int = 0) -> list[int]:
        """A key that is one number or one per layer (attention.head_count_kv in OpenELM, Llama-Nemotron)."""
        value = self.get(key, default)
        if isinstance(value, list):
            return [int(v) for v in value]
        return [int(value)] * self.n_layer

    def to_block(self) -> dict[str, Any]:
        """The compact block: metadata, and per file the tensors in file order, runs of identical layers as one
        entry {"blk": [first, last], "tensors": [[suffix, type, shape], ...]}."""
        files: list[dict[str, Any]] = []
        for index, name in enumerate(self.files):
            entries: list[Any] = []
            packed = 0
            for t in (t for t in self.tensors if t.file == index):
                entry: list[Any] = [t.name, t.type, list(t.shape)]
                if t.offset != packed:
                    entry.append(t.offset)
                packed = pad(t.offset + t.nbytes, self.alignment)
                m = BLOCK_TENSOR.match(t.name)
                if not m or len(entry) > 3:
                    entries.append(entry)
                    continue
                layer, item = int(m.group(1)), [m.group(2), t.type, list(t.shape)]
                last = entries[-1] if entries else None
                if isinstance(last, dict) and last["open"] == layer:  # the layer's next tensor
                    last["tensors"].append(item)
                else:
                    entries.append({"blk": [layer, layer], "tensors": [item], "open": layer})
            files.append({"name": name, "tensors": _merge_layers(entries)})
        return {"alignment": self.alignment, "metadata": dict(self.metadata), "files": files}

    @classmethod
    def from_block(cls, block: Mapping[str, Any], where: str = "gguf") -> GgufFacts:
        """The facts back from `to_block`'s form. Raises GgufError naming `where` and what is wrong."""
        try:
            alignment = int(block.get("alignment", DEFAULT_ALIGNMENT))
            metadata = dict(block["metadata"])
            names: list[str] = []
            tensors: list[Tensor] = []
            for index, f in enumerate(block["files"]):
                names.append(str(f["name"]))
                packed = 0

                def add(name: str, typ: str, shape: Sequence[int], offset: int | None, file: int = index) -> None:
                    nonlocal packed
                    t = Tensor(name, str(typ), tuple(int(d) for d in shape), file, packed if offset is None else offset)
                    packed = pad(t.offset + t.nbytes, alignment)
                    tensors.append(t)

                for entry in f["tensors"]:
                    if isinstance(entry, Mapping):
                        first, last = (int(x) for x in entry["blk"])
                        for layer in range(first, last + 1):
                            for suffix, typ, shape in entry["tensors"]:
                                add(f"blk.{layer}.{suffix}", typ, shape, None)
                    else:
                        add(entry[0], entry[1], entry[2], int(entry[3]) if len(entry) > 3 else None)
            facts = cls(tuple(names), metadata, tuple(tensors), alignment)
            facts.n_layer  # noqa: B018  # the block names its architecture and layer count
        except GgufError as exc:
            raise GgufError(f"{where}: {exc}") from None
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise GgufError(f"{where}: not a GGUF facts block ({type(exc).__name__}: {exc})") from None
        return facts


def _merge_layers(entries: list[Any]) -> list[Any]:
    """Consecutive layers with the same tensors (suffix, type, shape, in order) as one entry."""
    out: list[Any] = []
    for entry in entries:
        if isinstance(entry, dict):
            entry = {"blk": entry["blk"], "tensors": entry["tensors"]}
            last = out[-1] if out else None
            if isinstance(last, dict) and last["blk"][1] + 1 == entry["blk"][0] and last["tensors"] == entry["tensors"]:
                last["blk"][1] = entry["blk"][1]
                continue
        out.append(entry)
    return out


def planner_metadata(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """The keys of a header's metadata that the plan reads."""
    arch = metadata.get("general.architecture")
    keys = set(GENERAL_KEYS) | {f"{arch}.{k}" for k in ARCH_KEYS}
    return {k: v for k, v in metadata.items() if k in keys}
