"""`python -m components.model MODEL`: read a model's config.json from the Hugging Face Hub and print
(or write into a stack file) the `architecture` block the planner reads, with a catalog-style summary.

    python -m components.model Qwen/Qwen3-30B-A3B-GPTQ-Int4 [--revision R] [--tp 2]
                               [--write STACK [--server NAME]]

config.json (quantization_config included) comes through huggingface_hub's cache; HF_TOKEN is used
for gated models. Offline with nothing cached, it says so in one line and exits 1. `--write` edits
only the architecture lines of `rocm-inference:vllm` (or of `servers.NAME` in the fleet form) and
leaves every other line as it was. Exit codes: 0 ok, 1 cannot read the model or the stack, 2 usage.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from components.planning.catalog import Architecture, QuantizationConfig, VisionConfig
from components.planning.memory import DTYPE_BYTES, GiB, kv_bytes_per_token, weights_bytes_per_rank
from components.settings import NAMESPACE
from components.settings.stackfile import stack_path


class ModelError(Exception):
    """The model's config.json cannot be had or read; the message says why, in one line."""


def hf_hub_download(repo_id: str, filename: str, revision: str | None, token: str | None) -> str:
    """huggingface_hub's download through its cache (a seam for tests)."""
    from huggingface_hub import hf_hub_download as download
    from huggingface_hub.utils import logging as hub_logging

    hub_logging.set_verbosity_error()  # type: ignore[no-untyped-call]  # its retry chatter would bury the one-line message
    return download(repo_id=repo_id, filename=filename, revision=revision, token=token)


def fetch_config(model: str, revision: str | None = None) -> dict[str, Any]:
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    token = os.environ.get("HF_TOKEN") or None
    try:
        path = hf_hub_download(model, "config.json", revision, token)
    except GatedRepoError:
        raise ModelError(f"{model} is gated: accept its licence on huggingface.co and set HF_TOKEN") from None
    except RevisionNotFoundError:
        raise ModelError(f"{model} has no revision {revision!r}") from None
    except RepositoryNotFoundError:
        raise ModelError(f"{model} is not a model on the Hugging Face Hub (or is private: set HF_TOKEN)") from None
    except LocalEntryNotFoundError:
        raise ModelError(
            f"cannot reach the Hugging Face Hub and {model}'s config.json is not in the local cache: "
            "connect, or give the config.json with rocm-inference:vllm.architecture_file"
        ) from None
    except (HfHubHTTPError, OSError) as exc:
        raise ModelError(f"cannot read {model}'s config.json from the Hugging Face Hub: {exc}") from None
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ModelError(f"{model}'s config.json cannot be read: {exc}") from None
    if not isinstance(data, dict):
        raise ModelError(f"{model}'s config.json is not a JSON object")
    return data


def _names(model: type[Any]) -> set[str]:
    names = set()
    for name, info in model.model_fields.items():
        names.add(name)
        alias = info.validation_alias
        if alias is not None and hasattr(alias, "choices"):
            names.update(str(c) for c in alias.choices)
    return names


def architecture_block(config: dict[str, Any]) -> dict[str, Any]:
    """The keys of config.json the planner reads, in config.json's own structure."""
    keys = _names(Architecture) | {"text_config"}
    out: dict[str, Any] = {}
    for key, value in config.items():
        if key not in keys:
            continue
        if key == "text_config" and isinstance(value, dict):
            value = {k: v for k, v in value.items() if k in _names(Architecture)}
        elif key == "vision_config" and isinstance(value, dict):
            value = {k: v for k, v in value.items() if k in _names(VisionConfig)}
        elif key == "quantization_config" and isinstance(value, dict):
            value = {k: v for k, v in value.items() if k in _names(QuantizationConfig) | {"config_groups"}}
        out[key] = value
    return out


def summary(model: str, arch: Architecture, tp: int) -> list[str]:
    dtype = 2  # float16 on gfx906
    params = weights_bytes_per_rank(arch.model_copy(update={"quantization_config": None}), 1, 1)
    q = arch.quantization_config
    quant = f"{q.quant_method} {q.bits}-bit, group {q.group_size}" if q else "unquantized (float16)"
    lines = [
        f"# {model}: {arch.architecture_class}, {arch.model_type or 'decoder'}, {arch.num_hidden_layers} layers",
        f"#   parameters ~{params / 1e9:.1f}B ({quant})",
        f"#   weights per GPU at tensor parallel {tp}: {weights_bytes_per_rank(arch, tp, dtype) / GiB:.2f} GiB",
        f"#   KV cache per token per GPU at tensor parallel {tp}: "
        f"{kv_bytes_per_token(arch, tp, DTYPE_BYTES['float16']) / 1024:.0f} KiB (every layer; sliding layers hold "
        "at most their window)",
    ]
    if arch.is_moe:
        lines.append(
            f"#   {arch.num_experts} experts of {arch.expert_intermediate_size}, {arch.num_experts_per_tok} per token"
        )
    if arch.vision_config is not None:
        lines.append(
            f"#   vision encoder: {arch.vision_config.num_hidden_layers} layers, hidden {arch.vision_config.hidden_size}"
        )
    return lines


def _block_bounds(lines: list[str], header: str) -> tuple[int, int, int] | None:
    """(start, end, child indent) of the mapping under `header` (a full line without indentation)."""
    for i, line in enumerate(lines):
        if line.strip() == header and not line.lstrip().startswith("#"):
            indent = len(line) - len(line.lstrip())
            end = i + 1
            while end < len(lines) and (not lines[end].strip() or len(lines[end]) - len(lines[end].lstrip()) > indent):
                end += 1
            while end > i + 1 and not lines[end - 1].strip():
                end -= 1
            return i, end, indent + 2
    return None


def _remove_key(lines: list[str], start: int, end: int, indent: int, key: str) -> int:
    """Drop `key:` and its nested lines from lines[start:end]; return the new end."""
    i = start
    while i < end:
        line = lines[i]
        if len(line) - len(line.lstrip()) == indent and line.strip().startswith(f"{key}:"):
            j = i + 1
            while j < end and (not lines[j].strip() or len(lines[j]) - len(lines[j].lstrip()) > indent):
                j += 1
            del lines[i:j]
            end -= j - i
            continue
        i += 1
    return end


def write_architecture(
    stack_path: Path, block: dict[str, Any], server: str | None = None, revision: str | None = None
) -> None:
    """Set the architecture (and model_revision) of the vLLM server's block, leaving other lines alone."""
    lines = stack_path.read_text().splitlines(keepends=True)
    if server is None:
        bounds = _block_bounds(lines, f"{NAMESPACE}:vllm:")
        where = f"{NAMESPACE}:vllm"
    else:
        outer = _block_bounds(lines, f"{NAMESPACE}:servers:")
        bounds = None
        if outer is not None:
            sub = _block_bounds(lines[outer[0] + 1 : outer[1]], f"{server}:")
            if sub is not None:
                bounds = (sub[0] + outer[0] + 1, sub[1] + outer[0] + 1, sub[2])
        where = f"{NAMESPACE}:servers.{server}"
    if bounds is None:
        raise ModelError(f"{stack_path.name} has no {where} block to write the architecture into")
    start, end, indent = bounds
    end = _remove_key(lines, start + 1, end, indent, "architecture")
    pad = " " * indent
    new = [f"{pad}architecture:\n"]
    dumped = yaml.safe_dump(block, sort_keys=False, default_flow_style=None, width=100)
    new += [f"{pad}  {line}\n" for line in dumped.splitlines()]
    if revision is not None:
        end = _remove_key(lines, start + 1, end, indent, "model_revision")
        new.insert(0, f"{pad}model_revision: {revision}\n")
    if end > 0 and not lines[end - 1].endswith("\n"):
        lines[end - 1] += "\n"
    lines[end:end] = new
    stack_path.write_text("".join(lines))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m components.model", description=__doc__.splitlines()[0])
    parser.add_argument("model", help="Hugging Face model id, e.g. Qwen/Qwen3-30B-A3B-GPTQ-Int4")
    parser.add_argument("--revision", help="a branch, tag or commit of the model repository")
    parser.add_argument("--tp", type=int, default=1, help="tensor parallel size for the summary (default 1)")
    parser.add_argument("--write", metavar="STACK", help="write the architecture into Pulumi.STACK.yaml")
    parser.add_argument("--server", metavar="NAME", help="with --write: the fleet form's servers.NAME")
    args = parser.parse_args(argv)
    if args.server and not args.write:
        parser.error("--server needs --write")
    try:
        config = fetch_config(args.model, args.revision)
        block = architecture_block(config)
        try:
            arch = Architecture.model_validate(block)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ModelError(f"{args.model}'s config.json: {where}: {first['msg']}") from None
        text = summary(args.model, arch, args.tp)
        text += ["architecture:"] + [
            f"  {line}" for line in yaml.safe_dump(block, sort_keys=False, default_flow_style=None).splitlines()
        ]
        if args.write:
            path = stack_path(args.write)
            if not path.exists():
                raise ModelError(f"{path.name} does not exist")
            write_architecture(path, block, args.server, args.revision)
            print(f"updated the architecture in {path.name}", file=sys.stderr)
    except ModelError as exc:
        print(f"model: {exc}", file=sys.stderr)
        return 1
    print("\n".join(text))
    return 0
