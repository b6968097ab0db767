"""Secrets by their shape, wherever a value reaches a container or a command: one rule
(components/planning/secrets.py) for the settings check, the plan, the compose export, the PR comment
and the policy pack. Each table lists the shapes that must be refused and the neighbours that must pass."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pulumi
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from components.planning.secrets import (
    SECRET_ENV_LABEL,
    credential_in_value,
    credential_in_words,
    looks_like_secret_name,
)
from components.program import deploy
from components.settings import StackConfigError, read_stack_file
from components.settings.pulumi_config import load_from_pulumi
from components.settings.schema import SCHEMA_FILE
from components.tools.compose import to_compose
from components.tools.mocks import PlanMocks
from components.tools.plan import plan_stack
from rules import CONTAINER, Options, no_plain_secrets, violations
from tests.conftest import ROOT, inputs_of, use_stack
from tests.stacks import errors, load, set_key, values_of
from tests.test_fleet import _unwrapped
from tests.test_policy import run_pack

FLEET_SECRETS = ("gateway_api_key",)

# --------------------------------------------------------------------------- names, by their parts

SECRET_NAMES = [
    "MY_API_TOKEN", "DB_PASSWORD", "SECRET_KEY_BASE", "AWS_SECRET_ACCESS_KEY", "API_KEYS",
    # compounds: a part that ends with a secret word
    "APIKEY", "AUTHTOKEN", "ACCESSKEY", "DBPASSWORD", "MYSQL_ROOTPASSWD", "SSHPASS_KEY",
    # other spellings of the parts
    "hfApiKey", "accessKeyId", "S3KEY", "TOKEN2", "DB_PASS", "api-key",
]  # fmt: skip
HARMLESS_NAMES = [
    "TOKENIZERS_PARALLELISM", "HF_HUB_ENABLE_HF_TRANSFER", "MAX_TOKENS", "KEYBOARD", "PASSWORDLESS",
    "NCCL_P2P_DISABLE", "VLLM_LOGGING_LEVEL", "PYTHON_KEYRING_BACKEND", "MAX_NUM_BATCHED_TOKENS", "HTTPS_PROXY",
    "COMPASS_HEADING", "SSH_AUTH_SOCK",
]  # fmt: skip


@pytest.mark.parametrize("name", SECRET_NAMES)
def test_a_secret_name_is_read_by_its_parts(name: str) -> None:
    assert looks_like_secret_name(name)


@pytest.mark.parametrize("name", HARMLESS_NAMES)
def test_a_harmless_name_with_a_secret_looking_substring_passes(name: str) -> None:
    assert not looks_like_secret_name(name)


@pytest.mark.parametrize("name", ["TOKENIZERS_PARALLELISM", "KEYBOARD_LAYOUT", "PASSWORDLESS", "MAX_TOKENS"])
def test_a_harmless_name_passes_the_settings_check_and_the_policy(name: str) -> None:
    assert errors(set_key(values_of("big-chat"), "vllm.environment", {name: "false"})) == []
    assert no_plain_secrets(CONTAINER, {"envs": [f"{name}=false"]}, Options(additional_secret_outputs=("envs",))) == []


@pytest.mark.parametrize("name", ["APIKEY", "AUTHTOKEN", "ACCESSKEY", "DBPASSWORD"])
def test_a_compound_secret_name_is_refused_with_the_way_out(name: str) -> None:
    found = errors(set_key(values_of("big-chat"), "vllm.environment", {name: "x"}))
    assert found == [
        f"Pulumi.test.yaml: rocm-inference:vllm.environment has {name!r} with a name that says it is a secret: in plain "
        "text it would show in the plan, the compose export and `docker inspect`; make it a secret entry: pulumi "
        f"config set --secret --path 'rocm-inference:vllm.environment.{name}' VALUE (see README, Secrets)"
    ]


# --------------------------------------------------------------------------- values, by their shape

# (shape, value, what the message says it holds); "hunter2" or the token is never printed.
CREDENTIALS = [
    ("proxy with userinfo", "http://ops:hunter2@proxy.lan:3128", "a password in a URL (user:password@)"),
    ("https proxy, no user", "https://:hunter2@proxy.lan", "a password in a URL (user:password@)"),
    ("database DSN", "postgresql://app:hunter2@db.lan:5432/app", "a password in a URL (user:password@)"),
    ("redis DSN", "redis://:hunter2@cache:6379/0", "a password in a URL (user:password@)"),
    ("mongodb+srv", "mongodb+srv://app:hunter2@cluster0.example.net/db", "a password in a URL (user:password@)"),
    ("URL in a list", "localhost,socks5://u:hunter2@jump:1080", "a password in a URL (user:password@)"),
    ("Slack", "https://hooks.slack.com/services/T0000/B0000/hunter2hunter2hunter2XX", "a Slack webhook URL (its path is the secret)"),
    ("Slack workflow", "https://hooks.slack.com/triggers/T0000/12345/hunter2", "a Slack webhook URL (its path is the secret)"),
    ("Discord", "https://discord.com/api/webhooks/123456789/hunter2-hunter2", "a Discord webhook URL (its path is the secret)"),
    ("Discord, old host", "https://discordapp.com/api/webhooks/123456789/hunter2", "a Discord webhook URL (its path is the secret)"),
    ("Teams", "https://acme.webhook.office.com/webhookb2/1a2b@3c4d/IncomingWebhook/hunter2/5e6f", "a Microsoft Teams webhook URL (its path is the secret)"),
    ("Teams, legacy", "https://outlook.office.com/webhook/1a2b@3c4d/IncomingWebhook/hunter2/5e6f", "a Microsoft Teams webhook URL (its path is the secret)"),
    ("Telegram bot", "https://api.telegram.org/bot123456:hunter2hunter2/sendMessage", "a Telegram bot URL (its path is the secret)"),
    ("Mattermost", "https://chat.example.com/hooks/hunter2abcdefghij1234567", "a webhook URL (its path is the secret)"),
    ("Google Chat", "https://chat.googleapis.com/v1/spaces/AAA/messages?key=hunter2&token=hunter2", "a secret in a URL's query (key=)"),
    ("Teams workflow (Power Automate)", "https://prod-1.westus.logic.azure.com:443/workflows/1/triggers/manual/paths/invoke?api-version=2016-06-01&sig=hunter2", "a secret in a URL's query (sig=)"),
    ("access_token in a query", "https://api.example.com/v1?access_token=hunter2", "a secret in a URL's query (access_token=)"),
    ("sshpass -p", "sshpass -p hunter2 ssh ops@jump", "a password on a command line (sshpass -p)"),
    ("sshpass -pPASSWORD", "/usr/bin/sshpass -phunter2 ssh ops@jump", "a password on a command line (sshpass -p)"),
    ("--password=", "--password=hunter2", "a secret on a command line (--password)"),
    ("--password VALUE", "--user ops --password hunter2", "a secret on a command line (--password)"),
    ("--api-key", "--api-key hunter2", "a secret on a command line (--api-key)"),
    ("mysql -pPASSWORD", "mysql -u root -phunter2 app", "a password on a command line (mysql -p)"),
    ("curl -u user:password", "curl -u ops:hunter2 https://x.lan", "a password on a command line (curl -u)"),
    ("redis-cli -a", "redis-cli -h cache -a hunter2", "a password on a command line (redis-cli -a)"),
    ("a Hugging Face token", "hf_AbCdEfGhIjKlMnOpQrStUv", "a Hugging Face token (by its prefix)"),
]  # fmt: skip
# Values that must pass: no password, a placeholder instead of one, a path where a secret is.
NEIGHBOURS = [
    "http://proxy:3128", "http://proxy.lan:3128/", "ssh://ops@gpu-a.lan", "https://ops@git.lan/org/repo.git",
    "http://[::1]:8000/v1", "localhost,127.0.0.1,.lan", "https://huggingface.co/Qwen/Qwen2.5-7B-Instruct-AWQ",
    "https://alerts.example.com/webhook", "https://example.com/hooks/short", "https://e.com/?page=2&max_tokens=5",
    "http://ops:${PROXY_PASSWORD}@proxy:3128", "http://ops:$PROXY_PASSWORD@proxy:3128", "sshpass -e ssh ops@jump",
    "sshpass -f /run/secrets/jump ssh ops@jump", "sshpass -p $SSHPASS ssh ops@jump", "--password-file=/run/secrets/db",
    "mysql -u root -p app", "curl -u ops https://x.lan", "-pthread -pipe", "--max-num-batched-tokens 8192",
    "ops@gpu-a.lan", "false", "1", "DEBUG", "http://[::1", "it's 'unbalanced",
]  # fmt: skip


@pytest.mark.parametrize(("shape", "value", "what"), CREDENTIALS, ids=[c[0] for c in CREDENTIALS])
def test_a_credential_is_known_by_its_shape(shape: str, value: str, what: str) -> None:
    assert credential_in_value(value) == what


@pytest.mark.parametrize("value", NEIGHBOURS)
def test_a_value_without_a_credential_passes(value: str) -> None:
    assert credential_in_value(value) is None
    assert errors(set_key(values_of("big-chat"), "vllm.environment", {"EXTRA_SETTING": value})) == []


SERVICES = [
    ("big-chat", "vllm", ()),
    ("big-chat", "embeddings", ()),
    ("fleet", "servers.coder", FLEET_SECRETS),
    ("fleet", "gateway", FLEET_SECRETS),
]


@pytest.mark.parametrize(("stack", "service", "secrets"), SERVICES)
@pytest.mark.parametrize(("shape", "value", "what"), CREDENTIALS, ids=[c[0] for c in CREDENTIALS])
def test_a_credential_under_a_harmless_name_is_refused_in_every_services_environment(
    stack: str, service: str, secrets: tuple[str, ...], shape: str, value: str, what: str
) -> None:
    found = errors(set_key(values_of(stack), f"{service}.environment", {"HTTPS_PROXY": value}), secrets)
    key = f"rocm-inference:{service}.environment"
    assert found == [
        f"Pulumi.test.yaml: {key} has 'HTTPS_PROXY' with a value that looks like a secret, {what}: in plain text it "
        "would show in the plan, the compose export and `docker inspect`; make it a secret entry: pulumi config set "
        f"--secret --path '{key}.HTTPS_PROXY' VALUE (see README, Secrets)"
    ]
    assert "hunter2" not in found[0], "the message must not print the secret"


# --------------------------------------------------------------------------- the Docker host and ssh options

DOCKER_URLS = ["ssh://ops:hunter2@gpu-a.lan", "ssh://ops:hunter2@gpu-a.lan:2222", "ssh://:hunter2@gpu-a.lan"]


@pytest.mark.parametrize("url", DOCKER_URLS)
def test_a_password_in_the_docker_host_url_is_refused_without_printing_it(url: str) -> None:
    found = errors(set_key(values_of("fleet"), "hosts.gpu-a.docker", url), FLEET_SECRETS)
    assert found == [
        "Pulumi.test.yaml: rocm-inference:hosts.gpu-a.docker has a password in its URL (user:password@), which would "
        "show in clear in the plan and in state, and which Docker's ssh:// refuses: write ssh://USER@HOST and log in "
        "with a key (pulumi config set --secret rocm-inference:ssh_private_key < KEYFILE) or your SSH agent"
    ]


def test_a_docker_host_url_with_a_user_only_passes() -> None:
    assert load(values_of("fleet"), FLEET_SECRETS).settings.hosts["gpu-a"].docker == "ssh://ops@gpu-a.lan"


SSH_OPTS_WITH_PASSWORD = [
    ["-o", "ProxyCommand=sshpass -p hunter2 ssh -W %h:%p ops@bastion"],
    ["-o", "ProxyCommand sshpass -phunter2 ssh -W %h:%p ops@bastion"],
    ["-oProxyCommand=/usr/bin/sshpass -p 'hunter2' ssh -W %h:%p bastion"],
    ["-o", "ProxyJump=ssh://ops:hunter2@bastion"],
    ["-o", "ProxyCommand=curl -u ops:hunter2 https://bastion/tunnel"],
]
SSH_OPTS_NEIGHBOURS = [
    ["-p", "2222"],
    ["-i", "~/.ssh/box", "-o", "PasswordAuthentication=no"],
    ["-o", "ProxyCommand=sshpass -e ssh -W %h:%p ops@bastion"],
    ["-o", "ProxyCommand=sshpass -p $SSHPASS ssh -W %h:%p ops@bastion"],
    ["-o", "ProxyJump=ops@bastion"],
    ["-o", "ProxyCommand=ssh -W %h:%p 'unbalanced"],
]


@pytest.mark.parametrize("opts", SSH_OPTS_WITH_PASSWORD)
def test_a_password_in_the_ssh_options_is_refused(opts: list[str]) -> None:
    found = errors(set_key(values_of("fleet"), "hosts.gpu-a.ssh_opts", opts), FLEET_SECRETS)
    assert len(found) == 1 and found[0].startswith(
        "Pulumi.test.yaml: rocm-inference:hosts.gpu-a.ssh_opts carries a password "
    )
    assert "log in with a key" in found[0] and "sshpass -e" in found[0] and "hunter2" not in found[0]


@pytest.mark.parametrize("opts", SSH_OPTS_NEIGHBOURS)
def test_ssh_options_without_a_password_pass(opts: list[str]) -> None:
    assert errors(set_key(values_of("fleet"), "hosts.gpu-a.ssh_opts", opts), FLEET_SECRETS) == []
    assert credential_in_words(opts) is None


# --------------------------------------------------------------------------- the policy pack, by the same rule

GOOD_OPTS = Options(delete_before_replace=True, additional_secret_outputs=("envs",))


@pytest.mark.parametrize(("shape", "value", "what"), CREDENTIALS, ids=[c[0] for c in CREDENTIALS])
def test_the_policy_flags_a_credential_under_a_harmless_name(shape: str, value: str, what: str) -> None:
    found = no_plain_secrets(CONTAINER, {"envs": [f"HTTPS_PROXY={value}"]}, GOOD_OPTS)
    assert found == [
        "environment variable HTTPS_PROXY looks like a secret in plain configuration: set it with "
        "`pulumi config set --secret --path '<service>.environment.HTTPS_PROXY'`"
    ]


@pytest.mark.parametrize("value", NEIGHBOURS)
def test_the_policy_passes_the_neighbours(value: str) -> None:
    assert no_plain_secrets(CONTAINER, {"envs": [f"EXTRA_SETTING={value}"]}, GOOD_OPTS) == []


@pytest.mark.parametrize(
    "command",
    [
        ["sh", "-c", "sshpass -p hunter2 ssh ops@jump"],
        ["app", "--password=hunter2"],
        ["app", "--db-password", "hunter2"],
        ["mysql", "-phunter2"],
        ["app", "--upstream", "http://ops:hunter2@proxy:3128"],
        ["app", "--notify", "https://hooks.slack.com/services/T0/B0/hunter2"],
    ],
)
def test_the_policy_flags_a_credential_on_a_command_line(command: list[str]) -> None:
    found = no_plain_secrets(CONTAINER, {"command": command}, GOOD_OPTS)
    assert len(found) == 1 and found[0].startswith("command line carries ") and "hunter2" not in found[0]


def test_the_policy_passes_the_projects_own_command_lines() -> None:
    vllm = ["python", "-m", "vllm.entrypoints.openai.api_server", "--max-num-batched-tokens", "8192"]
    assert no_plain_secrets(CONTAINER, {"command": vllm}, GOOD_OPTS) == []


PROVIDER = "pulumi:providers:docker"


@pytest.mark.parametrize(
    ("props", "expected"),
    [
        ({"host": "ssh://ops:hunter2@gpu-a.lan"}, ["no-plain-secrets"]),
        ({"host": "ssh://ops@gpu-a.lan", "sshOpts": ["-o", "ProxyCommand=sshpass -p hunter2 ssh bastion"]}, ["no-plain-secrets"]),
        ({"host": "ssh://ops@gpu-a.lan", "sshOpts": ["-p", "2222", "-o", "ProxyCommand=sshpass -e ssh bastion"]}, []),
        ({"host": "unix:///var/run/docker.sock"}, []),
    ],
)  # fmt: skip
def test_the_policy_checks_the_docker_hosts_connection(props: dict[str, Any], expected: list[str]) -> None:
    assert list(violations(PROVIDER, props, Options())) == expected


# --------------------------------------------------------------------------- no traceback on any input


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("vllm.environment", {"HTTPS_PROXY": "http://[::1"}),
        ("vllm.environment", {"X": "http://u:p@[bad"}),
        ("vllm.environment", {"X": "'"}),
        ("vllm.environment", {"X": 5}),
        ("host.ssh_opts", ["-o", '"']),
        ("host.ssh_opts", "sshpass -p x"),
        ("host.docker", "ssh://u:p@"),
    ],
)
def test_odd_values_give_lines_not_tracebacks(key: str, value: Any) -> None:
    try:
        load(set_key(values_of("big-chat"), key, value))
    except StackConfigError as exc:
        assert all(line.startswith("Pulumi.test.yaml: rocm-inference:") for line in exc.lines), exc.lines


# --------------------------------------------------------------------------- the way out: secret environment entries

# `pulumi config set --secret --path 'rocm-inference:vllm.environment.HTTPS_PROXY' http://ops:hunter2@proxy:3128`
SECURE = "        secure: v1:AAAA:aHR0cDovL29wczpodW50ZXIyQHByb3h5OjMxMjg=\n"


def _with_secret_env(tmp_path: Path, stack: str, after: str, block: str) -> Path:
    """A copy of a shipped stack file with `block` written after the line `after`."""
    path = tmp_path / f"Pulumi.{stack}.yaml"
    text = (ROOT / f"Pulumi.{stack}.yaml").read_text()
    assert after in text
    path.write_text(text.replace(after, after + block, 1))
    return path


def big_chat_with_secret_proxy(tmp_path: Path) -> Path:
    return _with_secret_env(
        tmp_path, "big-chat", "    gpu_memory_utilization: 0.9\n", "    environment:\n      HTTPS_PROXY:\n" + SECURE
    )


def test_a_secret_environment_entry_is_masked_in_the_plan_with_its_name_on_a_label(tmp_path: Path) -> None:
    plan = plan_stack(read_stack_file(big_chat_with_secret_proxy(tmp_path)))
    container = plan.by_name("vllm-container")
    assert "HTTPS_PROXY=[secret]" in container.inputs["envs"]
    assert "envs" in container.options["additional_secret_outputs"]
    labels = {lbl["label"]: lbl["value"] for lbl in container.inputs["labels"]}
    assert labels[SECRET_ENV_LABEL] == "HTTPS_PROXY"
    text = json.dumps(plan.as_json())
    assert "placeholder" not in text and "aHR0cDovL29w" not in text
    assert run_pack(plan.resources) == [], "the policy pack trusts the stack's own secret entries"


def test_a_secret_environment_entry_is_an_interpolation_in_the_compose_export(tmp_path: Path) -> None:
    vllm = to_compose(plan_stack(read_stack_file(big_chat_with_secret_proxy(tmp_path))))["services"]["vllm"]
    assert vllm["environment"]["HTTPS_PROXY"] == "${HTTPS_PROXY:?set HTTPS_PROXY (a secret of the stack)}"


def test_a_secret_environment_entry_shows_masked_in_the_markdown_comment(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "components.plan", "--file", str(big_chat_with_secret_proxy(tmp_path)), "--format", "markdown"],
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "placeholder" not in done.stdout and "aHR0cDovL29w" not in done.stdout


def test_secret_entries_of_every_service_in_a_fleet(tmp_path: Path) -> None:
    path = _with_secret_env(
        tmp_path, "fleet", "      port: 8001\n", "      environment:\n        DB_PASSWORD:\n  " + SECURE
    )
    path.write_text(
        path.read_text().replace(
            "    port: 4000\n", "    port: 4000\n    environment:\n      SLACK_WEBHOOK_URL:\n" + SECURE, 1
        )
    )
    plan = plan_stack(read_stack_file(path))
    assert "DB_PASSWORD=[secret]" in plan.by_name("coder-container").inputs["envs"]
    assert "SLACK_WEBHOOK_URL=[secret]" in plan.by_name("gateway-container").inputs["envs"]
    assert not any("DB_PASSWORD" in e for e in plan.by_name("chat-a-container").inputs["envs"])
    assert run_pack(plan.resources) == []


def test_a_secret_environment_entry_reaches_the_container_only_as_a_secret(mocks: PlanMocks, tmp_path: Path) -> None:
    proxy = "http://ops:hunter2@proxy.lan:3128"

    @pulumi.runtime.test
    def run() -> pulumi.Output[Any]:
        written = read_stack_file(big_chat_with_secret_proxy(tmp_path))
        use_stack("big-chat")
        config = pulumi.runtime.config.CONFIG.get()
        vllm = json.loads(config["rocm-inference:vllm"])
        vllm["environment"] = {"HTTPS_PROXY": proxy}  # what the engine hands over, decrypted
        pulumi.runtime.set_all_config(
            {**config, "rocm-inference:vllm": json.dumps(vllm)},
            [*pulumi.runtime.config.get_config_secret_keys_env(), "rocm-inference:vllm"],
        )
        loaded, secrets = load_from_pulumi(written.path, (), written)
        assert loaded.settings.servers["vllm"].environment == {}
        assert loaded.settings.has_secret("servers.vllm.environment.HTTPS_PROXY")
        outputs = deploy(loaded, secrets, "rocm-inference", "big-chat")
        return pulumi.Output.all(*outputs.values()).apply(check)

    def check(_: Any) -> None:
        envs = inputs_of(mocks, ":Container", "vllm-container")["envs"]
        assert f"HTTPS_PROXY={proxy}" in envs["value"]
        for (typ, name), inputs in mocks.inputs.items():
            assert "hunter2" not in json.dumps(_unwrapped(inputs)), f"{typ} {name} holds the password in plain text"

    run()


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("HF_TOKEN", "which this project sets itself (from the GPUs and secrets of the stack)"),
        ("VLLM_API_KEY", "which this project sets itself (from the GPUs and secrets of the stack)"),
        ("HIP_VISIBLE_DEVICES", "which this project sets itself (from the GPUs and secrets of the stack)"),
        ("MY-VAR", "which is not an environment variable name"),
    ],
)
def test_a_secret_environment_entry_names_a_variable_the_project_does_not_set(name: str, problem: str) -> None:
    found = errors(values_of("big-chat"), (f"servers.vllm.environment.{name}",))
    assert found == [f"Pulumi.test.yaml: rocm-inference:vllm.environment has {name!r}, {problem}"]


def test_a_secret_environment_entry_with_a_secret_name_passes() -> None:
    assert errors(values_of("big-chat"), ("servers.vllm.environment.DB_PASSWORD",)) == []


def test_a_refused_value_stops_the_plan_in_every_format_without_printing_it(tmp_path: Path) -> None:
    plain = "    environment:\n      HTTPS_PROXY: http://ops:hunter2@proxy:3128\n"
    path = _with_secret_env(tmp_path, "big-chat", "    gpu_memory_utilization: 0.9\n", plain)
    for fmt in ("text", "json", "markdown", "compose"):
        done = subprocess.run(
            [sys.executable, "-m", "components.plan", "--file", str(path), "--format", fmt],
            cwd=ROOT, capture_output=True, text=True,
        )  # fmt: skip
        assert done.returncode == 1 and "Traceback" not in done.stderr, fmt
        assert "hunter2" not in done.stdout + done.stderr
        assert "pulumi config set --secret --path 'rocm-inference:vllm.environment.HTTPS_PROXY' VALUE" in done.stderr


def test_the_schema_takes_a_secret_environment_entry() -> None:
    doc = yaml.safe_load((ROOT / "Pulumi.big-chat.yaml").read_text())
    doc["config"]["rocm-inference:vllm"]["environment"] = {"HTTPS_PROXY": {"secure": "v1:AAAA"}, "A": "1"}
    jsonschema.validate(doc, json.loads(SCHEMA_FILE.read_text()))


# Text that reaches the URL, query and command-line readers: schemes, userinfo, quotes, brackets, flags.
_ODD = st.lists(st.sampled_from([*"ab:/@?&=%[]'\"$-p ", "sshpass", "http://", "--password", "-p"])).map("".join)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.text(max_size=12), value=_ODD, opts=st.lists(_ODD, max_size=3), docker=_ODD)
def test_any_value_gives_lines_or_a_stack_never_a_traceback(
    name: str, value: str, opts: list[str], docker: str
) -> None:
    values = set_key(values_of("big-chat"), "vllm.environment", {name: value})
    values = set_key(values, "host.ssh_opts", opts)
    for candidate in (values, set_key(values, "host.docker", "ssh://" + docker)):
        try:
            load(candidate)
        except StackConfigError as exc:
            assert all("Traceback" not in line for line in exc.lines)
