"""Stub servers for the chat UI test, run as threads of the test process: a vLLM server (OpenAI chat API) and an
Infinity v2 embeddings server. Each records every request it gets, with its Authorization header.

The chat stub refuses what the stacks' vLLM servers refuse: a request with tools and tool_choice "auto" (or
none), since they run without a tool-call parser.
The chat stub answers Open WebUI's JSON tasks (query generation, title, tags, follow-ups) with the JSON the task
asks for, and anything else with a fixed answer that quotes the longest word of the first document the request
carries (Open WebUI puts retrieved chunks into `<source id="1" name="...">chunk</source>`), so a page showing
that word shows a document that went through retrieval. The embeddings stub returns a hashed bag of words:
deterministic, and a question sharing words with a chunk is near it.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

CHAT_ANSWER = "Stub vLLM answer."
# A retrieved chunk: `<source id="1" name="file.txt" ...>chunk</source>` (utils/middleware.py get_source_context);
# the RAG template's own text mentions `<source id="1">`, which has no name and is not one.
SOURCE = re.compile(r'<source id="\d+" name="[^"]*"[^>]*>((?:(?!<source).)*?)</source>', re.DOTALL)
ATTACHED = re.compile(r"<attached_files>.*?</attached_files>", re.DOTALL)
WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9]")
DIMENSIONS = 64


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    authorization: str | None
    body: Any  # the parsed JSON body, None for none


@dataclass
class StubServer:
    """A ThreadingHTTPServer on its own thread; `requests` in the order they came."""

    server: ThreadingHTTPServer
    thread: threading.Thread
    requests: list[Request] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def seen(self) -> list[Request]:
        with self.lock:
            return list(self.requests)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

    def __enter__(self) -> StubServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


Responder = Callable[[Request], tuple[int, dict[str, str], bytes | list[bytes]]]


def _serve(host: str, port: int, respond: Responder) -> StubServer:
    stub: StubServer

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _handle(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = raw.decode(errors="replace")
            request = Request(method, self.path, self.headers.get("Authorization"), body)
            with stub.lock:
                stub.requests.append(request)
            status, headers, payload = respond(request)
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            if isinstance(payload, bytes):
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
                return
            # A stream: chunked transfer, one chunk per event.
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for chunk in payload:
                self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")

        def do_GET(self) -> None:
            self._handle("GET")

        def do_POST(self) -> None:
            self._handle("POST")

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the recorded requests are the log

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name=f"stub-{host}:{port}", daemon=True)
    stub = StubServer(server, thread)
    thread.start()
    return stub


def _json(status: int, body: Any) -> tuple[int, dict[str, str], bytes]:
    return status, {"Content-Type": "application/json"}, json.dumps(body).encode()


def _text(content: Any) -> str:
    """A message's text: a string, or the text parts of a list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def quoted_word(chunk: str) -> str:
    """The word of a retrieved chunk the chat stub quotes: its longest (the first of equals)."""
    words = WORD.findall(chunk)
    return max(words, key=len) if words else ""


def last_question(task: str) -> str:
    """The last user turn of a task prompt's chat history (`USER: ...` lines), without its attachments' list."""
    history = task.rsplit("<chat_history>", 1)[-1].split("</chat_history>", 1)[0]
    turn = history.rsplit("USER:", 1)[-1] if "USER:" in history else ""
    return ATTACHED.sub("", turn).strip()


def chat_reply(messages: list[dict[str, Any]]) -> str:
    """What the chat stub answers to these messages."""
    last = _text(messages[-1].get("content")) if messages else ""
    if last.startswith("### Task:"):
        # Open WebUI's JSON tasks (config.py, DEFAULT_*_GENERATION_PROMPT_TEMPLATE), by the output each asks for.
        if '"queries": [' in last:
            return json.dumps({"queries": [last_question(last)]})
        if '{ "title": ' in last:
            return json.dumps({"title": "Stub chat"})
        if '{ "tags": [' in last:
            return json.dumps({"tags": ["General"]})
        if '{ "follow_ups": [' in last:
            return json.dumps({"follow_ups": []})
    for message in messages:
        found = SOURCE.search(_text(message.get("content")))
        if found:
            return f'{CHAT_ANSWER} The document says "{quoted_word(found.group(1))}" [1].'
    return CHAT_ANSWER


def chat_stub(host: str, port: int, models: list[str]) -> StubServer:
    """vLLM's OpenAI API: GET /v1/models, POST /v1/chat/completions (streamed or not)."""

    def respond(request: Request) -> tuple[int, dict[str, str], bytes | list[bytes]]:
        if request.method == "GET" and request.path == "/v1/models":
            data = [{"id": m, "object": "model", "owned_by": "vllm", "created": 0} for m in models]
            return _json(200, {"object": "list", "data": data})
        if request.method != "POST" or request.path != "/v1/chat/completions" or not isinstance(request.body, dict):
            return _json(404, {"error": {"message": f"no route {request.method} {request.path}"}})
        model = request.body.get("model", "")
        if model not in models:
            return _json(404, {"error": {"message": f"The model `{model}` does not exist."}})
        if request.body.get("tools") and request.body.get("tool_choice", "auto") == "auto":
            # The stacks' vLLM servers run without --enable-auto-tool-choice and --tool-call-parser (components/
            # vllm.py): vLLM makes tool_choice "auto" when a request has tools and none (protocol.py
            # check_tool_usage), then refuses it (serving_chat.py).
            message = '"auto" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set'
            return _json(400, {"object": "error", "message": message, "type": "BadRequestError", "code": 400})
        answer = chat_reply(request.body.get("messages") or [])
        created = int(time.time())
        if not request.body.get("stream"):
            return _json(
                200,
                {
                    "id": "chatcmpl-stub",
                    "object": "chat.completion",
                    "created": created,
                    "model": model,
                    "choices": [
                        {"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}
                    ],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                },
            )

        def event(delta: dict[str, Any], finish: str | None) -> bytes:
            chunk = {
                "id": "chatcmpl-stub",
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
            return f"data: {json.dumps(chunk)}\n\n".encode()

        pieces = [answer[i : i + 16] for i in range(0, len(answer), 16)]
        events = [event({"role": "assistant", "content": ""}, None)]
        events += [event({"content": piece}, None) for piece in pieces]
        events += [event({}, "stop"), b"data: [DONE]\n\n"]
        return 200, {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}, events

    return _serve(host, port, respond)


def embedding(text: str) -> list[float]:
    """A hashed bag of words, unit length (one constant dimension keeps an empty text from being all zeros)."""
    vector = [0.0] * DIMENSIONS
    vector[0] = 0.01
    for word in re.findall(r"[a-z0-9]+", text.lower()):
        vector[1 + int(hashlib.sha256(word.encode()).hexdigest(), 16) % (DIMENSIONS - 1)] += 1.0
    norm = math.sqrt(sum(v * v for v in vector))
    return [v / norm for v in vector]


def embeddings_stub(host: str, port: int) -> StubServer:
    """Infinity v2: POST /embeddings (its url_prefix is ""), body {"input": [...], "model": ...}, the OpenAI
    response shape; one model loaded, whatever the request names."""

    def respond(request: Request) -> tuple[int, dict[str, str], bytes | list[bytes]]:
        if request.method != "POST" or request.path != "/embeddings" or not isinstance(request.body, dict):
            return _json(404, {"detail": "Not Found"})
        texts = request.body.get("input")
        texts = [texts] if isinstance(texts, str) else texts
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            return _json(422, {"detail": "input must be a string or a list of strings"})
        data = [{"object": "embedding", "embedding": embedding(t), "index": i} for i, t in enumerate(texts)]
        tokens = sum(len(t.split()) for t in texts)
        return _json(
            200,
            {
                "object": "list",
                "data": data,
                "model": request.body.get("model", ""),
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
                "id": "infinity-stub",
                "created": int(time.time()),
            },
        )

    return _serve(host, port, respond)
