"""The serving engines, each one module: vllm and llamacpp (chat servers), infinity (embeddings). An engine holds in one place
its settings model, its command line and container, its health check, and how the gateway and the chat page
reach it; the deployment plan (components/planning/deployment.py) finds it here by name. A new engine adds its
module and one line to ENGINES, and no other module grows a branch for it.
"""

from __future__ import annotations

from components.planning.catalog import Catalog, load_catalog
from components.planning.engines import infinity, llamacpp, vllm
from components.planning.engines.base import Engine, ServiceContext
from components.planning.rules import Assessment
from components.settings import LlamacppServerSettings, Problem, ServerSettings, StackSettings, suggestion

__all__ = [
    "EMBEDDINGS_ENGINE",
    "ENGINES",
    "Engine",
    "ServiceContext",
    "assess_stack",
    "check_stack",
    "engine",
    "reach",
    "register",
    "serves_tools",
]

# By name. A new engine: its module beside these, and one entry here.
ENGINES: dict[str, Engine] = {e.name: e for e in (vllm.ENGINE, llamacpp.ENGINE, infinity.ENGINE)}
# The engine of the stack's embeddings server.
EMBEDDINGS_ENGINE = infinity.ENGINE.name


def register(e: Engine) -> None:
    """Add an engine to the registry (one of the project's is listed in ENGINES above)."""
    ENGINES[e.name] = e


def engine(name: str) -> Engine:
    return ENGINES[name]


def serves_tools(settings: ServerSettings | LlamacppServerSettings, catalog: Catalog) -> bool:
    """Whether a server answers the tool calls the chat page sends natively: its engine says (an engine the
    registry does not have answers none; the stack's rules refuse it)."""
    e = ENGINES.get(settings.engine)
    return e is not None and e.native_tools(settings, catalog)


def reach(e: Engine, container: str, port: int, address: str, same_host: bool) -> str:
    """A service's OpenAI base URL as a caller (the gateway, the chat page) reaches it: by container name and the
    engine's port on the stack's network of the same host; else by its host's address and published port."""
    return f"http://{container}:{e.port}{e.path}" if same_host else f"http://{address}:{port}{e.path}"


def check_stack(s: StackSettings) -> tuple[list[Problem], list[Problem]]:
    """Each server's engine is one of the registry's, and passes that engine's rules: for settings.validate,
    (errors, warnings) in fleet keys."""
    errors: list[Problem] = []
    warnings: list[Problem] = []
    catalog = load_catalog()
    for name, srv in s.every_server.items():
        e = ENGINES.get(srv.engine)
        if e is None:
            hint = suggestion(srv.engine, ENGINES)
            errors.append(
                Problem(
                    f"servers.{name}.engine", f"is {srv.engine!r}: the engines are {', '.join(sorted(ENGINES))}{hint}"
                )
            )
            continue
        found, warned = e.check(s, name, catalog)
        errors += found
        warnings += warned
    return errors, warnings


def assess_stack(s: StackSettings, catalog: Catalog) -> dict[str, Assessment]:
    """Each server's memory plan and speed bands, by server name, from its engine (where it has them)."""
    out = {}
    for name, srv in s.servers.items():
        a = ENGINES[srv.engine].assess(s, name, catalog)
        if a is not None:
            out[name] = a
    return out
