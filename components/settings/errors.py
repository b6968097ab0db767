"""Errors about a stack file: each names the file and the full key, with what was found and what is allowed."""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, get_args, get_origin

from pydantic import BaseModel
from pydantic_core import PydanticCustomError

from components.planning.secrets import credential_in_value

NAMESPACE = "rocm-inference"
# In a message: the full key the problem is about, as the file writes it (a validator does not know it).
THIS_KEY = "{this key}"


class StackConfigError(Exception):
    """A stack file that cannot be deployed. Each line names the file and the full key."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


def invalid(text: str) -> PydanticCustomError:
    """A validation error whose text is the whole message after the key (see _message)."""
    return PydanticCustomError("rocm", "{text}", {"text": text})


def shown(value: Any) -> str:
    """A value as a message shows it; never one that looks like a secret (components/planning/secrets.py)."""
    if isinstance(value, str):
        text = repr(value)
    else:
        try:
            text = json.dumps(value)
        except TypeError:
            text = repr(value)
    found = credential_in_value(value if isinstance(value, str) else text)
    return f"a value not shown here, as it looks like a secret ({found})" if found else text


# Internal fields that the stack file writes under another key (StackSettings.llamacpp_servers is `servers`).
WRITTEN_AS = {"llamacpp_servers": "servers"}


def pydantic_key(loc: Iterable[Any]) -> str:
    text = ""
    for part in loc:
        part = WRITTEN_AS.get(part, part) if not text else part
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return f"{NAMESPACE}:{text}"


def _model_at(root: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The model class under `root` that holds the last element of loc (to list the keys allowed there)."""
    model: Any = root
    keyed = False  # the part after a mapping field is one of its keys (a host or server name)
    for part in loc[:-1]:
        if isinstance(part, int) or keyed:
            keyed = False
            continue
        info = model.model_fields.get(part)
        if info is None:
            return None
        keyed = get_origin(info.annotation) is dict
        model = _inner_model(info.annotation)
        if model is None:
            return None
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def _inner_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _inner_model(arg)
        if found is not None:
            return found
    return None


def suggestion(name: str, allowed: Iterable[str]) -> str:
    """` (did you mean 'x'?); allowed: a, b, c` for a name that is not one of `allowed`."""
    allowed = sorted(allowed)
    # `mi50` is the family of `mi50-16gb` and `mi50-32gb`, not a typo of `mi60`
    family = [a for a in allowed if a.lower() == name.lower()] or [
        a for a in allowed if a.lower().startswith(name.lower() + "-")
    ]
    close = family or difflib.get_close_matches(name, allowed, n=1, cutoff=0.6)
    hint = f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""
    return f"{hint}; allowed: {', '.join(allowed)}"


# Keys named the way other LLM servers, APIs and tools name them, by this project's key they mean: llama.cpp
# (`--ctx-size`, n_ctx, `--parallel`, n_batch), Ollama (num_ctx), Text Generation Inference (`--model-id`,
# `--num-shard`, `--max-total-tokens`, `--max-batch-prefill-tokens`), SGLang (`--context-length`, `--tp-size`,
# `--mem-fraction-static`, `--max-running-requests`), the OpenAI API (max_tokens, which a request sets),
# Transformers (torch_dtype, model_max_length, max_position_embeddings) and Compose (env, shm).
_CONVENTIONS: dict[str, tuple[str, ...]] = {
    "max_model_len": (
        "context_length", "context_len", "context_size", "context_window", "ctx_len", "ctx_size", "n_ctx",
        "num_ctx", "max_ctx", "max_context", "max_context_length", "max_context_len", "max_seq_len",
        "max_seq_length", "max_sequence_length", "seq_len", "max_position_embeddings", "model_max_length",
        "max_total_tokens", "max_input_length", "max_input_tokens", "max_length", "max_tokens",
    ),
    "tensor_parallel_size": ("tp", "tp_size", "tensor_parallel", "tensor_parallel_degree", "num_shard", "tensor_parallel_gpus"),
    "gpu_memory_utilization": (
        "gpu_memory_fraction", "gpu_mem_fraction", "mem_fraction_static", "mem_fraction", "gpu_mem_util",
        "gpu_memory_util", "gpu_util", "gpu_utilization", "memory_utilization", "vram_fraction",
    ),
    "max_num_seqs": (
        "max_batch_size", "max_concurrent_requests", "max_running_requests", "parallel", "n_parallel",
        "num_parallel", "max_num_sequences", "max_seqs", "concurrency",
    ),
    "max_num_batched_tokens": (
        "max_batch_tokens", "max_batch_total_tokens", "max_batch_prefill_tokens", "n_batch", "n_ubatch",
        "ubatch_size", "chunked_prefill_size", "max_prefill_tokens",
    ),
    "model": ("model_id", "model_name", "model_path", "model_name_or_path", "repo_id", "repo", "hf_model", "hf_repo", "model_repo"),
    "model_revision": ("revision", "hf_revision", "model_version", "model_commit", "commit", "code_revision"),
    "served_model_name": ("alias", "model_alias", "served_name", "served_model", "public_name"),
    "dtype": ("torch_dtype", "precision", "data_type"),
    "gpus": ("devices", "device_ids", "gpu_ids", "gpu_indices", "cuda_visible_devices", "hip_visible_devices"),
    "environment": ("env", "envs", "env_vars", "environment_variables", "variables"),
    "image": ("docker_image", "container_image", "image_name"),
    "shm_size": ("shm", "shared_memory", "shm_size_gb"),
}  # fmt: skip
_ALIASES = {alias: ours for ours, aliases in _CONVENTIONS.items() for alias in aliases}
# Secrets written as a key of a section where this project reads them from a key of their own (set with
# `pulumi config set --secret`): by section ("" for the top), the names, and the project's key.
_SECRETS_ELSEWHERE: dict[str, tuple[tuple[tuple[str, ...], str], ...]] = {
    "": (
        (("api_key", "vllm_key", "server_api_key", "openai_api_key"), "vllm_api_key"),
        (("huggingface_token", "hugging_face_hub_token", "hf_api_key", "hf_hub_token", "hf_key"), "hf_token"),
        (("master_key", "litellm_master_key", "litellm_api_key"), "gateway_api_key"),
        (("infinity_api_key", "embedding_api_key"), "embeddings_api_key"),
        (("grafana_password", "admin_password", "gf_security_admin_password"), "grafana_admin_password"),
        (("webui_admin_password", "open_webui_admin_password", "chat_admin_password"), "chat_ui_admin_password"),
        (("ssh_key", "private_key", "identity_file", "ssh_identity"), "ssh_private_key"),
    ),
    "servers": (
        (("hf_token", "huggingface_token", "hugging_face_hub_token", "hf_api_key", "token"), "hf_token"),
        (("vllm_api_key", "key", "master_key"), "vllm_api_key"),
    ),
    "embeddings": (
        (("api_key", "key", "embeddings_api_key", "infinity_api_key"), "embeddings_api_key"),
        (("hf_token", "huggingface_token", "token"), "hf_token"),
    ),
    "gateway": ((("api_key", "key", "master_key", "litellm_master_key", "gateway_api_key"), "gateway_api_key"),),
    "monitoring": (
        (("admin_password", "password", "grafana_password", "grafana_admin_password"), "grafana_admin_password"),
    ),
    "chat_ui": (
        (("admin_password", "password", "chat_ui_admin_password", "webui_admin_password"), "chat_ui_admin_password"),
    ),
    "hosts": (
        (
            ("ssh_key", "private_key", "ssh_private_key", "identity_file", "key_file", "password", "ssh_password"),
            "ssh_private_key",
        ),
    ),
}


def _plain_name(name: str) -> str:
    """`--max-model-len`, `Max-Model-Len` and `max_model_len` alike."""
    return name.lstrip("-").replace("-", "_").lower()


def secret_elsewhere(name: str, section: str) -> str | None:
    """The project's own secret key for a secret written under `section` as `name`, or None."""
    plain = _plain_name(name)
    for names, key in _SECRETS_ELSEWHERE.get(section, ()):
        if plain in names:
            return key
    return None


def unknown_key_message(name: str, allowed: Iterable[str], section: str = "") -> str:
    """`section` is the top-level key the name is under (`servers`, `embeddings`...; "" for the top)."""
    allowed = sorted(allowed)
    secret = secret_elsewhere(name, section)
    if secret is not None and secret not in allowed:
        login = (
            " (log in with a key, never a password)"
            if _plain_name(name).endswith("password") and section == "hosts"
            else ""
        )
        return (
            f"is not a known key: this project reads that secret from {NAMESPACE}:{secret}, a key of its own{login}, "
            f"set with `pulumi config set --secret {NAMESPACE}:{secret} ...`; remove it from here, where it is in "
            "plain text (and replace the secret if the file was shared or committed)"
        )
    ours = _ALIASES.get(_plain_name(name))
    if ours is None and _plain_name(name) in allowed and _plain_name(name) != name:
        ours = _plain_name(name)
    if ours is not None and ours in allowed:
        return (
            f"is not a known key (did you mean {ours!r}? this project's name for {name}); allowed: {', '.join(allowed)}"
        )
    return "is not a known key" + suggestion(name, allowed)


_TYPE_WORDS = {
    "int": "an integer",
    "float": "a number",
    "string": "a string",
    "bool": "true or false",
    "list": "a list",
    "tuple": "a list",
    "dict": "a mapping",
    "model": "a mapping",
    "model_attributes": "a mapping",
    "frozen_set": "a list",
}


_TEMPLATES = {
    "greater_than_equal": "must be >= {ge}",
    "greater_than": "must be > {gt}",
    "less_than_equal": "must be <= {le}",
    "less_than": "must be < {lt}",
    "literal_error": "must be one of {expected}",
    "too_short": "must have at least {min_length} item(s)",
    "string_too_short": "must not be empty",
    "string_pattern_mismatch": "must match {pattern}",
}


def message(err: Mapping[str, Any], root: type[BaseModel]) -> str:
    """The words for one of pydantic's errors in validating `root` (the stack's model: the models import this
    module, so it is given, not imported)."""
    kind = err["type"]
    ctx = err.get("ctx") or {}
    got = shown(err.get("input"))
    if kind == "rocm":
        return str(ctx["text"])
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        model = _model_at(root, tuple(err["loc"]))
        allowed = model.model_fields.keys() if model else ()
        internal = {"secrets", "single", *WRITTEN_AS}
        section = WRITTEN_AS.get(str(err["loc"][0]), str(err["loc"][0])) if len(err["loc"]) > 1 else ""
        return unknown_key_message(str(err["loc"][-1]), [a for a in allowed if a not in internal], section)
    for prefix, words in _TYPE_WORDS.items():
        if kind in (f"{prefix}_type", f"{prefix}_parsing", f"{prefix}_from_float"):
            return f"must be {words}, got {got}"
    if kind in _TEMPLATES:
        return f"{_TEMPLATES[kind].format(**ctx)}, got {got}"
    return f"is invalid: {err['msg']}, got {got}"


@dataclass(frozen=True)
class Problem:
    """One finding about a stack file: the key (without namespace) and what is wrong with it."""

    key: str
    message: str
    # False for a key outside this project's namespace (a misspelled `rocm-inferance:vllm`)
    namespaced: bool = True

    def line(self, source: str) -> str:
        key = f"{NAMESPACE + ':' if self.namespaced else ''}{self.key}"
        return f"{source}: {key} {self.message.replace(THIS_KEY, key)}"
