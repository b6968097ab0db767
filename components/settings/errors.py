"""Errors about a stack file: each names the file and the full key, with what was found and what is allowed."""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, get_args, get_origin

from pydantic import BaseModel
from pydantic_core import PydanticCustomError

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


def _show(value: Any) -> str:
    if isinstance(value, str):
        return repr(value)
    try:
        return json.dumps(value)
    except TypeError:
        return repr(value)


def pydantic_key(loc: Iterable[Any]) -> str:
    text = ""
    for part in loc:
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


def unknown_key_message(name: str, allowed: Iterable[str]) -> str:
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
    got = _show(err.get("input"))
    if kind == "rocm":
        return str(ctx["text"])
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        model = _model_at(root, tuple(err["loc"]))
        allowed = model.model_fields.keys() if model else ()
        internal = {"secrets", "single"}
        return unknown_key_message(str(err["loc"][-1]), [a for a in allowed if a not in internal])
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
