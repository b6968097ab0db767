"""Loading a deployed server with chats, streamed, from several workers at once: the one way this project does
it, below both `verify --load` (components/tools/verify.py) and `verify --calibrate`
(components/tools/calibrate.py), which share it from here."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# Every request's timeout, in seconds.
TIMEOUT_S = 60


@dataclass(frozen=True)
class Sample:
    """One chat request of a load: its outcome, and the times of its first and last output token."""

    ok: bool
    ms: float  # the whole request
    ttft_ms: float  # to the first output token (the whole request when the answer did not stream)
    completion_tokens: int
    prompt_tokens: int
    decode_ms: float  # first to last output token


def stream_chat(base: str, payload: dict[str, Any], key: str | None, timeout: float = TIMEOUT_S) -> Sample:
    """One chat, streamed (server-sent events) so that the first token's time is seen; an answer that does
    not stream (a server that ignores `stream`) counts as one piece."""
    body = json.dumps(
        {**payload, "stream": True, "stream_options": {"include_usage": True, "continuous_usage_stats": False}}
    ).encode()
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
    req = urllib.request.Request(base.rstrip("/") + "/chat/completions", data=body, headers=headers, method="POST")
    start = time.perf_counter()
    first = last = None
    pieces = completion = prompt = 0
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            if "text/event-stream" not in (r.headers.get("Content-Type") or ""):
                answer = json.loads(r.read() or b"{}")
                usage = answer.get("usage") or {}
                ms = (time.perf_counter() - start) * 1000
                ok = r.status == 200 and bool(answer.get("choices"))
                return Sample(
                    ok, ms, ms, int(usage.get("completion_tokens", 0)), int(usage.get("prompt_tokens", 0)), 0.0
                )
            for raw in r:
                line = raw.decode(errors="replace").strip()
                if not line.startswith("data:") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[5:])
                usage = chunk.get("usage") or {}
                completion = int(usage.get("completion_tokens") or completion)
                prompt = int(usage.get("prompt_tokens") or prompt)
                delta = ((chunk.get("choices") or [{}])[0].get("delta") or {}) if chunk.get("choices") else {}
                if delta.get("content") or delta.get("reasoning_content"):
                    now = time.perf_counter()
                    first = first if first is not None else now
                    last = now
                    pieces += 1
    except (OSError, urllib.error.URLError, ValueError):
        ms = (time.perf_counter() - start) * 1000
        return Sample(False, ms, ms, 0, 0, 0.0)
    end = time.perf_counter()
    if first is None or last is None:
        return Sample(False, (end - start) * 1000, (end - start) * 1000, 0, prompt, 0.0)
    return Sample(
        True, (end - start) * 1000, (first - start) * 1000, completion or pieces, prompt, (last - first) * 1000
    )


def run_load(
    base: str,
    payload: dict[str, Any] | Callable[[int], dict[str, Any]],
    key: str | None,
    concurrency: int,
    seconds: float | None = None,
    requests: int | None = None,
) -> tuple[list[Sample], float]:
    """`concurrency` workers send this chat back to back, until `seconds` have passed or `requests` were sent
    (each request bounded by the request timeout): the samples, and the wall time. The one way this project
    loads a deployed server: `--load` reports it, `--calibrate` fits the speed model on it."""
    deadline = time.monotonic() + seconds if seconds is not None else None
    samples: list[Sample] = []
    sent = 0
    lock = threading.Lock()

    def take() -> int | None:
        nonlocal sent
        with lock:
            if requests is not None and sent >= requests:
                return None
            if deadline is not None and time.monotonic() >= deadline:
                return None
            sent += 1
            return sent

    def worker() -> None:
        while (n := take()) is not None:
            sample = stream_chat(base, payload(n) if callable(payload) else payload, key)
            with lock:
                samples.append(sample)

    start = time.monotonic()
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=(seconds or 0) + TIMEOUT_S * (1 + (requests or 0)) + 5)
    return samples, time.monotonic() - start
