"""Model repositories in a format vLLM does not load here: what such a repository is, told from what the plan and
the model tool see (the repository's name, its config.json, its file list), and the one message that says so.

vLLM serves a Hugging Face checkpoint: a config.json beside safetensors weights. A GGUF repository holds
llama.cpp's single-file models (`*.gguf`, often no config.json at all); an MLX repository holds weights quantized
for Apple silicon's MLX, whose config.json carries MLX's own top-level `quantization` ({group_size, bits}, as
mlx-lm writes it) where a transformers checkpoint has `quantization_config`, so a plan that read it as a
checkpoint would size it as unquantized. The message lives here alone: when a stack can serve GGUF with another
engine, this is where it will point there.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

# What each format is, and what to pick instead, in the words of the message.
_WHAT = {
    "GGUF": "llama.cpp's single-file format",
    "MLX": "weights quantized for Apple silicon's MLX",
}


def foreign_format(repo: str, config: Mapping[str, Any] | None = None, files: Iterable[str] = ()) -> tuple[str, str]:
    """(format, what shows it) of a repository vLLM cannot load here, or ("", "") for a checkpoint it may."""
    files = list(files)
    gguf = [f for f in files if f.lower().endswith(".gguf")]
    if gguf:
        return "GGUF", f"its files are {', '.join(sorted(gguf)[:2])}{', ...' if len(gguf) > 2 else ''}"
    org, _, name = repo.rpartition("/")
    if re.search(r"gguf", name, re.IGNORECASE):
        return "GGUF", "its name says GGUF"
    if config is not None and isinstance(config.get("quantization"), dict) and "quantization_config" not in config:
        return "MLX", "its config.json has MLX's top-level quantization block"
    if org.lower() == "mlx-community" or re.search(r"(^|[-_.])mlx([-_.]|$)", name, re.IGNORECASE):
        return "MLX", "its name says MLX" if org.lower() != "mlx-community" else "it is published by mlx-community"
    return "", ""


def not_served(repo: str, kind: str, evidence: str) -> str:
    """Why a vLLM server cannot serve this repository and what to give instead (after `is {repo!r}, `)."""
    also = (
        f"; `python -m components.model {repo} --gguf QUANT` reads it for llama.cpp, which no stack serves yet"
        if kind == "GGUF"
        else ""
    )
    return (
        f"{'an' if kind == 'MLX' else 'a'} {kind} repository ({evidence}): {_WHAT[kind]}, which vLLM does not load "
        "here; it serves a Hugging Face checkpoint (config.json and safetensors weights): give the model's "
        "checkpoint repository instead, quantized with AWQ or GPTQ for gfx906 (its publisher's, or an AWQ/GPTQ "
        f"quantizer's on the Hub){also}"
    )
