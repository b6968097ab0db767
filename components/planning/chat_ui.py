"""What Open WebUI, the stack's chat and document (RAG) page, is told: its environment, made from the stack.

Pure, free of Pulumi: the component (components/chat_ui.py) turns the secret parts into Outputs, and the
browser test (tests/test_chat_ui_browser.py) starts a real Open WebUI with this same environment, its
secrets filled in with the test's values. Every name and default below was read in open-webui 0.12.4
(the PyPI wheel, open_webui/config.py and env.py; the Docker image is built from the same tree).

- Chat goes to the stack's own endpoint: the gateway where the stack has one, otherwise each vLLM
  server. A service on the UI's own host is reached by container name on the stack's Docker network of
  that host (servers publish on the host's bind, often loopback); one elsewhere by its host's address and
  published port, as the gateway reaches its backends. `OPENAI_API_CONFIGS` names the models of each
  connection, so the page lists the stack's chat models and nothing else (not the embedding model the
  gateway also serves; routers/openai.py L605-633: with `model_ids` it does not even ask /models).
- RAG embeds with the stack's embeddings server through Open WebUI's `openai` engine (it loads no
  local model: routers/retrieval.py), at `{base}/embeddings`: Infinity's own route, or the gateway's.
- Offline: nothing leaves the host (OFFLINE in components/planning/open_webui.py, each with its reason).
- Accounts: signup off, the first admin from the stack; `ENABLE_PERSISTENT_CONFIG=false`, so that the
  environment is read at every start and a stack change reaches a running UI (config.py L3352: by default
  the environment seeds the database once and later changes are ignored).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from components.planning.catalog import Catalog, load_catalog
from components.planning.engines import EMBEDDINGS_ENGINE, engine, reach, serves_tools
from components.planning.gateway import GATEWAY_PORT
from components.planning.open_webui import OFFLINE
from components.settings import NAMESPACE, Problem, StackSettings

# The image's port (Dockerfile L213: EXPOSE 8080; start.sh's PORT default) and data directory (env.py L228), where its SQLite
# database, uploaded files and vector store live.
CHAT_UI_PORT = 8080
DATA_DIR = "/app/backend/data"
# Health: GET /health answers {"status": true} once the app serves (main.py L3075). The image's own
# HEALTHCHECK pipes curl into jq (Dockerfile L215); the container's check is the project's usual python3 one
# (components/planning/service.py http_health_test): the image is python:3.12-slim-trixie (Dockerfile L59), and so the
# engine tests' stub images run it as written.
HEALTH_PATH = "/health"

# The pieces of secret values, by name: the component maps each to its Output, the test to its value.
ADMIN_PASSWORD = "admin_password"
# Open WebUI creates its admin from WEBUI_ADMIN_PASSWORD only while it has no user (open-webui 0.12.4
# main.py L400-404, utils/auth.py L631-662), and offers no command to reset a password: the data volume keeps
# the first one. So after the UI is up, a one-shot run of its own image on its volume sets the admin's hash
# in the `auth` table (models/auths.py L27-37), as its own password change does (L398-418 writes
# `password`): bcrypt, its default (env.py L823), of at most the 72 bytes it checks (utils/auth.py L49,
# L213-219). The password comes on the run's stdin (an env file), never on a command line. Without the
# admin's row (the admin's email changed on the page) it fails and says so.
ADMIN_RESET_SCRIPT = (
    "import os,sqlite3,sys,bcrypt;"
    "d=os.environ['DATA_DIR'];e=os.environ['WEBUI_ADMIN_EMAIL'].lower();"
    "h=bcrypt.hashpw(os.environ['WEBUI_ADMIN_PASSWORD'].encode()[:72],bcrypt.gensalt()).decode();"
    "c=sqlite3.connect(d+'/webui.db',timeout=60);"
    "n=c.execute('update auth set password=? where lower(email)=?',(h,e)).rowcount;"
    "c.commit();"
    "sys.exit(0 if n==1 else 'no account '+e+' in '+d+'/webui.db: set chat_ui.admin_email to the admin account email')"
)
SECRET_KEY = "webui_secret_key"
GATEWAY_KEY = "gateway_api_key"
EMBEDDINGS_KEY = "embeddings"


def server_key(name: str) -> str:
    """The secret part that stands for vLLM server `name`'s key."""
    return f"server:{name}"


# Embedding models trained with task prefixes, which Infinity does not add: (query prefix, document prefix).
# Open WebUI concatenates them as given (config.py L1034-1036), so each keeps its trailing space.
TASK_PREFIXES: dict[str, tuple[str, str]] = {
    # huggingface.co/nomic-ai/nomic-embed-text-v1.5 model card, "Task instruction prefixes"
    "nomic-ai/nomic-embed-text-v1.5": ("search_query: ", "search_document: "),
    "nomic-ai/nomic-embed-text-v1": ("search_query: ", "search_document: "),
    # huggingface.co/intfloat/e5-* model cards: "query: " and "passage: "
    "intfloat/e5-large-v2": ("query: ", "passage: "),
    "intfloat/e5-base-v2": ("query: ", "passage: "),
    "intfloat/e5-small-v2": ("query: ", "passage: "),
    "intfloat/multilingual-e5-large": ("query: ", "passage: "),
    "intfloat/multilingual-e5-base": ("query: ", "passage: "),
    "intfloat/multilingual-e5-small": ("query: ", "passage: "),
}


@dataclass(frozen=True)
class Connection:
    """One OpenAI endpoint the UI chats through."""

    base_url: str
    key: str | None  # the secret part of its key, None when it takes none
    models: tuple[str, ...]
    what: str  # "the gateway", "vLLM server chat-a"


@dataclass(frozen=True)
class ChatUiPlan:
    """The UI's wiring and environment. `secret_environment` maps a variable to the secret parts its value is
    made of, joined by `;` (a part that is None stands for an empty entry: a server without a key)."""

    connections: tuple[Connection, ...]
    embeddings_url: str
    embeddings_key: str | None
    embeddings_model: str
    environment: dict[str, str] = field(default_factory=dict)
    secret_environment: dict[str, tuple[str | None, ...]] = field(default_factory=dict)
    same_host: frozenset[str] = frozenset()  # services reached over the stack's network on the UI's host


def _gateway_url(s: StackSettings, here: str | None) -> str:
    assert s.gateway is not None
    g = s.gateway
    if g.host == here:
        return f"http://{g.container_name}:{GATEWAY_PORT}/v1"
    return f"http://{s.hosts[g.host or ''].address}:{g.port}/v1"


def connections(s: StackSettings) -> tuple[Connection, ...]:
    """Where the UI chats: the gateway, or each server (one connection per served model name: replicas of one
    model behind no gateway are one choice, the first of them)."""
    assert s.chat_ui is not None
    here = s.chat_ui.host
    if s.gateway is not None:
        models = tuple(dict.fromkeys(srv.name_served for srv in s.every_server.values()))
        return (Connection(_gateway_url(s, here), GATEWAY_KEY, models, "the gateway"),)
    out: list[Connection] = []
    seen: set[str] = set()
    for name, srv in s.every_server.items():
        if srv.name_served in seen:
            continue
        seen.add(srv.name_served)
        e = engine(srv.engine)
        url = reach(e, srv.container_name or name, srv.port, s.hosts[srv.host or ""].address, srv.host == here)
        keyed = s.has_secret(f"servers.{name}.api_key") or s.has_secret("vllm_api_key")
        out.append(Connection(url, server_key(name) if keyed else None, (srv.name_served,), f"{e.label} server {name}"))
    return tuple(out)


def function_calling(s: StackSettings, catalog: Catalog) -> str:
    """Open WebUI's function-calling mode for the stack's chat models: "native" where every server behind the
    page has a tool-call parser (its engine's native_tools: vLLM then answers tool_choice "auto"), else "legacy".

    Open WebUI 0.12.4 takes per-model parameters only from models saved in its database (main.py L1208-1212:
    the environment's DEFAULT_MODEL_PARAMS under each model's own), so the environment sets one mode for all:
    one server without a parser keeps every model on the legacy mode, which works with any server."""
    native = all(serves_tools(srv, catalog) for srv in s.every_server.values())
    return "native" if s.every_server and native else "legacy"


def plan(s: StackSettings, catalog: Catalog) -> ChatUiPlan:
    """The UI's environment for this stack (the stack has a chat_ui section and embeddings: validate checks)."""
    assert s.chat_ui is not None and s.embeddings is not None
    ui, e = s.chat_ui, s.embeddings
    here = ui.host
    conns = connections(s)
    same = {name for name, srv in s.every_server.items() if srv.host == here and s.gateway is None}
    if s.gateway is not None:
        # LiteLLM serves the embedding model under its Hub id, at {base}/embeddings (planning/gateway.py).
        emb_url, emb_key = _gateway_url(s, here), GATEWAY_KEY
        same |= {"gateway"} if s.gateway.host == here else set()
    elif e.host == here:
        # Infinity v2 serves /embeddings at the root (url_prefix ""), one model whatever the request names.
        emb_url, emb_key = reach(engine(EMBEDDINGS_ENGINE), e.container_name, e.port, "", True), None
        same.add("embeddings")
    else:
        emb_url, emb_key = f"http://{s.hosts[e.host or ''].address}:{e.port}", None
    if s.gateway is None and s.has_secret("embeddings_api_key"):
        emb_key = EMBEDDINGS_KEY
    query_prefix, document_prefix = TASK_PREFIXES.get(e.model, ("", ""))
    if ui.query_prefix is not None:
        query_prefix = ui.query_prefix
    if ui.document_prefix is not None:
        document_prefix = ui.document_prefix
    env: dict[str, str] = {name: value for name, value, _ in OFFLINE}
    env |= {
        # Read at every start: a changed stack reaches the running UI (config.py L3352).
        "ENABLE_PERSISTENT_CONFIG": "false",
        "WEBUI_AUTH": "true" if ui.login else "false",
        "ENABLE_SIGNUP": "false",
        "DEFAULT_USER_ROLE": "pending",
        "ENABLE_OPENAI_API": "true",
        "OPENAI_API_BASE_URLS": ";".join(c.base_url for c in conns),
        "OPENAI_API_CONFIGS": json.dumps(
            {str(i): {"enable": True, "model_ids": list(c.models)} for i, c in enumerate(conns)}, sort_keys=True
        ),
        # 0.12.4 calls functions "natively" by default (main.py L1354-1358): every chat from the page carries its
        # built-in tools (utils/middleware.py L2078-2082, L2923-2930), and vLLM makes a request with tools
        # tool_choice "auto", which a server without --enable-auto-tool-choice and --tool-call-parser refuses
        # with a 400 (components/planning/engines/vllm.py adds them only where the image's recipes name parsers
        # for the model): the page would show that error instead of any answer, through the gateway too.
        # "legacy" sends no tools; a tool a user turns on runs through Open WebUI's own prompt. Native where
        # every server has a parser (function_calling). The stack's environment may set it otherwise.
        "DEFAULT_MODEL_PARAMS": json.dumps({"function_calling": function_calling(s, catalog)}),
        "RAG_EMBEDDING_ENGINE": "openai",
        "RAG_EMBEDDING_MODEL": e.model,
        "RAG_OPENAI_API_BASE_URL": emb_url,
    }
    if query_prefix:
        env["RAG_EMBEDDING_QUERY_PREFIX"] = query_prefix
    if document_prefix:
        env["RAG_EMBEDDING_CONTENT_PREFIX"] = document_prefix
    secret: dict[str, tuple[str | None, ...]] = {
        # Signs sessions: kept across container replacements, so an upgrade signs nobody out.
        "WEBUI_SECRET_KEY": (SECRET_KEY,),
    }
    if ui.login:
        env |= {"WEBUI_ADMIN_EMAIL": ui.admin_email, "WEBUI_ADMIN_NAME": ui.admin_name}
        secret["WEBUI_ADMIN_PASSWORD"] = (ADMIN_PASSWORD,)
    if any(c.key is not None for c in conns):
        secret["OPENAI_API_KEYS"] = tuple(c.key for c in conns)
    if emb_key is not None:
        secret["RAG_OPENAI_API_KEY"] = (emb_key,)
    env |= dict(ui.environment)
    return ChatUiPlan(conns, emb_url, emb_key, e.model, env, secret, frozenset(same))


def join_secret(parts: tuple[str | None, ...], values: dict[str, str]) -> str:
    """A secret variable's value from its parts' values (the test's side; the component joins Outputs)."""
    return ";".join("" if p is None else values[p] for p in parts)


# Open WebUI's variables that name models of its connections (open-webui 0.12.4 config.py): comma-separated lists
# (the models a new chat starts with, the ones pinned in the sidebar) and single models (the one that writes titles,
# tags and follow-ups: TASK_MODEL for Ollama connections, TASK_MODEL_EXTERNAL for OpenAI ones).
MODEL_LISTS = ("DEFAULT_MODELS", "DEFAULT_PINNED_MODELS")
MODEL_NAMES = ("TASK_MODEL", "TASK_MODEL_EXTERNAL")
# Function calling when DEFAULT_MODEL_PARAMS does not say (main.py L1354-1358): native, tools on every chat.
OPEN_WEBUI_FUNCTION_CALLING = "native"


def contradictions(s: StackSettings) -> tuple[list[Problem], list[Problem]]:
    """What the chat page's own settings say against the stack: models no server serves (or named by their Hub
    id), embedding prefixes of another model or without their separator, a model the offline page cannot load,
    native function calling towards servers without a tool parser. (errors, warnings), keyed in the fleet form."""
    if s.chat_ui is None or s.embeddings is None:
        return [], []
    errors = _models(s) + _offline_models(s) + _function_calling(s)
    prefix_errors, prefix_warnings = _prefixes(s)
    return errors + prefix_errors, prefix_warnings


def _models(s: StackSettings) -> list[Problem]:
    assert s.chat_ui is not None
    env = s.chat_ui.environment
    served = list(dict.fromkeys(m for c in connections(s) for m in c.models))
    by_hub_id = {srv.model.lower(): srv.name_served for srv in s.every_server.values()}
    out = []
    for variable in (*MODEL_LISTS, *MODEL_NAMES):
        value = env.get(variable)
        if value is None:
            continue
        names = [n.strip() for n in value.split(",")] if variable in MODEL_LISTS else [value.strip()]
        for name in names:
            if not name or name in served:
                continue
            if name.lower() in by_hub_id:
                why = (
                    f"the Hub id of the model the stack serves as {by_hub_id[name.lower()]!r}: the page knows models "
                    f"by their served names (served_model_name); write {by_hub_id[name.lower()]!r}"
                )
            else:
                why = (
                    f"which no server of the stack serves: the page offers {', '.join(map(repr, served))}; name one "
                    f"of them, or remove {variable}"
                )
            out.append(Problem("chat_ui.environment", f"has {variable} naming {name!r}, {why}"))
    return out


def _offline_models(s: StackSettings) -> list[Problem]:
    """A model Open WebUI would load itself: offline (OFFLINE in open_webui.py), it never can."""
    assert s.chat_ui is not None
    env = s.chat_ui.environment
    reranker = env.get("RAG_RERANKING_MODEL", "").strip()
    # config.py: RAG_RERANKING_ENGINE "" (the default) loads RAG_RERANKING_MODEL locally with sentence-transformers
    if not reranker or env.get("RAG_RERANKING_ENGINE", "").strip():
        return []
    return [
        Problem(
            "chat_ui.environment",
            f"has RAG_RERANKING_MODEL {reranker!r}: with RAG_RERANKING_ENGINE unset Open WebUI loads that model "
            "itself from the Hugging Face Hub, which the offline page (OFFLINE_MODE, HF_HUB_OFFLINE) never "
            "reaches, so it can never load it; remove RAG_RERANKING_MODEL, or give a reranker served elsewhere "
            "(RAG_RERANKING_ENGINE=external with RAG_EXTERNAL_RERANKER_URL)",
        )
    ]


def _function_calling(s: StackSettings) -> list[Problem]:
    """Native function calling sends tools with every chat; a server without a tool parser answers each with 400."""
    assert s.chat_ui is not None
    raw = s.chat_ui.environment.get("DEFAULT_MODEL_PARAMS")
    if raw is None:
        return []  # the project's own (function_calling): native only where every server has a parser
    try:
        params = json.loads(raw)
    except ValueError:
        return [Problem("chat_ui.environment", "has DEFAULT_MODEL_PARAMS that is not JSON: write a JSON object")]
    if not isinstance(params, dict):
        return [Problem("chat_ui.environment", "has DEFAULT_MODEL_PARAMS that is not a JSON object")]
    mode = params.get("function_calling", OPEN_WEBUI_FUNCTION_CALLING)
    if mode != "native":
        return []
    catalog = load_catalog()
    without = sorted(name for name, srv in s.every_server.items() if not serves_tools(srv, catalog))
    if not without:
        return []
    said = "native" if "function_calling" in params else "unset, so Open WebUI's default, native,"
    servers = ", ".join(f"{NAMESPACE}:{s.key('servers.' + n)}" for n in without)
    return [
        Problem(
            "chat_ui.environment",
            f"has DEFAULT_MODEL_PARAMS with function_calling {said}: every chat from the page then carries its tools, "
            f"which {servers} refuse{'s' if len(without) == 1 else ''} with a 400 (no --tool-call-parser on "
            'its command line), so no chat would answer; write "function_calling": "legacy" (the project\'s '
            "default, tools through Open WebUI's own prompt), or leave DEFAULT_MODEL_PARAMS to the project",
        )
    ]


def _prefixes(s: StackSettings) -> tuple[list[Problem], list[Problem]]:
    """The prefixes given over the table's: the embedding model's own, with its separator."""
    assert s.chat_ui is not None and s.embeddings is not None
    model = s.embeddings.model
    own = TASK_PREFIXES.get(model)
    families = {p: m for m, pair in TASK_PREFIXES.items() for p in pair}
    errors, warnings = [], []
    for key, given, index in (
        ("query_prefix", s.chat_ui.query_prefix, 0),
        ("document_prefix", s.chat_ui.document_prefix, 1),
    ):
        if not given:
            continue  # absent: the table's; empty: none
        if own is not None:
            expected = own[index]
            if given == expected:
                continue
            if given.strip().rstrip(":").strip() == expected.strip().rstrip(":").strip():
                errors.append(
                    Problem(
                        f"chat_ui.{key}",
                        f"is {given!r}, {model}'s prefix without the separator it was trained with: Open WebUI joins "
                        f"prefix and text as given; write {expected!r} (or remove {key}: the project sets it)",
                    )
                )
            elif given in families:
                errors.append(
                    Problem(
                        f"chat_ui.{key}",
                        f"is {given!r}, the prefix of {families[given]}, but the embedding model is {model}, whose "
                        f"prefix is {expected!r}: remove {key} (the project sets {model}'s) or write {expected!r}",
                    )
                )
            else:
                warnings.append(
                    Problem(
                        f"chat_ui.{key}",
                        f"is {given!r}, not {model}'s own {expected!r} (its model card): documents and questions "
                        "embedded with another prefix match worse; remove it unless you mean it",
                    )
                )
        elif given in families:
            warnings.append(
                Problem(
                    f"chat_ui.{key}",
                    f"is {given!r}, the prefix of {families[given]}, but the embedding model is {model}: kept from "
                    "another model? give the prefix its model card names, or remove the key",
                )
            )
        elif given[-1].isalnum():
            warnings.append(
                Problem(
                    f"chat_ui.{key}",
                    f"is {given!r}, which ends without a separator: Open WebUI joins prefix and text as given "
                    f"({given + 'text'!r}); end it the way {model}'s model card writes it (e.g. {given + ': '!r})",
                )
            )
    return errors, warnings
