"""The chat UI (Open WebUI) under the SDK's mocks: its container, secrets, volume, wiring and bad inputs.

The real Open WebUI, in a real browser, is tests/test_chat_ui_browser.py; its container on a real Docker
engine is tests/test_engine.py (big-chat).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pulumi
import pytest

from components.planning.catalog import load_catalog
from components.planning.chat_ui import plan
from components.planning.open_webui import MANAGED, OFFLINE
from components.program import deploy
from components.settings.pulumi_config import load_from_pulumi
from components.settings.stackfile import stack_path
from components.tools.compose import to_compose
from components.tools.mocks import PlanMocks
from tests.conftest import inputs_of, shipped_plan, use_stack
from tests.stacks import errors, load, plan_values, set_key, values_of
from tests.test_components import _plain_text, env_dict, is_secret

PASSWORD = "ui-admin-pass-6f1d2c"
GATEWAY_KEY = "sk-gateway-1b2c3d4e5f"
VLLM_KEY = "vk-chat-9a8b7c6d"
FLEET_SECRETS = ("gateway_api_key",)
SOURCE = "Pulumi.test.yaml: rocm-inference:"


def env(plan_env: list[str]) -> dict[str, str]:
    return dict(e.split("=", 1) for e in plan_env)


# --------------------------------------------------------------------------- the container


def test_big_chat_runs_open_webui_pinned_on_its_own_port_and_volume_bound_like_grafana() -> None:
    p = shipped_plan("big-chat")
    c = p.by_name("chat-ui-container")
    assert p.by_name("chat-ui-image").inputs["name"] == "ghcr.io/open-webui/open-webui:v0.12.4"
    assert c.inputs["name"] == "open-webui"
    # The image's port, published on the host's bind; not 8080 (big-chat's embeddings) nor 3000 (Grafana)
    assert c.inputs["ports"] == [{"internal": 8080, "external": 3080, "ip": "127.0.0.1"}]
    assert c.inputs["volumes"] == [{"volumeName": "open-webui-data", "containerPath": "/app/backend/data"}]
    volume = p.by_name("chat-ui-cache")
    assert volume.inputs["name"] == "open-webui-data"
    # kept across replacements, removals and destroys, like a model cache
    assert volume.options["retain_on_delete"] is True and "name" in volume.options["ignore_changes"]
    assert c.options["delete_before_replace"] is True
    health = c.inputs["healthcheck"]
    assert health["tests"][:2] == ["CMD", "python3"] and "8080/health" in health["tests"][-1]
    assert health["startPeriod"] == "10m0s" and c.inputs["waitTimeout"] == 600
    assert c.inputs.get("command") is None, "the image's own start.sh"
    assert p.outputs["chat_ui_url"] == "http://localhost:3080"
    assert p.outputs["chat_ui_admin_email"] == "admin@localhost"


def test_the_offline_settings_are_all_in_the_container() -> None:
    e = env(shipped_plan("big-chat").by_name("chat-ui-container").inputs["envs"])
    for name, value, _ in OFFLINE:
        assert e[name] == value, name
    # without these it tries api.openai.com and an Ollama on the host, and the page hangs until they time out
    assert e["ENABLE_OLLAMA_API"] == "false" and e["OPENAI_API_BASE_URLS"].startswith("http://vllm:")
    assert e["RAG_EMBEDDING_ENGINE"] == "openai", "a local engine would load a model of Open WebUI's own"
    assert e["ENABLE_PERSISTENT_CONFIG"] == "false", "the environment must reach a running UI on every start"
    assert e["ENABLE_SIGNUP"] == "false" and e["WEBUI_AUTH"] == "true"


# --------------------------------------------------------------------------- wiring


def test_single_host_chats_with_the_server_and_embeds_with_infinity_by_name_on_the_network() -> None:
    s = load(values_of("big-chat")).settings
    ui = plan(s, load_catalog())
    assert [(c.base_url, c.models) for c in ui.connections] == [
        ("http://vllm:8000/v1", ("casperhansen/llama-3.3-70b-instruct-awq",))
    ]
    assert ui.embeddings_url == "http://infinity-embeddings:7997"
    assert ui.environment["RAG_EMBEDDING_MODEL"] == "nomic-ai/nomic-embed-text-v1.5"
    # nomic-embed-text's task prefixes, trailing space kept (Open WebUI concatenates them as they are)
    assert ui.environment["RAG_EMBEDDING_QUERY_PREFIX"] == "search_query: "
    assert ui.environment["RAG_EMBEDDING_CONTENT_PREFIX"] == "search_document: "
    assert json.loads(ui.environment["OPENAI_API_CONFIGS"]) == {
        "0": {"enable": True, "model_ids": ["casperhansen/llama-3.3-70b-instruct-awq"]}
    }
    # no key on an open server: none sent
    assert "OPENAI_API_KEYS" not in ui.secret_environment and "RAG_OPENAI_API_KEY" not in ui.secret_environment
    p = shipped_plan("big-chat")
    network = p.by_name("host-network").inputs["name"]
    for name in ("chat-ui-container", "vllm-container", "embeddings-container"):
        assert [n["name"] for n in p.by_name(name).inputs["networksAdvanced"]] == [network], name


def test_single_host_with_keys_sends_each_as_a_secret() -> None:
    s = load(values_of("big-chat"), ("vllm_api_key", "embeddings_api_key")).settings
    ui = plan(s, load_catalog())
    assert ui.secret_environment["OPENAI_API_KEYS"] == ("server:vllm",)
    assert ui.secret_environment["RAG_OPENAI_API_KEY"] == ("embeddings",)


def test_the_fleet_chats_and_embeds_through_the_gateway_with_its_key_listing_only_chat_models() -> None:
    s = load(values_of("fleet"), FLEET_SECRETS).settings
    ui = plan(s, load_catalog())
    assert [(c.base_url, c.key, c.models) for c in ui.connections] == [
        ("http://litellm-gateway:4000/v1", "gateway_api_key", ("llama-3.3-70b", "qwen2.5-7b"))
    ]
    # LiteLLM serves the embedding model under its Hub id at /v1/embeddings; the chat list leaves it out
    assert ui.embeddings_url == "http://litellm-gateway:4000/v1" and ui.embeddings_key == "gateway_api_key"
    assert ui.secret_environment == {
        "WEBUI_SECRET_KEY": ("webui_secret_key",),
        "WEBUI_ADMIN_PASSWORD": ("admin_password",),
        "OPENAI_API_KEYS": ("gateway_api_key",),
        "RAG_OPENAI_API_KEY": ("gateway_api_key",),
    }
    p = shipped_plan("fleet")
    c = p.by_name("chat-ui-container")
    assert c.options["provider"] == "gpu-a-docker"
    assert [n["name"] for n in c.inputs["networksAdvanced"]] == [p.by_name("gpu-a-network").inputs["name"]]
    assert c.inputs["ports"] == [{"internal": 8080, "external": 3080, "ip": "10.0.0.5"}]


def test_without_a_gateway_the_fleet_ui_reaches_other_hosts_by_address_and_one_entry_per_model(
    tmp_path: Path,
) -> None:
    values = {k: v for k, v in values_of("fleet").items() if k not in ("gateway", "monitoring")}
    s = load(values, ("vllm_api_key", "embeddings_api_key")).settings
    ui = plan(s, load_catalog())
    # chat-a on the UI's host by name; chat-b (a replica of chat-a's model) is one choice, not two; coder by address
    assert [(c.base_url, c.models, c.key) for c in ui.connections] == [
        ("http://chat-a:8000/v1", ("llama-3.3-70b",), "server:chat-a"),
        ("http://gpu-b.lan:8001/v1", ("qwen2.5-7b",), "server:coder"),
    ]
    assert ui.embeddings_url == "http://gpu-b.lan:7997"
    assert ui.secret_environment["OPENAI_API_KEYS"] == ("server:chat-a", "server:coder")
    secure = {"secure": "v1:AAAAAAAAAAAAAAAA:BBBBBBBB"}
    p = plan_values(values, tmp_path, {"vllm_api_key": secure, "embeddings_api_key": secure})
    # a network on gpu-a only for the UI's neighbour chat-a
    assert [n["name"] for n in p.by_name("chat-a-container").inputs["networksAdvanced"]] == ["rocm-inference-variant"]
    assert p.by_name("chat-b-container").inputs.get("networksAdvanced") is None


# --------------------------------------------------------------------------- secrets


@pulumi.runtime.test
def test_the_password_keys_and_session_key_are_secrets_in_the_container_and_state(
    mocks: PlanMocks,
) -> pulumi.Output[Any]:
    use_stack("fleet", {"gateway_api_key": GATEWAY_KEY, "chat_ui_admin_password": PASSWORD})
    loaded, secrets = load_from_pulumi(stack_path("fleet"))
    outputs = deploy(loaded, secrets, "rocm-inference", "fleet")

    def check(out: dict[str, Any]) -> None:
        c = inputs_of(mocks, ":Container", "chat-ui-container")
        assert is_secret(c["envs"]), "the env list goes to state encrypted"
        e = env_dict(c["envs"]["value"])
        assert e["WEBUI_ADMIN_PASSWORD"] == PASSWORD
        assert e["OPENAI_API_KEYS"] == GATEWAY_KEY and e["RAG_OPENAI_API_KEY"] == GATEWAY_KEY
        assert len(e["WEBUI_SECRET_KEY"]) >= 32
        for (typ, name), inputs in mocks.inputs.items():
            for value in (PASSWORD, GATEWAY_KEY, e["WEBUI_SECRET_KEY"]):
                assert value not in _plain_text(inputs), f"{typ} {name} holds a secret in plain text"
        assert out["chat_ui_admin_password"] == PASSWORD

    return pulumi.Output.all(**outputs).apply(check)


def test_nothing_secret_is_readable_in_the_plan_or_the_compose_file() -> None:
    p = shipped_plan("fleet")
    text = json.dumps(p.as_json())
    c = env(p.by_name("chat-ui-container").inputs["envs"])
    for name in ("WEBUI_ADMIN_PASSWORD", "WEBUI_SECRET_KEY", "OPENAI_API_KEYS", "RAG_OPENAI_API_KEY"):
        assert c[name] == "[secret]", name
    assert p.outputs["chat_ui_admin_password"] == "[secret]"
    compose = to_compose(p, "gpu-a")["services"]["chat-ui"]["environment"]
    for name in ("WEBUI_ADMIN_PASSWORD", "WEBUI_SECRET_KEY", "OPENAI_API_KEYS", "RAG_OPENAI_API_KEY"):
        assert compose[name].startswith("${" + name + ":?"), name
    assert "placeholder" not in text


def test_a_generated_password_and_session_key_come_from_random_and_are_kept() -> None:
    p = shipped_plan("big-chat")
    for name, length in (("chat-ui-admin-password", 24), ("chat-ui-secret-key", 48)):
        r = p.by_name(name)
        assert r.type == "random:index/randomPassword:RandomPassword" and r.inputs["length"] == length


# --------------------------------------------------------------------------- bad inputs


def with_ui(**ui: Any) -> dict[str, Any]:
    values = values_of("big-chat")
    values["chat_ui"] = {**values["chat_ui"], **ui}
    return values


@pytest.mark.parametrize(
    ("ui", "line"),
    [
        (
            {"admin_email": "admin"},
            "chat_ui.admin_email is 'admin', not an email address Open WebUI accepts: name@domain.tld, or "
            "name@localhost",
        ),
        (
            {"admin_email": "Admin@Example.com"},
            "chat_ui.admin_email is 'Admin@Example.com': Open WebUI keeps emails in lower case; write "
            "'admin@example.com'",
        ),
        (
            {"port": 8080},
            "chat_ui.port is host port 8080, which the embeddings server already uses (rocm-inference:embeddings.port): "
            "give the chat UI or the embeddings server another host port",
        ),
        (
            {"port": 3000},
            "chat_ui.port is host port 3000, which Grafana already uses (rocm-inference:monitoring.grafana_port): "
            "give the chat UI or Grafana another host port",
        ),
        (
            {"image": "ghcr.io/open-webui/open-webui:v0.12.4-slim"},
            "chat_ui.image is 'ghcr.io/open-webui/open-webui:v0.12.4-slim', a -slim variant, which has no vector "
            "store of its own (its RAG wants Postgres with pgvector): use the full image, e.g. "
            "ghcr.io/open-webui/open-webui:v0.12.4",
        ),
        (
            {"environment": {"OPENAI_API_BASE_URLS": "https://api.openai.com/v1"}},
            "chat_ui.environment has 'OPENAI_API_BASE_URLS', which this project sets itself (the wiring, accounts "
            "and offline settings of components/planning/chat_ui.py): use the chat_ui keys instead",
        ),
        ({"data_volume": "vllm-hf-cache"}, "chat_ui.data_volume is cache volume 'vllm-hf-cache'"),
        ({"container_name": "vllm"}, "chat_ui.container_name is container name 'vllm'"),
    ],
    ids=["email", "email case", "port of embeddings", "port of grafana", "slim", "managed env", "volume", "name"],
)
def test_bad_inputs_are_refused_with_the_key(ui: dict[str, Any], line: str) -> None:
    got = errors(with_ui(**ui))
    assert any(g.startswith(SOURCE + line) for g in got), got


def test_a_page_without_login_beyond_loopback_is_refused() -> None:
    values = set_key(with_ui(login=False), "host.bind", "10.0.0.5")
    got = errors(values, ("vllm_api_key", "embeddings_api_key"))
    assert got == [
        SOURCE + "chat_ui.login is false, Open WebUI's single-user mode, where whoever opens the page is its admin, "
        "but rocm-inference:host.bind is 10.0.0.5, beyond this host: keep the login on (login: true), or bind to "
        "loopback and reach the page through an SSH tunnel"
    ]
    # on loopback it is allowed, and no admin account is made
    s = load(with_ui(login=False)).settings
    assert (
        plan(s, load_catalog()).environment["WEBUI_AUTH"] == "false"
        and "WEBUI_ADMIN_PASSWORD" not in plan(s, load_catalog()).secret_environment
    )


def test_a_chat_ui_without_embeddings_is_refused() -> None:
    values = {k: v for k, v in values_of("big-chat").items() if k != "embeddings"}
    assert errors(values) == [
        SOURCE + "chat_ui needs the stack's embeddings server (rocm-inference:embeddings) for the documents users "
        "upload (RAG): without it Open WebUI would embed them with a model of its own; add an embeddings section"
    ]


def test_an_unpinned_image_is_warned_with_the_pinned_tag() -> None:
    for tag in ("main", "latest", "dev", "cuda", "ollama", "0.12"):
        warnings = load(with_ui(image=f"ghcr.io/open-webui/open-webui:{tag}")).warnings
        assert any(
            "chat_ui.image" in w and "unpinned tag" in w and "ghcr.io/open-webui/open-webui:v0.12.4" in w
            for w in warnings
        ), (tag, warnings)
    assert load(with_ui(image="ghcr.io/open-webui/open-webui:v0.12.4")).warnings == ()


def test_every_offline_setting_is_managed() -> None:
    assert {name for name, _, _ in OFFLINE} <= MANAGED


# --------------------------------------------------------------------------- day two


def test_a_changed_admin_password_reaches_the_ui_through_the_admin_reset(tmp_path: Path) -> None:
    """Open WebUI creates its admin only while it has no user: the replaced container alone would keep the old
    password. The reset runs after it, with the new password on its stdin."""
    from tests.test_day_two import day_two, index

    old = {"chat_ui_admin_password": {"secure": "v1:AAAAAAAAAAAAAAAA:b2xkLXBhc3N3b3Jk"}}

    def rotate(values: dict[str, Any], secure: dict[str, Any]) -> None:
        secure["chat_ui_admin_password"] = {"secure": "v1:AAAAAAAAAAAAAAAA:bmV3LXBhc3N3b3Jk"}

    d = day_two(tmp_path, "big-chat", rotate, old)
    ui = next(c for c in d.changes if c.name == "chat-ui-container")
    assert ui.kind == "replace" and "envs: WEBUI_ADMIN_PASSWORD changed (secrets)" in ui.settings
    assert "chat-ui-admin-reset sets the new password" in ui.note
    assert [c.name for c in d.changes] == ["chat-ui-container", "chat-ui-admin-reset"], "nothing else moves"
    reset = next(c for c in d.changes if c.name == "chat-ui-admin-reset")
    assert reset.kind == "update" and reset.note == "runs once more (a one-shot docker run)"
    assert index(d, "create", "chat-ui-container") < index(d, "update", "chat-ui-admin-reset")


@pytest.mark.parametrize("stack", ["big-chat", "fleet"])
def test_every_deploy_of_the_ui_sets_the_stacks_admin_password_in_its_volume(stack: str) -> None:
    """Issue 26 defect 4: after `pulumi destroy` then `pulumi up` the data volume kept the admin with the old
    password, and the new generated one (a RandomPassword does not survive a destroy) was refused. A one-shot
    run of the UI's image on its volume, after the UI is up, sets the stack's password; the password only on
    its stdin. (tests/test_chat_ui_browser.py runs the script against the real Open WebUI.)"""
    from components.planning.chat_ui import ADMIN_RESET_SCRIPT, DATA_DIR

    plan = shipped_plan(stack)
    reset = plan.by_name("chat-ui-admin-reset")
    run = reset.inputs["triggers"][0]
    assert run["entrypoints"] == ["python3", "-c"] and run["command"] == [ADMIN_RESET_SCRIPT]
    assert run["volumes"] == [{"volumeName": "open-webui-data", "containerPath": DATA_DIR}]
    assert run["secretEnvs"] == ["WEBUI_ADMIN_PASSWORD"] and "WEBUI_ADMIN_PASSWORD" not in json.dumps(run["envs"])
    assert reset.inputs["stdin"] == "WEBUI_ADMIN_PASSWORD=[secret]\n"
    assert {"chat-ui-container", "chat-ui-admin-password"} <= set(reset.options["dependencies"])
    assert reset.options["replacement_trigger"] == plan.by_name("chat-ui-container").options["replacement_trigger"]


def test_a_ui_without_login_has_no_admin_reset(tmp_path: Path) -> None:
    names = {r.name for r in plan_values(with_ui(login=False), tmp_path).resources}
    assert "chat-ui-container" in names and "chat-ui-admin-reset" not in names


def test_an_upgrade_replaces_the_container_and_keeps_the_data_volume_and_the_session_key(tmp_path: Path) -> None:
    from tests.test_day_two import day_two

    def upgrade(values: dict[str, Any], secure: dict[str, Any]) -> None:
        values["rocm-inference:chat_ui" if "rocm-inference:chat_ui" in values else "chat_ui"]["image"] = (
            "ghcr.io/open-webui/open-webui:v0.12.5"
        )

    d = day_two(tmp_path, "big-chat", upgrade)
    kinds = {c.name: c.kind for c in d.changes}
    assert kinds["chat-ui-container"] == "replace" and kinds["chat-ui-image"] == "replace"
    assert "chat-ui-cache" not in kinds or kinds["chat-ui-cache"] == "same", "users, chats and documents stay"
    assert "chat-ui-secret-key" not in kinds or kinds["chat-ui-secret-key"] == "same", "nobody is signed out"
    assert not any(c.name.startswith(("vllm", "embeddings")) and c.kind != "same" for c in d.changes)


# --------------------------------------------------------------------------- the policy pack


def test_the_policy_pack_takes_the_login_as_the_guard_of_the_ui_port_and_nothing_else(tmp_path: Path) -> None:
    from tests.test_policy import run_pack

    secure = {"secure": "v1:AAAAAAAAAAAAAAAA:BBBBBBBB"}
    keys = {"vllm_api_key": secure, "embeddings_api_key": secure}
    wide = set_key(values_of("big-chat"), "host.bind", "10.0.0.5")
    resources = plan_values(wide, tmp_path / "login", keys).resources
    assert run_pack(resources) == []
    # A page without login beyond loopback: validation refuses the stack (above); a program that made one
    # anyway, its container without the login label, is refused by the pack.
    unguarded = []
    for r in resources:
        if r.name == "chat-ui-container":
            labels = [lbl for lbl in r.inputs["labels"] if lbl["label"] != "rocm-inference.auth"]
            r = dataclasses.replace(r, inputs={**r.inputs, "labels": labels})
        unguarded.append(r)
    assert [(v[0], v[1]) for v in run_pack(unguarded)] == [("wide-ports-need-api-key", "chat-ui-container")]


@pytest.mark.parametrize(
    ("stack", "service", "after"),
    [
        ("big-chat", "chat-ui", {"vllm", "embeddings"}),
        ("fleet", "chat-ui", {"gateway", "embeddings"}),
        ("fleet", "gateway", {"chat-a", "chat-b", "coder", "embeddings"}),
    ],
)
def test_images_are_pulled_while_the_servers_load_and_containers_start_after_them(
    stack: str, service: str, after: set[str]
) -> None:
    """A 70B load takes many minutes: the UI's and the gateway's images come in meanwhile, and only their containers
    wait for the services they talk to."""
    p = shipped_plan(stack)
    image = set(p.by_name(f"{service}-image").options["depends_on"])
    container = set(p.by_name(f"{service}-container").options["depends_on"])
    assert not after & image, image
    assert after <= container, container
