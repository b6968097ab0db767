"""`python -m components.verify STACK`: does a deployed stack answer as planned?

Reads the stack outputs (`pulumi stack output --json --show-secrets`, or `--outputs FILE`), then
checks each endpoint: /health; /v1/models lists the served model with the planned max_model_len;
one short chat completion (latency, tokens per second) and one embedding succeed; requests without
the API key are refused where a key is set. `--wait` first waits for /health with a progress line
(a 70B load takes minutes). Outputs that cannot be tried as they are (keys saved as `[secret]`
without --show-secrets, an address without http://) are refused before any request, each key named.
Exit 0 when every check passes, 1 otherwise, 2 on usage errors.
"""

from __future__ import annotations

import argparse
import json
import math
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from components.settings.stackfile import PROJECT_ROOT
from components.tools.load import TIMEOUT_S, run_load


@dataclass
class Check:
    name: str
    ok: bool
    detail: str = ""
    latency_ms: float | None = None


@dataclass(frozen=True)
class Response:
    status: int  # 0: no HTTP answer (refused, reset, timeout)
    body: Any
    ms: float
    error: str = ""


def request(method: str, url: str, payload: Any = None, key: str | None = None, timeout: float = TIMEOUT_S) -> Response:
    data = json.dumps(payload).encode() if payload is not None else None
    headers = {"Content-Type": "application/json"} if data else {}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(
            urllib.request.Request(url, data=data, headers=headers, method=method), timeout=timeout
        ) as r:
            raw = r.read()
            status = r.status
    except urllib.error.HTTPError as exc:
        raw, status = exc.read(), exc.code
    except (OSError, urllib.error.URLError) as exc:
        return Response(0, None, (time.perf_counter() - start) * 1000, str(getattr(exc, "reason", exc)))
    ms = (time.perf_counter() - start) * 1000
    try:
        body = json.loads(raw) if raw else None
    except ValueError:
        body = raw.decode(errors="replace")
    return Response(status, body, ms)


def _root(base_url: str) -> str:
    return base_url[: -len("/v1")] if base_url.rstrip("/").endswith("/v1") else base_url.rstrip("/")


def wait_ready(urls: dict[str, str], timeout_s: float, say: Callable[[str], None]) -> bool:
    """Poll each /health until it answers 200, saying how long it has been."""
    start = time.monotonic()
    pending = dict(urls)
    last = ""
    while pending:
        for name, url in list(pending.items()):
            r = request("GET", url, timeout=5)
            if r.status == 200:
                say(f"{name} ready after {time.monotonic() - start:.0f} s")
                del pending[name]
            else:
                last = f"{name}: {r.error or f'HTTP {r.status}'}"
        if not pending:
            return True
        elapsed = time.monotonic() - start
        if elapsed > timeout_s:
            say(f"gave up after {elapsed:.0f} s ({last})")
            return False
        say(f"waiting {int(elapsed) // 60}m{int(elapsed) % 60:02d}s for {', '.join(pending)} ({last})")
        time.sleep(5)
    return True


def _key_check(name: str, method: str, url: str, payload: Any, key: str | None) -> Check:
    if not key:
        return Check(f"{name} without an API key", True, "no API key set: open to anyone who reaches the port")
    r = request(method, url, payload)
    return Check(f"{name} refuses requests without the API key", r.status == 401, f"HTTP {r.status or r.error}")


def _chat(base: str, model: str, key: str | None, label: str) -> Check:
    chat = {
        "model": model,
        "messages": [{"role": "user", "content": "Reply with OK."}],
        "max_tokens": 8,
        "temperature": 0,
    }
    r = request("POST", base + "/chat/completions", chat, key)
    body = r.body if isinstance(r.body, dict) else {}
    choices = body.get("choices") or []
    tokens = (body.get("usage") or {}).get("completion_tokens", 0)
    ok = r.status == 200 and bool(choices) and "message" in choices[0]
    rate = f", {tokens / (r.ms / 1000):.1f} tokens/s" if ok and r.ms else ""
    return Check(label, ok, f"HTTP {r.status or r.error}, {tokens} tokens{rate}", r.ms)


def _embedding(base: str, model: str, key: str | None, label: str) -> tuple[Check, dict[str, Any]]:
    payload = {"model": model, "input": ["rocm-inference verify"]}
    r = request("POST", base + "/embeddings", payload, key)
    body = r.body if isinstance(r.body, dict) else {}
    data = body.get("data", [])
    vector = data[0].get("embedding") if data else None
    ok = r.status == 200 and isinstance(vector, list) and len(vector) > 0
    detail = f"{len(vector)} dimensions" if ok and vector else f"HTTP {r.status or r.error}"
    return Check(label, ok, detail, r.ms), body


def verify_vllm(name: str, server: dict[str, Any], prefix: str = "") -> list[Check]:
    """One vLLM server, directly: health, its model and context length, a chat, and its key."""
    base, model, key = server["base_url"].rstrip("/"), server["model"], server.get("api_key")
    checks = []
    r = request("GET", _root(base) + "/health")
    checks.append(Check(f"{prefix}vLLM /health", r.status == 200, f"HTTP {r.status or r.error}", r.ms))
    r = request("GET", base + "/models", key=key)
    listed = {m.get("id"): m for m in (r.body or {}).get("data", [])} if isinstance(r.body, dict) else {}
    entry = listed.get(model)
    planned = server.get("max_model_len")
    served = entry.get("max_model_len") if entry else None
    ok = r.status == 200 and entry is not None and (planned is None or served == planned)
    if entry is None:
        detail = f"HTTP {r.status or r.error}: {model} not in {sorted(listed)}"
    elif ok:
        detail = f"{model}, max_model_len {served}" + (f" (planned {planned})" if planned else "")
    else:
        # The container answers, but is not the planned one: a change the engine did not apply.
        detail = (
            f"{model}, max_model_len {served}, planned {planned}: the running container is not the planned one "
            "(stale); run pulumi up"
        )
    checks.append(Check(f"{prefix}vLLM /v1/models", ok, detail, r.ms))
    checks.append(_chat(base, model, key, f"{prefix}chat completion"))
    checks.append(_key_check(f"{prefix}vLLM /v1/models", "GET", base + "/models", None, key))
    return checks


def verify_embeddings(out: dict[str, Any]) -> list[Check]:
    base, model, key = out["embeddings_base_url"].rstrip("/"), out["embeddings_model"], out.get("embeddings_api_key")
    checks = []
    r = request("GET", base + "/health")
    checks.append(Check("embeddings /health", r.status == 200, f"HTTP {r.status or r.error}", r.ms))
    check, body = _embedding(base, model, key, "embedding")
    checks.append(check)
    answered = body.get("model")
    checks.append(
        Check(
            "embeddings model name",
            check.ok and answered in (None, model),
            f"{answered or '(not named in the answer)'}, planned {model}",
        )
    )
    checks.append(_key_check("embeddings", "POST", base + "/embeddings", {"model": model, "input": ["x"]}, key))
    return checks


def verify_gateway(out: dict[str, Any], servers: dict[str, dict[str, Any]]) -> list[Check]:
    """Through the gateway, with its key: a chat for each model name, the embeddings, and 401 without the key."""
    base, key = out["openai_base_url"].rstrip("/"), out.get("gateway_api_key")
    checks = []
    r = request("GET", _root(base) + "/health/readiness")
    checks.append(Check("gateway /health/readiness", r.status == 200, f"HTTP {r.status or r.error}", r.ms))
    for model in sorted({s["model"] for s in servers.values()}):
        checks.append(_chat(base, model, key, f"gateway: chat with {model}"))
    if "embeddings_model" in out:
        check, _ = _embedding(base, out["embeddings_model"], key, f"gateway: embedding with {out['embeddings_model']}")
        checks.append(check)
    checks.append(_key_check("gateway", "GET", base + "/models", None, key))
    return checks


def verify_chat_ui(out: dict[str, Any], servers: dict[str, dict[str, Any]]) -> list[Check]:
    """Open WebUI: /health; with the admin account from the outputs, a sign-in, the stack's models on offer,
    and one chat through the UI, which crosses its wiring to the stack's endpoint (the network, the key)."""
    base = out["chat_ui_url"].rstrip("/")
    r = request("GET", base + "/health")
    up = r.status == 200 and isinstance(r.body, dict) and r.body.get("status") is True
    checks = [Check("chat UI /health", up, f"HTTP {r.status or r.error}", r.ms)]
    email, password = out.get("chat_ui_admin_email"), out.get("chat_ui_admin_password")
    if not (up and email and password):
        return checks
    r = request("POST", base + "/api/v1/auths/signin", {"email": email, "password": password})
    token = r.body.get("token") if r.status == 200 and isinstance(r.body, dict) else None
    checks.append(
        Check(
            f"chat UI: sign in as {email}",
            bool(token),
            f"HTTP {r.status or r.error}"
            + (
                ""
                if token or r.status != 400
                else ": the password in the outputs is not the admin's (changed on the page?)"
            ),
            r.ms,
        )
    )
    if not token:
        return checks
    r = request("GET", base + "/api/models", key=token)
    offered = {m.get("id") for m in (r.body.get("data") or [])} if isinstance(r.body, dict) else set()
    wanted = {s["model"] for s in servers.values()}
    missing = sorted(wanted - offered)
    checks.append(
        Check(
            "chat UI offers the stack's models",
            r.status == 200 and not missing,
            f"HTTP {r.status or r.error}"
            + (f", missing {', '.join(missing)}" if missing else f", {len(offered)} models"),
            r.ms,
        )
    )
    for model in sorted(wanted & offered)[:1]:
        chat = {"model": model, "messages": [{"role": "user", "content": "Reply with OK."}], "stream": False}
        r = request("POST", base + "/api/chat/completions", chat, key=token)
        body = r.body if isinstance(r.body, dict) else {}
        ok = r.status == 200 and bool(body.get("choices"))
        checks.append(
            Check(f"chat UI: chat with {model} through its endpoint", ok, f"HTTP {r.status or r.error}", r.ms)
        )
    return checks


@dataclass(frozen=True)
class LoadReport:
    """A bounded smoke test of the endpoint under load: not a benchmark suite."""

    model: str
    concurrency: int
    seconds: float
    requests: int
    failed: int
    output_tokens: int
    p50_ms: float
    p95_ms: float

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def tokens_per_s(self) -> float:
        return self.output_tokens / self.seconds if self.seconds else 0.0

    def line(self) -> str:
        return (
            f"load {self.model}: {self.concurrency} concurrent chats for {self.seconds:.0f} s: {self.requests} requests "
            f"({self.failed} failed), {self.requests_per_s:.2f} requests/s, {self.tokens_per_s:.1f} output tokens/s, "
            f"latency p50 {self.p50_ms:.0f} ms, p95 {self.p95_ms:.0f} ms"
        )


def percentile(values: Sequence[float], q: float) -> float:
    """The q-quantile by nearest rank (0 for no values)."""
    ordered = sorted(values)
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def load_test(
    base: str, model: str, key: str | None, concurrency: int, seconds: float, max_tokens: int = 32
) -> LoadReport:
    """`concurrency` workers send chats back to back until `seconds` have passed; each request is bounded by
    the request timeout, so the test ends within seconds + TIMEOUT_S."""
    chat = {
        "model": model,
        "messages": [{"role": "user", "content": "Write one sentence about GPUs."}],
        "max_tokens": max_tokens,
        "temperature": 0,
    }
    samples, elapsed = run_load(base, chat, key, concurrency, seconds=seconds)
    latencies = [s.ms for s in samples if s.ok]
    return LoadReport(
        model,
        concurrency,
        elapsed,
        len(samples),
        sum(1 for s in samples if not s.ok),
        sum(s.completion_tokens for s in samples if s.ok),
        percentile(latencies, 0.5),
        percentile(latencies, 0.95),
    )


def servers_of(outputs: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each vLLM server's outputs, by name (stacks deployed before the fleet form had only the flat ones)."""
    if isinstance(outputs.get("servers"), dict):
        return dict(outputs["servers"])
    if "openai_base_url" in outputs:
        return {
            "vllm": {
                "base_url": outputs["openai_base_url"],
                "model": outputs["served_model"],
                "max_model_len": outputs.get("max_model_len"),
                "api_key": outputs.get("vllm_api_key"),
            }
        }
    return {}


class OutputsError(Exception):
    """The stack outputs cannot be read: no pulumi CLI, a missing or broken file."""


def _parse(text: str, where: str) -> dict[str, Any]:
    try:
        outputs = json.loads(text)
    except ValueError as exc:
        raise OutputsError(f"{where} is not JSON ({exc})") from None
    if not isinstance(outputs, dict):
        raise OutputsError(f"{where} is not a JSON object of stack outputs")
    return outputs


def read_outputs(path: Path) -> dict[str, Any]:
    try:
        return _parse(path.read_text(), str(path))
    except OSError as exc:
        raise OutputsError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise OutputsError(
            f"{path} is not UTF-8 text (byte {exc.start}): give the JSON of pulumi stack output"
        ) from None


def stack_outputs(stack: str) -> dict[str, Any]:
    try:
        done = subprocess.run(
            ["pulumi", "stack", "output", "--json", "--show-secrets", "--stack", stack], capture_output=True, text=True
        )
    except FileNotFoundError:
        raise OutputsError("the pulumi CLI is not installed; pass --outputs FILE") from None
    if done.returncode != 0:
        raise OutputsError(f"pulumi stack output failed: {done.stderr.strip()}")
    return _parse(done.stdout, "pulumi stack output")


# The output that names the stack the outputs are of, {"project", "stack"} (components/program.py _outputs).
STACK_OUTPUT = "stack"
MASK = "[secret]"  # what `pulumi stack output` prints for a secret without --show-secrets
# The outputs verify reads (components/program.py's outputs); the *_container ones it does not.
READ = frozenset(
    {
        "servers",
        "openai_base_url",
        "served_model",
        "max_model_len",
        "vllm_api_key",
        "embeddings_base_url",
        "embeddings_model",
        "embeddings_api_key",
        "gateway_api_key",
        "chat_ui_url",
        "chat_ui_admin_email",
        "chat_ui_admin_password",
    }
)


def _masked(value: Any, key: str) -> list[str]:
    if value == MASK:
        return [key]
    if isinstance(value, dict):
        return [m for k, v in value.items() for m in _masked(v, f"{key}.{k}" if key else str(k))]
    return []


def unusable_outputs(outputs: dict[str, Any], where: str) -> list[str]:
    """Why these outputs cannot be tried as they are, one line per key (empty when they can): keys saved
    masked (every request would carry the mask as its key), addresses that are no http(s) URL."""
    lines = [
        f"{where}: {key} is masked ({MASK}): the outputs were saved without --show-secrets, and the mask is "
        "no key; save them with `pulumi stack output --json --show-secrets > FILE`, or run verify without --outputs"
        for key in _masked({k: v for k, v in outputs.items() if k in READ}, "")
    ]
    urls = {
        "openai_base_url": outputs.get("openai_base_url"),
        "embeddings_base_url": outputs.get("embeddings_base_url"),
        "chat_ui_url": outputs.get("chat_ui_url"),
    }
    servers = outputs.get("servers")
    if isinstance(servers, dict):
        urls |= {f"servers.{n}.base_url": s.get("base_url") for n, s in servers.items() if isinstance(s, dict)}
    for key, url in urls.items():
        if url is None or url == MASK:
            continue
        if not isinstance(url, str):
            lines.append(f"{where}: {key} is {url!r}, not a URL: it should read like http://gpu-box:8000/v1")
            continue
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            fixed = "http://" + url.split("://", 1)[-1].lstrip("/")
            lines.append(
                f"{where}: {key} is {url!r}, which has no http:// or https:// scheme and host: write {fixed!r}"
            )
    if isinstance(servers, dict):
        for name, server in servers.items():
            model = server.get("model") if isinstance(server, dict) else None
            if model is not None and model != MASK and not (isinstance(model, str) and model):
                lines.append(f"{where}: servers.{name}.model is {model!r}, not a model name")
    return lines


def missing_outputs(outputs: dict[str, Any]) -> list[str]:
    """The outputs verify needs that are absent (empty when everything it checks is named)."""
    missing = []
    servers = servers_of(outputs)
    if not servers and "embeddings_base_url" not in outputs:
        return ["servers (or openai_base_url) and embeddings_base_url"]
    for name, server in servers.items():
        missing += [
            f"servers.{name}.{k}" for k in ("base_url", "model") if not isinstance(server, dict) or k not in server
        ]
    if "embeddings_base_url" in outputs and "embeddings_model" not in outputs:
        missing.append("embeddings_model")
    if "gateway_container" in outputs and "openai_base_url" not in outputs:
        missing.append("openai_base_url")
    return missing


def project_name(stack_file: Path | None) -> str | None:
    """The project's name in the Pulumi.yaml beside the stack file (the repository's when none is given)."""
    folder = stack_file.parent if stack_file is not None else PROJECT_ROOT
    try:
        doc = yaml.safe_load((folder / "Pulumi.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return None
    name = doc.get("name") if isinstance(doc, dict) else None
    return name if isinstance(name, str) else None


def identity(outputs: dict[str, Any], stack: str, project: str | None, where: str) -> tuple[str | None, Check]:
    """Whether these are the outputs of STACK (of this project): (why not, to refuse before any request, or None;
    the check to report). Outputs of a stack deployed before they named it cannot be told: said, not failed."""
    parts = stack.split("/")  # org/project/stack, as pulumi takes it
    want_stack, want_project = parts[-1], parts[-2] if len(parts) >= 2 else project
    name = f"outputs are stack {want_stack}'s"
    recorded = outputs.get(STACK_OUTPUT)
    if recorded is None:
        return None, Check(
            name,
            True,
            "not checked: these outputs do not name their stack (deployed before they did; the next pulumi up adds it)",
        )
    if not isinstance(recorded, dict):
        return f"{where}: {STACK_OUTPUT} is {recorded!r}, not the {{project, stack}} a deployment writes", Check(
            name, False
        )
    got_stack, got_project = recorded.get("stack"), recorded.get("project")
    if got_stack != want_stack or (want_project is not None and got_project != want_project):
        return (
            f"{where}: these are the outputs of stack {got_stack!r} of project {got_project!r}, not of stack "
            f"{want_stack!r}{f' of project {want_project!r}' if want_project else ''}: every check would test "
            f"another deployment; give {want_stack}'s outputs (pulumi stack output --json --show-secrets --stack "
            f"{want_stack} > FILE), or name the stack they are from",
            Check(name, False),
        )
    return None, Check(name, True, f"project {got_project}, stack {got_stack}")


def run(outputs: dict[str, Any], wait_s: float | None, say: Callable[[str], None]) -> list[Check]:
    servers = servers_of(outputs)
    has_emb, has_gateway = "embeddings_base_url" in outputs, "gateway_container" in outputs
    if wait_s is not None:
        urls = {f"{name} (vLLM)": _root(s["base_url"].rstrip("/")) + "/health" for name, s in servers.items()}
        if has_emb:
            urls["embeddings"] = outputs["embeddings_base_url"].rstrip("/") + "/health"
        if has_gateway:
            urls["gateway"] = _root(outputs["openai_base_url"].rstrip("/")) + "/health/readiness"
        if "chat_ui_url" in outputs:
            urls["chat UI"] = outputs["chat_ui_url"].rstrip("/") + "/health"
        if not wait_ready(urls, wait_s, say):
            return [Check("ready", False, f"not healthy within {wait_s:.0f} s")]
    checks: list[Check] = []
    for name, server in servers.items():
        checks += verify_vllm(name, server, "" if len(servers) == 1 and not has_gateway else f"{name}: ")
    if has_emb:
        checks += verify_embeddings(outputs)
    if has_gateway:
        checks += verify_gateway(outputs, servers)
    if "chat_ui_url" in outputs:
        checks += verify_chat_ui(outputs, servers)
    return checks


def render(stack: str, checks: Sequence[Check]) -> str:
    lines = [f"verify {stack}"]
    for c in checks:
        ms = f"{c.latency_ms:7.0f} ms" if c.latency_ms is not None else " " * 10
        lines.append(f"  {'ok  ' if c.ok else 'FAIL'}  {c.name:48} {ms}  {c.detail}")
    failed = [c for c in checks if not c.ok]
    lines.append(f"{len(checks) - len(failed)} of {len(checks)} checks passed" + (": FAILED" if failed else ""))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m components.verify", description=__doc__.splitlines()[0])
    parser.add_argument("stack", help="the stack whose outputs to read")
    parser.add_argument("--outputs", metavar="FILE", help="read the outputs from this JSON file instead of pulumi")
    parser.add_argument("--wait", nargs="?", type=float, const=1800.0, metavar="SECONDS", help="wait for /health first")
    parser.add_argument("--format", choices=["text", "json"], default="text")
    parser.add_argument(
        "--load", type=int, metavar="N", help="then N concurrent chats for --duration seconds, per model"
    )
    parser.add_argument(
        "--duration", type=float, default=30.0, metavar="SECONDS", help="how long --load runs (default 30)"
    )
    parser.add_argument(
        "--calibrate",
        action="store_true",
        help="then time each vLLM server at its own endpoint (a few minutes at most) and fit the speed model on it",
    )
    parser.add_argument("--write", action="store_true", help="with --calibrate: write the fit into the stack file")
    parser.add_argument("--file", metavar="PATH", help="the stack file (default: Pulumi.STACK.yaml of the project)")
    args = parser.parse_args(argv)
    if args.write and not args.calibrate:
        parser.error("--write goes with --calibrate")
    if args.load is not None and not 1 <= args.load <= 256:
        parser.error("--load takes 1 to 256 concurrent chats")
    if not 1 <= args.duration <= 600:
        parser.error("--duration takes 1 to 600 seconds")
    where = args.outputs or f"pulumi stack output of {args.stack}"
    try:
        outputs = read_outputs(Path(args.outputs)) if args.outputs else stack_outputs(args.stack)
    except OutputsError as exc:
        print(f"verify: {exc}", file=sys.stderr)
        return 2
    # Say what to fix before trying anything: a masked key or an address without a scheme fails every check.
    unusable = unusable_outputs(outputs, where)
    if unusable:
        print("\n".join(f"verify: {line}" for line in unusable), file=sys.stderr)
        return 2
    wrong, same = identity(outputs, args.stack, project_name(Path(args.file) if args.file else None), where)
    if wrong:
        print(f"verify: {wrong}", file=sys.stderr)
        return 2
    missing = missing_outputs(outputs)
    if missing:
        print(
            f"verify: {where}: the stack outputs lack {', '.join(missing)}: was the stack deployed with this code?",
            file=sys.stderr,
        )
        return 2
    checks = [same, *run(outputs, args.wait, lambda line: print(line, file=sys.stderr, flush=True))]
    loads = []
    if args.load is not None and all(c.ok for c in checks):
        base, key = outputs["openai_base_url"], outputs.get("gateway_api_key")
        servers = servers_of(outputs)
        if "gateway_container" not in outputs:  # straight to the one server
            key = next(iter(servers.values())).get("api_key") if servers else None
        for model in sorted({s["model"] for s in servers.values()}):
            loads.append(load_test(base, model, key, args.load, args.duration))
    loads_ok = all(r.failed == 0 and r.requests > 0 for r in loads)
    calibrated: list[str] = []
    if args.calibrate and all(c.ok for c in checks):
        done = _calibrate(args, outputs, calibrated)
        loads_ok = loads_ok and done
    if args.format == "json":
        doc = {
            "stack": args.stack,
            "passed": all(c.ok for c in checks) and loads_ok,
            "checks": [asdict(c) for c in checks],
        }
        if loads:
            doc["load"] = [
                asdict(r) | {"requests_per_s": round(r.requests_per_s, 3), "tokens_per_s": round(r.tokens_per_s, 3)}
                for r in loads
            ]
        print(json.dumps(doc, indent=2))
    else:
        print(render(args.stack, checks))
        for r in loads:
            print(r.line())
        for line in calibrated:
            print(line)
    return 0 if all(c.ok for c in checks) and loads_ok else 1


def _calibrate(args: argparse.Namespace, outputs: dict[str, Any], lines: list[str]) -> bool:
    """--calibrate (and --write): each server timed at its own endpoint, the fit printed (and written)."""
    from components.settings import StackConfigError, read_stack_file
    from components.settings.stackfile import stack_path
    from components.tools.calibrate import CalibrationFailed, calibrate_server, today, write_calibration
    from components.tools.plan import load_stack

    path = Path(args.file) if args.file else stack_path(args.stack)
    try:
        settings = load_stack(read_stack_file(path))[0].settings
    except (StackConfigError, OSError) as exc:
        lines.append(f"calibrate: {exc}")
        return False
    ok = True
    for name, server in servers_of(outputs).items():
        if name not in settings.servers:
            lines.append(f"calibrate {name}: not a server of {path.name}: skipped")
            continue
        try:
            result = calibrate_server(
                name,
                settings,
                server["base_url"],
                server.get("api_key"),
                lambda line: print(line, file=sys.stderr, flush=True),
            )
        except CalibrationFailed as exc:
            lines.append(f"calibrate {name}: {exc}")
            ok = False
            continue
        lines += result.lines()
        if args.write:
            write_calibration(path, name, settings.single, result.block(settings, today()))
            lines.append(f"  written to {path.name}: the next plan shows these bands as calibrated")
    return ok


def cli() -> None:
    """The command line."""
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    sys.exit(main())


if __name__ == "__main__":
    cli()
