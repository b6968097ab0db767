"""The chat UI for real: Open WebUI 0.12.4 (the image's release, from PyPI) started with the environment
components/planning/chat_ui.py plans for Pulumi.big-chat.yaml, used in Debian's Chromium.

Only what must differ between the image's container and a local process is changed, each in LOCAL with its
reason: the image's own ENV (which a pip install lacks), paths, ports and the addresses of the services it talks
to, here stub servers on the test's loopback addresses (tests/engine/openai_stubs.py). A network guard (an
LD_PRELOAD shim, tests/engine/netguard.c) records every connection attempt and name lookup of the UI and its
children, and of the browser, and the test fails on any destination but its own; a control run without one
offline setting shows the guard sees the probe that setting stops.

One start for the browser, one restart on the same data with a changed stack and another admin password, one
short control start. With CI or ROCM_INFERENCE_REQUIRE_ENGINE set, a missing install fails the test; elsewhere
it is skipped with the reason. `ROCM_INFERENCE_UPDATE_SCREENSHOT=1` writes the browser's last view to
docs/chat-ui.png (not on every run: it would differ each time).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit, urlunsplit

import pytest

from components.planning.catalog import load_catalog
from components.planning.chat_ui import (
    ADMIN_PASSWORD,
    ADMIN_RESET_SCRIPT,
    GATEWAY_KEY,
    SECRET_KEY,
    ChatUiPlan,
    join_secret,
    plan,
    server_key,
)
from components.settings import StackSettings
from components.tools.verify import verify_chat_ui
from tests.debian import PackageUnavailable, ensure_binary
from tests.engine.hostproc import HostProcess, VenvUnavailable, free_port
from tests.engine.open_webui import (
    BROWSER_FLOW,
    Guard,
    GuardUnavailable,
    build_guard,
    launch_ui,
    start_ui,
    ui_venv,
)
from tests.engine.openai_stubs import CHAT_ANSWER, StubServer, chat_stub, embeddings_stub, quoted_word
from tests.stacks import load, set_key, values_of

# One worker for the module (the suite runs --dist loadscope: a module is one worker's already).
pytestmark = [pytest.mark.xdist_group("chat-ui")]

REQUIRE = bool(os.environ.get("CI") or os.environ.get("ROCM_INFERENCE_REQUIRE_ENGINE"))
ROOT = Path(__file__).resolve().parent.parent
SCREENSHOT = ROOT / "docs" / "chat-ui.png"

UI_HOST, CHAT_HOST, EMBEDDINGS_HOST = "127.0.0.7", "127.0.0.8", "127.0.0.9"
SERVER = "vllm"  # big-chat's one server (the single-host form's name)
# The secret parts' values (what `pulumi config set --secret` and the generated password would hold).
SECRETS = {
    ADMIN_PASSWORD: "first-admin-Pw-31f8",
    SECRET_KEY: "session-signing-key-6c1d09",
    server_key(SERVER): "vk-big-chat-a41e",
}
SECOND_PASSWORD = "second-admin-Pw-77d2"
RENAMED_MODEL = "big-chat-llama"  # the changed stack of the restart: another served_model_name

DOCUMENT_NAME = "kestrel-point.txt"
DOCUMENT = (
    "Harbour log of the Kestrel Point lighthouse.\n"
    "The keeper's codeword for the night watch is Thistlewaite-Marmalade.\n"
    "Lamp oil is delivered on Tuesdays by the supply boat.\n"
)
QUESTION = "What is the keeper's codeword for the night watch at Kestrel Point?"
MESSAGE = "Hello from the browser test"

# Chromium looks up no outside host (its own update and safe-browsing hosts included): every name but the UI's
# address resolves to nothing (the rules apply to addresses written as numbers too).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",  # root in CI containers
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    f"--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE {UI_HOST}",
]
# The browser runs under the guard too: it may open TCP connections to the UI only, and look up nothing. These UDP
# connects send nothing (no datagram is recorded after them): a UDP connect only picks a route.
CHROMIUM_UDP_PROBES = {
    ("2001:4860:4860::8888", 443): "Chromium's IPv6 reachability probe (net/dns/host_resolver_manager.cc)",
    (UI_HOST, 443): "a UDP connect to the UI's own address that sends nothing (its purpose not identified)",
}


@dataclass(frozen=True)
class Local:
    """One variable a local process needs other than the container: its value (may name {data}, {home},
    {port}), why, and whether it is the image's ENV, which the container's own environment (the plan) goes over."""

    value: str
    why: str
    image: bool = False


# The image's Dockerfile is the 0.12.4 sdist's (`pip download --no-binary :all: --no-deps open-webui==0.12.4`).
LOCAL: dict[str, Local] = {
    # The image's ENV, which a pip install lacks; the plan's environment goes over it, as Docker's does.
    "ENV": Local("prod", "Dockerfile:77; the code's default is dev (env.py:139): /docs served (main.py:543)", True),
    "DOCKER": Local("true", "Dockerfile:232 (routers/retrieval.py:199 tells its local models so)", True),
    "PYTHONUNBUFFERED": Local("1", "Dockerfile:74", True),
    "USE_OLLAMA_DOCKER": Local("false", "Dockerfile:80, the USE_OLLAMA build arg's default (Dockerfile:5)", True),
    "USE_CUDA_DOCKER": Local("false", "Dockerfile:81, the USE_CUDA build arg's default (Dockerfile:4)", True),
    "USE_SLIM_DOCKER": Local("false", "Dockerfile:82, the USE_SLIM build arg's default (Dockerfile:6)", True),
    "USE_CUDA_DOCKER_VER": Local("cu128", "Dockerfile:83 (Dockerfile:9)", True),
    "USE_EMBEDDING_MODEL_DOCKER": Local("sentence-transformers/all-MiniLM-L6-v2", "Dockerfile:84 (:14)", True),
    "USE_RERANKING_MODEL_DOCKER": Local("", "Dockerfile:85 (:15)", True),
    "USE_AUXILIARY_EMBEDDING_MODEL_DOCKER": Local("TaylorAI/bge-micro-v2", "Dockerfile:86 (:16)", True),
    "OLLAMA_BASE_URL": Local("/ollama", "Dockerfile:89; the plan's value replaces it (the control run drops it)", True),
    "OPENAI_API_BASE_URL": Local("", "Dockerfile:90", True),
    "OPENAI_API_KEY": Local("", "Dockerfile:93", True),
    "WEBUI_SECRET_KEY": Local("", "Dockerfile:94; the plan's secret replaces it", True),
    "SCARF_NO_ANALYTICS": Local("true", "Dockerfile:95", True),
    "DO_NOT_TRACK": Local("true", "Dockerfile:96", True),
    "ANONYMIZED_TELEMETRY": Local("false", "Dockerfile:97", True),
    "WHISPER_MODEL": Local("base", "Dockerfile:101", True),
    "RAG_EMBEDDING_MODEL": Local(
        "sentence-transformers/all-MiniLM-L6-v2", "Dockerfile:105; the plan's replaces it", True
    ),
    "RAG_RERANKING_MODEL": Local("", "Dockerfile:106", True),
    "AUXILIARY_EMBEDDING_MODEL": Local("TaylorAI/bge-micro-v2", "Dockerfile:107", True),
    "TIKTOKEN_ENCODING_NAME": Local("cl100k_base", "Dockerfile:111", True),
    # Not WEBUI_BUILD_HASH (Dockerfile:231): the release's commit (.github/workflows/docker.yaml:138), only shown.
    # The image's paths, in the test's temporary directories.
    "DATA_DIR": Local("{data}", "the image's /app/backend/data (env.py:228), its volume; a temp dir here", True),
    "HOME": Local("{home}", "Dockerfile:124 HOME=/root; a temp dir here, apart from this machine's", True),
    "WHISPER_MODEL_DIR": Local("{data}/cache/whisper/models", "Dockerfile:102, under DATA_DIR", True),
    "SENTENCE_TRANSFORMERS_HOME": Local("{data}/cache/embedding/models", "Dockerfile:108, under DATA_DIR", True),
    "TIKTOKEN_CACHE_DIR": Local("{data}/cache/tiktoken", "Dockerfile:112, under DATA_DIR", True),
    "HF_HOME": Local("{data}/cache/embedding/models", "Dockerfile:115, under DATA_DIR", True),
    "PORT": Local("{port}", "Dockerfile:78 PORT=8080, read by start.sh:33; here `open-webui serve --port`", True),
    # Addresses: the container reaches the stack's services by container name on the stack's network; here the
    # stubs on loopback. Only host and port change: the plan's scheme and path stay (an /embeddings route is
    # the plan's).
    "OPENAI_API_BASE_URLS": Local("{chat}", "the vLLM server's container name and port -> the stub vLLM server"),
    "RAG_OPENAI_API_BASE_URL": Local("{embeddings}", "Infinity's container name and port -> the stub Infinity"),
}
ADDRESSES = {"OPENAI_API_BASE_URLS", "RAG_OPENAI_API_BASE_URL"}


def unavailable(reason: str) -> NoReturn:
    if REQUIRE:
        pytest.fail(f"the chat UI test needs this, and this run requires it: {reason}")
    pytest.skip(f"the chat UI test cannot run here: {reason}")


def big_chat(served_model_name: str | None = None) -> StackSettings:
    """Pulumi.big-chat.yaml with vllm_api_key set (so the UI sends a key), as validate reads it."""
    values = values_of("big-chat")
    if served_model_name is not None:
        values = set_key(values, "vllm.served_model_name", served_model_name)
    return load(values, ("vllm_api_key",), "Pulumi.big-chat.yaml").settings


def _moved(urls: str, netloc: str) -> str:
    """Each `;`-separated URL with its host and port replaced."""
    return ";".join(urlunsplit(urlsplit(url)._replace(netloc=netloc)) for url in urls.split(";"))


def render(ui_plan: ChatUiPlan, secrets: dict[str, str], where: dict[str, str]) -> dict[str, str]:
    """The UI's environment: the image's ENV, the plan's over it (with its secrets), then the local addresses."""
    env = {name: local.value.format(**where) for name, local in LOCAL.items() if local.image}
    env |= ui_plan.environment
    env |= {name: join_secret(parts, secrets) for name, parts in ui_plan.secret_environment.items()}
    for name in ADDRESSES:
        env[name] = _moved(env[name], where[LOCAL[name].value.strip("{}")])
    return env


def test_local_overrides_replace_nothing_of_the_plan_but_addresses() -> None:
    ui_plan = plan(big_chat(), load_catalog())
    replaced = {name for name, local in LOCAL.items() if not local.image}
    assert replaced == ADDRESSES
    where = {"data": "/d", "home": "/h", "port": "1", "chat": "127.0.0.8:1", "embeddings": "127.0.0.9:2"}
    env = render(ui_plan, SECRETS, where)
    for name, value in ui_plan.environment.items():
        if name in ADDRESSES:
            assert urlsplit(env[name]).path == urlsplit(value).path, name
        else:
            assert env[name] == value, f"{name}: the plan's value must reach the UI unchanged"
    assert env["OPENAI_API_KEYS"] == SECRETS[server_key(SERVER)]
    assert env["OPENAI_API_BASE_URLS"] == "http://127.0.0.8:1/v1"
    assert env["RAG_OPENAI_API_BASE_URL"] == "http://127.0.0.9:2"


# --------------------------------------------------------------------------------------------------------------
# The real UI


@dataclass
class Setup:
    venv: Path
    chromium: str
    guard: Guard
    chat: StubServer
    embeddings: StubServer
    data: Path
    work: Path

    def where(self, port: int, data: Path | None = None) -> dict[str, str]:
        return {
            "data": str(data or self.data),
            "home": str(self.work / "home"),
            "port": str(port),
            "chat": urlsplit(self.chat.url).netloc,
            "embeddings": urlsplit(self.embeddings.url).netloc,
        }

    def endpoints(self, ui_port: int) -> set[tuple[str, int]]:
        """Where the UI may connect: itself and the two stubs."""
        out = {(UI_HOST, ui_port)}
        for stub in (self.chat, self.embeddings):
            parts = urlsplit(stub.url)
            out.add((parts.hostname or "", parts.port or 0))
        return out


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    try:
        venv = ui_venv()
        chromium = ensure_binary("chromium", "chromium")
    except (VenvUnavailable, PackageUnavailable) as exc:
        unavailable(str(exc))
    work = tmp_path_factory.mktemp("chat-ui")
    try:
        guard = build_guard(work / "guard")
    except GuardUnavailable as exc:
        unavailable(str(exc))
    (work / "home").mkdir()
    models = [big_chat().servers[SERVER].name_served, RENAMED_MODEL]
    with (
        chat_stub(CHAT_HOST, free_port(CHAT_HOST), models) as chat,
        embeddings_stub(EMBEDDINGS_HOST, free_port(EMBEDDINGS_HOST)) as embeddings,
    ):
        yield Setup(venv, chromium, guard, chat, embeddings, work / "data", work)


def api(
    url: str,
    token: str | None = None,
    body: Any = None,
    data: bytes | None = None,
    content_type: str = "application/json",
    timeout: float = 30,
) -> tuple[int, Any]:
    """One request to Open WebUI's API: a JSON `body` (or raw `data`), its status and JSON answer."""
    payload = data if data is not None else None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=payload)
    request.add_header("Content-Type", content_type)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def sign_in(ui: HostProcess, email: str, password: str) -> tuple[int, Any]:
    return api(f"{ui.url}/api/v1/auths/signin", body={"email": email, "password": password})


def browse(s: Setup, ui: HostProcess, settings: StackSettings, guard: Guard) -> dict[str, Any]:
    """The browser flow (tests/engine/browser_flow.py) with the UI venv's python, under the guard; what it saw."""
    document = s.work / DOCUMENT_NAME
    document.write_text(DOCUMENT)
    assert settings.chat_ui is not None
    spec = {
        "url": ui.url,
        "chromium": s.chromium,
        "user_data_dir": str(s.work / "chromium-profile"),
        "email": settings.chat_ui.admin_email,
        "password": SECRETS[ADMIN_PASSWORD],
        "model": settings.servers[SERVER].name_served,
        "message": MESSAGE,
        "document": str(document),
        "question": QUESTION,
        "answer_marker": CHAT_ANSWER,
        "rag_marker": "The document says",
        "screenshot": str(s.work / "chat-ui.png"),
        "args": CHROMIUM_ARGS,
    }
    spec_file = s.work / "browser.json"
    spec_file.write_text(json.dumps(spec))
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(s.work / "home"), "LANG": "C.UTF-8"}
    env |= guard.environment()
    done = subprocess.run(
        [str(s.venv / "bin" / "python"), str(BROWSER_FLOW), str(spec_file)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, f"the browser flow crashed:\n{done.stderr[-3000:]}"
    seen: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return seen


def recorded(guard: Guard) -> dict[str, int]:
    """The guard's log without pids: each distinct event, how many times."""
    out: dict[str, int] = {}
    for event in guard.events():
        line = event.line.split(" ", 1)[-1]
        out[line] = out.get(line, 0) + 1
    return out


def guard_clean(s: Setup, ui_port: int, what: str) -> None:
    outside = s.guard.outside(s.endpoints(ui_port))
    assert not outside, f"{what}: the UI reached for destinations other than the test's own:\n" + "\n".join(outside)
    print(f"{what}, the guard recorded:", recorded(s.guard), file=sys.stderr)


def test_chat_ui_in_a_browser_then_a_restart_with_a_changed_stack(setup: Setup) -> None:
    s = setup
    first = big_chat()
    assert first.chat_ui is not None
    email = first.chat_ui.admin_email
    model = first.servers[SERVER].name_served
    port = free_port(UI_HOST)
    timings: dict[str, float] = {}
    started = time.monotonic()
    env = render(plan(first, load_catalog()), SECRETS, s.where(port))
    s.guard.log.unlink(missing_ok=True)
    ui = start_ui(env, UI_HOST, port, s.work / "run-1", s.guard)
    timings["first start"] = time.monotonic() - started
    try:
        mark = time.monotonic()
        browser_guard = Guard(s.guard.library, s.work / "browser-netguard.log")
        seen = browse(s, ui, first, browser_guard)
        timings["browser"] = time.monotonic() - mark
        assert "error" not in seen, (
            f"the browser flow failed at {seen.get('steps', ['?'])[-1]}: {seen}\n{ui.log_tail()}"
        )
        # 1. Sign-in only: no signup form, no link to one.
        assert seen["signup_buttons"] == 0 and seen["signup_text"] == 0 and seen["name_inputs"] == 0, seen
        # 2. The stack's model, and the stub's answer on the page; the stub got the server's key.
        assert seen["offered_models"] == [model], seen
        assert CHAT_ANSWER in seen["chat_answer"], seen
        chats = [r for r in s.chat.seen() if r.path == "/v1/chat/completions"]
        assert chats, "the stub vLLM server got no chat request"
        assert {r.authorization for r in chats} == {f"Bearer {SECRETS[server_key(SERVER)]}"}
        assert {r.body["model"] for r in chats} == {model}
        assert not [r for r in chats if r.body.get("tools")], "chats carry tools, which the stack's vLLM refuses"
        assert any(MESSAGE in json.dumps(r.body["messages"]) for r in chats if r.body.get("stream")), (
            "the browser's message never reached the server as a streamed chat"
        )
        # 3. The document went through the embeddings server with nomic's task prefixes, its chunk came back
        # with the question, and the answer quotes it and cites the file.
        inputs = [text for r in s.embeddings.seen() if r.path == "/embeddings" for text in r.body["input"]]
        assert all(r.path == "/embeddings" for r in s.embeddings.seen()), [r.path for r in s.embeddings.seen()]
        word = quoted_word(DOCUMENT)
        assert any(t.startswith("search_document: ") and word in t for t in inputs), inputs
        assert any(t.startswith("search_query: ") and "codeword" in t for t in inputs), inputs
        assert any(word in json.dumps(r.body["messages"]) and "<source" in json.dumps(r.body) for r in chats)
        assert word in seen["rag_answer"], seen
        assert any(DOCUMENT_NAME in name for name in seen["sources"]), seen
        if os.environ.get("ROCM_INFERENCE_UPDATE_SCREENSHOT"):
            SCREENSHOT.write_bytes((s.work / "chat-ui.png").read_bytes())
        # The browser looked up nothing and connected to the UI only.
        outside = browser_guard.outside({(UI_HOST, port)}, udp_probes=CHROMIUM_UDP_PROBES)
        assert not outside, "the browser reached for other destinations than the UI:\n" + "\n".join(outside)
        print("the browser, the guard recorded:", recorded(browser_guard), file=sys.stderr)
        shown = ("whats_new_closed", "offered_models", "chat_answer", "rag_answer", "sources", "seconds")
        print("the browser saw:", {k: seen.get(k) for k in shown}, file=sys.stderr)
        # What the restart must find again.
        status, body = sign_in(ui, email, SECRETS[ADMIN_PASSWORD])
        assert status == 200, body
        token = body["token"]
        chat_ids = {c["id"] for c in api(f"{ui.url}/api/v1/chats/", token)[1]}
        file_names = {f["filename"] for f in api(f"{ui.url}/api/v1/files/", token)[1]["items"]}
        assert len(chat_ids) == 1 and file_names == {DOCUMENT_NAME}, (chat_ids, file_names)
    finally:
        ui.stop(grace=15)
    guard_clean(s, port, "the browser run (the UI)")

    # The restart: the same data, a changed stack, another admin password in the environment.
    second = big_chat(RENAMED_MODEL)
    port = free_port(UI_HOST)
    secrets = SECRETS | {ADMIN_PASSWORD: SECOND_PASSWORD}
    env = render(plan(second, load_catalog()), secrets, s.where(port))
    s.guard.log.unlink(missing_ok=True)
    mark = time.monotonic()
    ui = start_ui(env, UI_HOST, port, s.work / "run-2", s.guard)
    timings["restart"] = time.monotonic() - mark
    try:
        status, body = sign_in(ui, email, SECOND_PASSWORD)
        assert status in (400, 401, 403), f"the new password signs in ({status}): the admin was created again"
        # The session key is the stack's, not the container's: the first run's session is still good.
        status, _ = api(f"{ui.url}/api/v1/auths/", token)
        assert status == 200, f"the first run's session was signed out by the restart ({status})"
        status, body = sign_in(ui, email, SECRETS[ADMIN_PASSWORD])
        assert status == 200, f"the first admin's password no longer signs in ({status}): {body}"
        # Issue 26 defect 4: after a destroy and up the stack's password is another (a generated one does not
        # survive a destroy) and the kept volume refuses it: the admin reset, a one-shot run of the image on the
        # volume, sets it. Here its script runs as the container would run it, on the one data directory that
        # stands for the volume, beside the live UI, with the password in its environment (the run's stdin).
        reset = subprocess.run(
            [str(s.venv / "bin" / "python"), "-c", ADMIN_RESET_SCRIPT],
            env={
                "PATH": os.environ.get("PATH", ""),
                "DATA_DIR": str(s.data),
                "WEBUI_ADMIN_EMAIL": email,
                "WEBUI_ADMIN_PASSWORD": SECOND_PASSWORD,
            },
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert reset.returncode == 0, reset.stderr
        status, body = sign_in(ui, email, SECOND_PASSWORD)
        assert status == 200, f"the reset password does not sign in ({status}): {body}"
        token = body["token"]
        assert sign_in(ui, email, SECRETS[ADMIN_PASSWORD])[0] in (400, 401, 403), "the old password still signs in"
        # an admin whose email the stack does not name: the reset fails and says so
        wrong = subprocess.run(
            [str(s.venv / "bin" / "python"), "-c", ADMIN_RESET_SCRIPT],
            env={
                "PATH": os.environ.get("PATH", ""),
                "DATA_DIR": str(s.data),
                "WEBUI_ADMIN_EMAIL": "nobody@x",
                "WEBUI_ADMIN_PASSWORD": "x",
            },
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert wrong.returncode == 1 and "no account nobody@x in" in wrong.stderr, wrong.stderr
        _, models = api(f"{ui.url}/api/models", token)
        assert [m["id"] for m in models["data"]] == [RENAMED_MODEL], "the changed stack's model list did not reach it"
        _, chats_after = api(f"{ui.url}/api/v1/chats/", token)
        assert {c["id"] for c in chats_after} == chat_ids
        _, files_after = api(f"{ui.url}/api/v1/files/", token)
        assert {f["filename"] for f in files_after["items"]} == file_names
        _, users = api(f"{ui.url}/api/v1/users/", token)
        assert users["total"] == 1 and [u["email"] for u in users["users"]] == [email], users
        # `verify`'s own checks of the chat UI, against the real one, as the stack's outputs give it
        outputs = {
            "chat_ui_url": ui.url,
            "chat_ui_admin_email": email,
            "chat_ui_admin_password": SECOND_PASSWORD,
        }
        checks = verify_chat_ui(outputs, {SERVER: {"model": RENAMED_MODEL}})
        assert [c.name for c in checks] == [
            "chat UI /health",
            f"chat UI: sign in as {email}",
            "chat UI offers the stack's models",
            f"chat UI: chat with {RENAMED_MODEL} through its endpoint",
        ]
        assert [c for c in checks if not c.ok] == []
    finally:
        ui.stop(grace=15)
    guard_clean(s, port, "the restart")
    timings["total"] = time.monotonic() - started
    print("chat UI timings:", {k: round(v, 1) for k, v in timings.items()}, file=sys.stderr)


def test_control_the_guard_sees_the_ollama_probe_without_its_offline_setting(setup: Setup) -> None:
    """The plan's OLLAMA_BASE_URL is what keeps the UI from probing for an Ollama at import (config.py L296-299):
    without it the guard must record that probe. Dropped from the plan, the image's /ollama shows through, which
    ENV=prod turns into host.docker.internal:11434 (config.py L259-264). Stopped as soon as the probe is seen."""
    s = setup
    port = free_port(UI_HOST)
    ui_plan = plan(big_chat(), load_catalog())
    without = replace(ui_plan, environment={k: v for k, v in ui_plan.environment.items() if k != "OLLAMA_BASE_URL"})
    env = render(without, SECRETS, s.where(port, s.work / "control-data"))
    assert env["OLLAMA_BASE_URL"] == LOCAL["OLLAMA_BASE_URL"].value
    s.guard.log.unlink(missing_ok=True)
    started = time.monotonic()
    ui = launch_ui(env, UI_HOST, port, s.work / "control", s.guard)
    try:
        while not s.guard.outside(s.endpoints(port)):
            assert not ui.exited(), f"the UI exited before the probe:\n{ui.log_tail()}"
            assert time.monotonic() < started + 120, "the guard saw no probe within 120 s"
            time.sleep(0.2)
        time.sleep(0.5)  # the probe's other port, tried at the same time
    finally:
        ui.stop()
    outside = s.guard.outside(s.endpoints(port))
    print(f"control run ({time.monotonic() - started:.1f} s), the guard recorded:", outside, file=sys.stderr)
    assert any(" lookup getaddrinfo host.docker.internal 11434" in line for line in outside), outside


# --------------------------------------------------------------------------------------------------------------
# The fleet's wiring: through the real LiteLLM gateway


GATEWAY_HOST = "127.0.0.10"
FLEET_SECRETS = {
    ADMIN_PASSWORD: "fleet-admin-Pw-5b2e",
    SECRET_KEY: "fleet-session-key-90ac11",
    GATEWAY_KEY: "sk-fleet-ui-3d7f",
}
BACKEND_KEY = "vk-fleet-backend-81c0"


def fleet() -> StackSettings:
    return load(values_of("fleet"), ("gateway_api_key",), "Pulumi.fleet.yaml").settings


def upload(url: str, token: str, name: str, content: str) -> tuple[int, Any]:
    """POST a file as Open WebUI's page does (multipart/form-data, field `file`), processed at once."""
    boundary = "rocm-inference-test-boundary"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
        f"Content-Type: text/plain\r\n\r\n{content}\r\n--{boundary}--\r\n"
    ).encode()
    return api(
        f"{url}/api/v1/files/?process=true",
        token,
        data=body,
        content_type=f"multipart/form-data; boundary={boundary}",
        timeout=60,
    )


def test_the_fleet_ui_chats_and_files_documents_through_the_real_gateway(setup: Setup) -> None:
    """Pulumi.fleet.yaml's chat UI, whose plan sends chat and embeddings through the gateway with its key, in front
    of the real LiteLLM proxy with the plan's own config (its backends moved to the stub servers): the page's models
    are the fleet's chat models, a document is embedded through the gateway by the stub Infinity (nomic's prefixes),
    and a question about it reaches a stub vLLM server with the document's chunk, through the gateway."""
    from components.planning.gateway import backend_key_env, backends, litellm_config
    from tests.engine.litellm import ProxyUnavailable, proxy_venv, start_proxy

    s = setup
    settings = fleet()
    ui_plan = plan(settings, load_catalog())
    assert [c.base_url for c in ui_plan.connections] == ["http://litellm-gateway:4000/v1"]
    try:
        proxy_venv()
    except ProxyUnavailable as exc:
        unavailable(str(exc))
    models = [m for c in ui_plan.connections for m in c.models]
    with chat_stub(CHAT_HOST, free_port(CHAT_HOST), models) as chat:
        config = json.loads(json.dumps(litellm_config(settings)))
        for entry in config["model_list"]:
            mode = (entry.get("model_info") or {}).get("mode")
            entry["litellm_params"]["api_base"] = s.embeddings.url if mode == "embedding" else chat.url + "/v1"
        keys = {backend_key_env(b.service): BACKEND_KEY for b in backends(settings)}
        proxy_port = free_port(GATEWAY_HOST)
        proxy = start_proxy(
            config,
            {"LITELLM_MASTER_KEY": FLEET_SECRETS[GATEWAY_KEY], **keys},
            GATEWAY_HOST,
            proxy_port,
            s.work / "gateway",
            90,
        )
        try:
            port = free_port(UI_HOST)
            where = s.where(port, s.work / "fleet-data") | {
                "chat": f"{GATEWAY_HOST}:{proxy_port}",
                "embeddings": f"{GATEWAY_HOST}:{proxy_port}",
            }
            env = render(ui_plan, FLEET_SECRETS, where)
            assert env["RAG_OPENAI_API_BASE_URL"] == f"http://{GATEWAY_HOST}:{proxy_port}/v1"
            s.guard.log.unlink(missing_ok=True)
            ui = start_ui(env, UI_HOST, port, s.work / "run-fleet", s.guard)
            try:
                assert settings.chat_ui is not None
                status, body = sign_in(ui, settings.chat_ui.admin_email, FLEET_SECRETS[ADMIN_PASSWORD])
                assert status == 200, body
                token = body["token"]
                _, offered = api(f"{ui.url}/api/models", token)
                assert [m["id"] for m in offered["data"]] == models == ["llama-3.3-70b", "qwen2.5-7b"]
                before = len(s.embeddings.seen())
                status, file = upload(ui.url, token, DOCUMENT_NAME, DOCUMENT)
                assert status == 200 and file.get("id"), file
                deadline = time.monotonic() + 60  # processed in the background (routers/files.py L629-680)
                while (state := api(f"{ui.url}/api/v1/files/{file['id']}/process/status", token)[1])["status"] not in (
                    "completed",
                    "failed",
                ) and time.monotonic() < deadline:
                    time.sleep(0.5)
                assert state["status"] == "completed", f"{state}\n{ui.log_tail()}\n{proxy.log_tail()}"
                embedded = [t for r in s.embeddings.seen()[before:] for t in r.body["input"]]
                word = quoted_word(DOCUMENT)
                assert any(t.startswith("search_document: ") and word in t for t in embedded), embedded
                question = {
                    "model": "llama-3.3-70b",
                    "messages": [{"role": "user", "content": QUESTION}],
                    "files": [{"type": "file", "id": file["id"]}],
                    "stream": False,
                }
                status, answer = api(f"{ui.url}/api/chat/completions", token, question)
                assert status == 200, answer
                assert word in json.dumps(answer), answer
                asked = [r for r in chat.seen() if r.path == "/v1/chat/completions"]
                assert any(word in json.dumps(r.body["messages"]) for r in asked), "the chunk never reached vLLM"
                # The gateway took the UI's key (LiteLLM refuses any other) and used each backend's own.
                assert {r.authorization for r in asked} == {f"Bearer {BACKEND_KEY}"}
                queries = [t for r in s.embeddings.seen()[before:] for t in r.body["input"]]
                assert any(t.startswith("search_query: ") for t in queries), queries
            finally:
                ui.stop(grace=15)
        finally:
            proxy.stop()
    outside = s.guard.outside({(UI_HOST, port), (GATEWAY_HOST, proxy_port)})
    assert not outside, "the fleet UI reached for other destinations than the gateway:\n" + "\n".join(outside)
