"""`python -m components.model MODEL`: read a model's config.json from the Hugging Face Hub and print
(or write into a stack file) the `architecture` block the planner reads, with a catalog-style summary.

    python -m components.model Qwen/Qwen3-30B-A3B-GPTQ-Int4 [--revision R] [--tp 2]
                               [--write STACK [--server NAME]]
    python -m components.model unsloth/Qwen3-30B-A3B-GGUF --gguf Q4_K_M [--revision COMMIT [--write STACK --server NAME]]

MODEL is the repository id; a Hub page URL (https://huggingface.co/ORG/NAME[/tree/REV]) is taken
as its id (and revision). `--tp` is checked with the plan's own tensor-parallel rules.

config.json (quantization_config included) comes through huggingface_hub's cache; HF_TOKEN is used
for gated models. Offline with nothing cached, it says so in one line and exits 1. `--write` edits
only the architecture lines of `rocm-inference:vllm` (or of `servers.NAME` in the fleet form) and
leaves every other line as it was; a model the catalog already has needs no block, so `--write`
refuses it unless `--override-catalog`. Exit codes: 0 ok, 1 cannot read the model or the stack, 2 usage.

`--gguf FILE_OR_QUANT` reads a GGUF model for llama.cpp instead: the file (or the first split of the quantization
named, e.g. Q4_K_M) among the repository's files, and only its headers, every split's, by ranged reads
(components/tools/gguf_header.py). It prints the llama.cpp plan's `gguf` block: the metadata the plan reads and every
tensor's type and shape in file order; with `--write STACK --server NAME --revision COMMIT` (40 hex digits) it
writes that block and the commit into the llama.cpp server (`engine: llamacpp`) NAME.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from components.planning.catalog import DTYPE_BYTES, Architecture, QuantizationConfig, VisionConfig, load_catalog
from components.planning.formats import foreign_format, not_served
from components.planning.gguf import GgufError, GgufFacts
from components.planning.memory import GiB, kv_bytes_per_token, weights_bytes_per_rank
from components.planning.rules import tensor_parallel_rules
from components.settings import NAMESPACE, StackConfigError, read_stack_file, suggestion
from components.settings.models import hub_page, pinned_pip_style, read_revision, revision_advice
from components.settings.stackfile import stack_path
from components.tools.gguf_header import hub_reader, pick_files, read_facts


class ModelError(Exception):
    """The model's config.json cannot be had or read; the message says why, in one line."""


class UsageError(ModelError):
    """The command line asks for something that cannot work (exit 2); the message names the argument."""


def model_id(text: str) -> tuple[str, str | None]:
    """MODEL as given -> (repository id, revision named in a Hub page URL or None). Raises UsageError."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id  # type: ignore[attr-defined]  # exported lazily

    given, revision = text.strip(), None
    pip = pinned_pip_style(given)
    if pip is not None:
        repo, at = pip
        raise UsageError(
            f"argument MODEL: {text} is a revision written pip's way (NAME@REVISION), which the Hub does not read: "
            f"give {repo} and the revision with --revision ({revision_advice(repo, at, '--revision').removeprefix('write --revision: ')})"
        )
    page = hub_page(given)
    if page is not None:
        kind = page[0].split("/")[0]
        if kind in ("datasets", "spaces", "collections", "docs", "papers"):
            raise UsageError(
                f"argument MODEL: {text} is a Hub {kind} page, not a model's: give the model's id, as ORG/NAME"
            )
        given, revision = page
    elif "://" in given:
        raise UsageError(f"argument MODEL: {text} is not a Hugging Face Hub address: give the model's id, as ORG/NAME")
    try:
        validate_repo_id(given)
    except HFValidationError:
        raise UsageError(
            f"argument MODEL: {text!r} is not a Hugging Face model id: give it as ORG/NAME "
            "(e.g. Qwen/Qwen3-30B-A3B) or as its page's URL"
        ) from None
    return given, revision


def revision_arg(text: str, model: str) -> str:
    """--revision as given -> the revision; the address of a revision's page is taken where it names MODEL."""
    try:
        return read_revision(text, model, "--revision", "MODEL")
    except ValueError as e:
        raise UsageError(f"argument --revision: {text} is {e}") from None


def positive_tp(text: str) -> int:
    """argparse type of --tp: a number of GPUs."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"is a number of GPUs, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"is a number of GPUs, 1 or more, got {value}")
    return value


def tp_problems(model: str, arch: Architecture, tp: int) -> list[str]:
    """Why vLLM would refuse this model at tensor parallel `tp` (the plan's rules), each as one line."""
    return [p.message for p in tensor_parallel_rules(arch, tp, f"{model}'s config.json")]


def allowed_tps(model: str, arch: Architecture, upto: int = 16) -> list[int]:
    return [tp for tp in range(1, upto + 1) if not tp_problems(model, arch, tp)]


def stack_target(path: Path, server: str | None) -> None:
    """Refuse, before any download, a --write that has no block to go to. Raises ModelError / UsageError."""
    if not path.exists():
        raise ModelError(f"{path.name} does not exist")
    try:
        values = read_stack_file(path).values
    except StackConfigError as exc:
        raise ModelError("\n".join(exc.lines)) from None
    servers = values.get("servers")
    if isinstance(servers, dict) and server is None:
        raise UsageError(
            f"{path.name} is a fleet: say which server's architecture with --server NAME ({', '.join(servers)})"
        )
    if server is not None and not isinstance(servers, dict):
        raise UsageError(f"{path.name} has one server ({NAMESPACE}:vllm): drop --server {server}")
    if server is not None and isinstance(servers, dict) and server not in servers:
        raise UsageError(f"argument --server: {path.name} has no server {server!r}{suggestion(server, servers)}")


def hf_hub_download(repo_id: str, filename: str, revision: str | None, token: str | None) -> str:
    """huggingface_hub's download through its cache (a seam for tests)."""
    from huggingface_hub import hf_hub_download as download
    from huggingface_hub.utils import logging as hub_logging

    hub_logging.set_verbosity_error()  # type: ignore[no-untyped-call]  # its retry chatter would bury the one-line message
    return download(repo_id=repo_id, filename=filename, revision=revision, token=token)


def list_repo_files(repo_id: str, revision: str | None, token: str | None) -> list[str]:
    """The repository's file names (a seam for tests)."""
    from huggingface_hub import HfApi

    return HfApi().list_repo_files(repo_id, revision=revision, token=token)


def fetch_config(model: str, revision: str | None = None) -> dict[str, Any]:
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RemoteEntryNotFoundError,
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
    except RemoteEntryNotFoundError:
        # No config.json: a repository of another format (GGUF has none), or no model at all.
        try:
            files = list_repo_files(model, revision, token)
        except (HfHubHTTPError, OSError):
            files = []
        kind, evidence = foreign_format(model, files=files)
        if kind:
            raise ModelError(f"{model} is {not_served(model, kind, evidence)}") from None
        raise ModelError(
            f"{model} has no config.json: it is not a Hugging Face checkpoint vLLM can load (config.json and "
            "safetensors weights)"
        ) from None
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
    stack_path: Path,
    block: dict[str, Any],
    server: str | None = None,
    revision: str | None = None,
    key: str = "architecture",
) -> None:
    """Set the architecture (or, `key` gguf, a llama.cpp server's GGUF facts) and model_revision of the server's
    block, leaving other lines alone."""
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
        raise ModelError(f"{stack_path.name} has no {where} block to write the {key} into")
    start, end, indent = bounds
    end = _remove_key(lines, start + 1, end, indent, key)
    pad = " " * indent
    new = [f"{pad}{key}:\n"]
    dumped = yaml.safe_dump(block, sort_keys=False, default_flow_style=None, width=100)
    new += [f"{pad}  {line}\n" for line in dumped.splitlines()]
    if revision is not None:
        end = _remove_key(lines, start + 1, end, indent, "model_revision")
        # quoted: a commit of digits alone (or digits and one e) would read back as a number
        new.insert(
            0, f"{pad}model_revision: {yaml.safe_dump(revision).splitlines()[0] if key == 'gguf' else revision}\n"
        )
    if end > 0 and not lines[end - 1].endswith("\n"):
        lines[end - 1] += "\n"
    lines[end:end] = new
    stack_path.write_text("".join(lines))


def repo_files(model: str, revision: str | None, token: str | None) -> list[str]:
    """The repository's file names at `revision` (a seam for tests)."""
    from huggingface_hub import HfApi

    return list(HfApi().list_repo_files(model, revision=revision, token=token))


def read_gguf(model: str, revision: str | None, wanted: str) -> tuple[str, GgufFacts]:
    """(the file read, its facts) for --gguf. Raises ModelError."""
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError

    token = os.environ.get("HF_TOKEN") or None
    try:
        name = pick_files(repo_files(model, revision, token), wanted)
        return name, read_facts(hub_reader(model, revision, token), name)
    except GgufError as exc:
        raise ModelError(f"{model}: {exc}") from None
    except GatedRepoError:
        raise ModelError(f"{model} is gated: accept its licence on huggingface.co and set HF_TOKEN") from None
    except RevisionNotFoundError:
        raise ModelError(f"{model} has no revision {revision!r}") from None
    except RepositoryNotFoundError:
        raise ModelError(f"{model} is not a model on the Hugging Face Hub (or is private: set HF_TOKEN)") from None
    except (HfHubHTTPError, OSError) as exc:
        raise ModelError(f"cannot read {model}'s GGUF headers from the Hugging Face Hub: {exc}") from None


def gguf_summary(model: str, name: str, facts: GgufFacts) -> list[str]:
    size = sum(t.nbytes for t in facts.tensors)
    heads_kv = facts.per_layer("attention.head_count_kv")
    head_k = int(facts.get("attention.key_length", 0) or 0) or int(facts.get("embedding_length")) // max(
        facts.per_layer("attention.head_count")[0], 1
    )
    kv_per_token = sum(2 * h * head_k * 2 for h in heads_kv)  # K and V at f16, every layer
    lines = [
        f"# {model}: {name}, {facts.arch}, {facts.n_layer} layers, {len(facts.files)} file(s)",
        f"#   tensors: {len(facts.tensors)}, {size / GiB:.2f} GiB",
        f"#   KV cache per token at f16: {kv_per_token / 1024:.0f} KiB (every layer; sliding layers hold at most "
        "their window)",
    ]
    if facts.get("expert_count"):
        lines.append(f"#   {facts.get('expert_count')} experts, {facts.get('expert_used_count')} per token")
    if facts.get("attention.sliding_window"):
        lines.append(f"#   sliding window: {facts.get('attention.sliding_window')} tokens")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m components.model", description=__doc__.splitlines()[0])
    parser.add_argument("model", help="Hugging Face model id, e.g. Qwen/Qwen3-30B-A3B-GPTQ-Int4 (or its page's URL)")
    parser.add_argument("--revision", help="a branch, tag or commit of the model repository")
    parser.add_argument(
        "--tp",
        type=positive_tp,
        default=1,
        help="tensor parallel size for the summary (default 1), checked as the plan does",
    )
    parser.add_argument(
        "--gguf",
        metavar="FILE_OR_QUANT",
        help="a GGUF model for llama.cpp: the file, or the quantization (e.g. Q4_K_M); reads only its headers",
    )
    parser.add_argument("--write", metavar="STACK", help="write the architecture into Pulumi.STACK.yaml")
    parser.add_argument("--server", metavar="NAME", help="with --write: the fleet form's servers.NAME")
    parser.add_argument(
        "--override-catalog",
        action="store_true",
        help="with --write: write the block even for a model the catalog has (the block then overrides it)",
    )
    args = parser.parse_args(argv)
    if args.server and not args.write:
        parser.error("--server needs --write")
    if args.override_catalog and not args.write:
        parser.error("--override-catalog goes with --write")
    if args.gguf and args.write and not re.fullmatch(r"[0-9a-f]{40}", args.revision or ""):
        # the block is what this commit holds: a llama.cpp server pins it (servers.NAME.model_revision)
        parser.error("--gguf with --write needs --revision COMMIT, the 40 hex digits the server downloads")
    try:
        model, url_revision = model_id(args.model)
        if args.revision is not None:
            args.revision = revision_arg(args.revision, model)
        if url_revision and args.revision and url_revision != args.revision:
            raise UsageError(
                f"argument --revision: {args.revision} differs from the revision {url_revision} in the URL: give one"
            )
        revision = args.revision or url_revision
        if model != args.model:
            at = f" (revision {url_revision})" if url_revision else ""
            print(f"model: argument MODEL: the URL names {model}{at}", file=sys.stderr)
        if args.gguf:
            name, facts = read_gguf(model, revision, args.gguf)
            gguf_text = [*gguf_summary(model, name, facts), "gguf:"]
            gguf_text += [
                f"  {line}"
                for line in yaml.safe_dump(
                    facts.to_block(), sort_keys=False, default_flow_style=None, width=120
                ).splitlines()
            ]
            print("\n".join(gguf_text))
            if args.write:
                target = stack_path(args.write)
                stack_target(target, args.server)
                write_architecture(target, facts.to_block(), args.server, revision, key="gguf")
                print(f"updated the gguf block in {target.name}", file=sys.stderr)
            return 0
        in_catalog = model in load_catalog().models
        path = stack_path(args.write) if args.write else None
        if path is not None:
            stack_target(path, args.server)
            if in_catalog and not args.override_catalog:
                raise UsageError(
                    f"argument MODEL: {model} is in the model catalog (components/planning/catalog.yaml) already: "
                    f"a stack that serves it needs no architecture block, nothing written to {path.name} "
                    "(--override-catalog writes one that overrides the catalog's)"
                )
        kind, evidence = foreign_format(model)
        if kind:
            raise ModelError(f"{model} is {not_served(model, kind, evidence)}")
        config = fetch_config(model, revision)
        kind, evidence = foreign_format(model, config)
        if kind:
            raise ModelError(f"{model} is {not_served(model, kind, evidence)}")
        block = architecture_block(config)
        try:
            arch = Architecture.model_validate(block)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ModelError(f"{model}'s config.json: {where}: {first['msg']}") from None
        refused = tp_problems(model, arch, args.tp)
        if refused:
            allowed = ", ".join(str(tp) for tp in allowed_tps(model, arch))
            for message in refused:
                print(f"model: argument --tp: {args.tp} {message.removesuffix(f', got {args.tp}')}", file=sys.stderr)
            print(
                f"model: argument --tp: {args.tp} is not a size {model} allows: {allowed or 'none of 1 to 16'}",
                file=sys.stderr,
            )
            return 2
        text = summary(model, arch, args.tp)
        text += ["architecture:"] + [
            f"  {line}" for line in yaml.safe_dump(block, sort_keys=False, default_flow_style=None).splitlines()
        ]
        if path is not None:
            write_architecture(path, block, args.server, revision)
            print(f"updated the architecture in {path.name}", file=sys.stderr)
        elif in_catalog:
            print(
                f"model: {model} is in the model catalog already: a stack that serves it needs no architecture "
                "block (the one below is what the Hub has, for reference)",
                file=sys.stderr,
            )
    except ModelError as exc:
        print("\n".join(f"model: {line}" for line in str(exc).splitlines()), file=sys.stderr)
        return 2 if isinstance(exc, UsageError) else 1
    print("\n".join(text))
    return 0
