"""Secrets in new shapes (issue 27, items 1, 2, 13 and 20): known by their shape in the one rule
(components/planning/secrets.py) wherever a value reaches a container, refused naming the key, the kind of
secret and the way out, and never printed, by the settings check, the plan or the policy pack. Switches whose
names hold a secret word (Open WebUI's) pass when their values are plainly booleans, numbers or paths."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.planning.secrets import credential_in_value, plainly_a_switch, secret_in_environment
from components.tools.plan import main
from rules import CONTAINER, Options, no_plain_secrets
from tests.conftest import ROOT
from tests.stacks import errors, set_key, values_of

GOOD_OPTS = Options(delete_before_replace=True, additional_secret_outputs=("envs",))
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJvcHMiLCJ4IjoiUXdlcnR5OTg3In0.Zm9yZ2VkU2lnbmF0dXJlMTIz"
PEM = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAQwerty987\n-----END OPENSSH PRIVATE KEY-----\n"

# (shape, value, the secret in it, what the refusal says it holds). Each secret is distinct, so that a
# message that prints any 8 characters of it is caught.
SHAPES: list[tuple[str, str, str, str]] = [
    # HTTP headers (OpenTelemetry's OTEL_EXPORTER_OTLP_HEADERS: `k=v,k2=v2`, values URL-encoded)
    ("otel basic", "Authorization=Basic%20b3BzOlF3ZXJ0eTk4N0Fh", "b3BzOlF3ZXJ0eTk4N0Fh", "an HTTP Authorization header's credentials (Basic ...)"),
    ("otel bearer in a list", "x-team=ops,Authorization=Bearer%20Qw3rtyTok3nAbCd", "Qw3rtyTok3nAbCd", "an HTTP Authorization header's credentials (Bearer ...)"),
    ("bearer header", "Bearer Zx9TokenValueQq", "Zx9TokenValueQq", "an HTTP Authorization header's credentials (Bearer ...)"),
    ("otel api-key pair", "api-key=Pl41nK3yValue,other=1", "Pl41nK3yValue", "a secret in a name=value list (api-key=)"),
    ("datadog header", "DD-API-KEY=Dd4pik3yValue", "Dd4pik3yValue", "a secret in a name=value list (DD-API-KEY=)"),
    # JWTs, bare and inside JSON
    ("jwt", JWT, JWT, "a JSON Web Token (JWT)"),
    ("jwt in json", '{"headers": {"Authorization": "Bearer ' + JWT + '"}}', JWT, "a JSON Web Token (JWT)"),
    ("key in json", '[{"url": "http://tools:8000", "key": "J50nK3yValue9", "auth_type": "bearer"}]', "J50nK3yValue9", "a secret in a JSON object (key=)"),
    # query credentials
    ("?auth=", "https://feed.example.com/v1?auth=Au7hQueryVal", "Au7hQueryVal", "a secret in a URL's query (auth=)"),
    ("a SAS query alone", "sv=2022-11-02&se=2026&sp=r&sig=S1gQueryVal9", "S1gQueryVal9", "a secret in a URL's query (sig=)"),
    ("?code= (Azure Functions)", "https://f.azurewebsites.net/api/x?code=C0deQueryVal", "C0deQueryVal", "a secret in a URL's query (code=)"),
    ("?key= without a scheme", "proxy.lan:3128/feed?key=K3yQueryVal", "K3yQueryVal", "a secret in a URL's query (key=)"),
    # user:password@host with no scheme
    ("proxy userinfo, no scheme", "ops:Pr0xyPassw0rd@proxy.lan:3128", "Pr0xyPassw0rd", "a password before a host (user:password@host)"),
    ("userinfo to an IP", "ops:IpPassw0rd9@10.0.0.5", "IpPassw0rd9", "a password before a host (user:password@host)"),
    # connection strings
    ("azure storage", "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=QXp1cmVLZXlWYWx1ZTk=;EndpointSuffix=core.windows.net", "QXp1cmVLZXlWYWx1ZTk=", "a secret in a connection string (AccountKey=)"),
    ("sql server", "Server=db;Database=app;User Id=ops;Password=Sq1Passw0rd;", "Sq1Passw0rd", "a secret in a connection string (Password=)"),
    ("odbc Pwd=", "Driver={ODBC};Server=db;Uid=ops;Pwd=0dbcPassw0rd;", "0dbcPassw0rd", "a secret in a connection string (Pwd=)"),
    ("service bus SAS", "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessSignature=SharedAccessSignature sr=x&sig=Sa5Sg9xQw7Zt&se=1", "Sa5Sg9xQw7Zt", "a secret in a connection string (SharedAccessSignature=)"),
    # private keys
    ("openssh private key", PEM, "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAQwerty987", "a private key (PEM or OpenSSH)"),
    ("rsa private key", "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEArsaQwerty987\n-----END RSA PRIVATE KEY-----", "MIIEowIBAAKCAQEArsaQwerty987", "a private key (PEM or OpenSSH)"),
    ("pkcs8 private key", "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANpkcs8Qwerty987\n-----END PRIVATE KEY-----", "MIIEvQIBADANpkcs8Qwerty987", "a private key (PEM or OpenSSH)"),
    # tokens by their prefix
    ("hugging face", "hf_Hf7okenAbCdEfGhIjKl", "hf_Hf7okenAbCdEfGhIjKl", "a Hugging Face token (by its prefix)"),
    ("github classic", "ghp_Gh7okenAbCdEfGhIjKlMnOpQrStUvWx01", "ghp_Gh7okenAbCdEfGhIjKlMnOpQrStUvWx01", "a GitHub token (by its prefix)"),
    ("github app", "ghs_Gs7okenAbCdEfGhIjKlMnOpQrStUvWx01", "ghs_Gs7okenAbCdEfGhIjKlMnOpQrStUvWx01", "a GitHub token (by its prefix)"),
    ("github fine-grained", "github_pat_11AAAAAAA0Fg7okenAbCdEfGhIjKlMn", "github_pat_11AAAAAAA0Fg7okenAbCdEfGhIjKlMn", "a GitHub token (by its prefix)"),
    ("openai project", "sk-proj-Op7okenAbCdEfGhIjKlMn01", "sk-proj-Op7okenAbCdEfGhIjKlMn01", "an OpenAI-style API key (by its prefix)"),
    ("anthropic", "sk-ant-api03-An7okenAbCdEfGhIjKl", "sk-ant-api03-An7okenAbCdEfGhIjKl", "an Anthropic API key (by its prefix)"),
    ("slack bot", "xoxb-1234567890-Sl7okenAbCd", "xoxb-1234567890-Sl7okenAbCd", "a Slack token (by its prefix)"),
    ("aws key id", "AKIAQWERTY987ABCDEFG", "AKIAQWERTY987ABCDEFG", "an AWS access key id (by its prefix)"),
    ("aws session key id", "ASIAQWERTY987ABCDEFG", "ASIAQWERTY987ABCDEFG", "an AWS access key id (by its prefix)"),
    ("gitlab", "glpat-Gl7okenAbCdEfGhIjKl", "glpat-Gl7okenAbCdEfGhIjKl", "a GitLab token (by its prefix)"),
    ("google api key", "AIzaSyGo7okenAbCdEfGhIjKlMnOpQrStUvWxYz", "AIzaSyGo7okenAbCdEfGhIjKlMnOpQrStUvWxYz", "a Google API key (by its prefix)"),
    ("docker hub", "dckr_pat_Dk7okenAbCdEfGhIjKlMn", "dckr_pat_Dk7okenAbCdEfGhIjKlMn", "a Docker Hub token (by its prefix)"),
    ("token after a word", "--token=hf_Hf8okenAbCdEfGhIjKl", "hf_Hf8okenAbCdEfGhIjKl", "a Hugging Face token (by its prefix)"),
]  # fmt: skip
# Legitimate values beside them that must pass: a lone scheme word, placeholders, Hub ids and paths that
# contain a prefix, image references with a digest, SSH and e-mail addresses, switches, lists without secrets.
NEIGHBOURS = [
    "Bearer", "Bearer ${OTEL_TOKEN}", "Basic realm", "bearer", "Token authentication",
    "Qwen/Qwen2.5-7B-Instruct", "org/sk-learn-models-large", "https://huggingface.co/sk-proj/model",
    "ghcr.io/open-webui/open-webui:v0.12.4@sha256:" + "a" * 64, "vllm:v1@sha256:" + "b" * 64,
    "git@github.com:org/repo.git", "ops@gpu-a.lan", "admin@localhost", "user@host:2222",
    "service.name=vllm,deployment.environment=prod", "x-team=ops,x-region=eu", "token=true", "key=",
    "HostKeyAlgorithms=+ssh-rsa", "SharedAccessKeyName=RootManageSharedAccessKey", "12:30:45",
    '{"auth_type": "bearer", "key": ""}', "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl",
    "Server=db;Database=app;Trusted_Connection=yes;", "http://ops:${PROXY_PASSWORD}@proxy:3128",
    "ops:$PROXY_PASSWORD@proxy:3128", "search_document: ", "2026-01-05 00:00:00 +0000 UTC",
]  # fmt: skip


@pytest.mark.parametrize(("shape", "value", "secret", "what"), SHAPES, ids=[s[0] for s in SHAPES])
def test_1_a_secret_is_known_by_its_shape(shape: str, value: str, secret: str, what: str) -> None:
    assert credential_in_value(value) == what


@pytest.mark.parametrize(("shape", "value", "secret", "what"), SHAPES, ids=[s[0] for s in SHAPES])
def test_1_a_secret_shape_under_a_harmless_name_is_refused_with_the_way_out(
    shape: str, value: str, secret: str, what: str
) -> None:
    found = errors(set_key(values_of("big-chat"), "vllm.environment", {"OTEL_EXPORTER_OTLP_HEADERS": value}))
    key = "rocm-inference:vllm.environment"
    assert found == [
        f"Pulumi.test.yaml: {key} has 'OTEL_EXPORTER_OTLP_HEADERS' with a value that looks like a secret, {what}: in "
        "plain text it would show in the plan, the compose export and `docker inspect`; make it a secret entry: "
        f"pulumi config set --secret --path '{key}.OTEL_EXPORTER_OTLP_HEADERS' VALUE (see README, Secrets)"
    ]


@pytest.mark.parametrize(("shape", "value", "secret", "what"), SHAPES, ids=[s[0] for s in SHAPES])
def test_1_the_policy_pack_flags_the_same_shapes(shape: str, value: str, secret: str, what: str) -> None:
    assert no_plain_secrets(CONTAINER, {"envs": [f"OTEL_EXPORTER_OTLP_HEADERS={value}"]}, GOOD_OPTS) == [
        "environment variable OTEL_EXPORTER_OTLP_HEADERS looks like a secret in plain configuration: set it with "
        "`pulumi config set --secret --path '<service>.environment.OTEL_EXPORTER_OTLP_HEADERS'`"
    ]


@pytest.mark.parametrize("value", NEIGHBOURS)
def test_1_legitimate_neighbours_pass(value: str) -> None:
    assert credential_in_value(value) is None
    assert errors(set_key(values_of("big-chat"), "vllm.environment", {"EXTRA_SETTING": value})) == []
    assert no_plain_secrets(CONTAINER, {"envs": [f"EXTRA_SETTING={value}"]}, GOOD_OPTS) == []


# --------------------------------------------------------------------------- no refusal prints a secret


def _fragments(secret: str, size: int = 8) -> set[str]:
    return {secret[i : i + size] for i in range(max(1, len(secret) - size + 1))}


def _assert_not_printed(secret: str, text: str) -> None:
    leaked = sorted(f for f in _fragments(secret) if f in text)
    assert not leaked, f"printed {leaked[:3]}"


def _stack_text(change: Any) -> str:
    doc = yaml.safe_load((ROOT / "Pulumi.big-chat.yaml").read_text())
    change(doc["config"])
    return yaml.safe_dump(doc, sort_keys=False)


def _plan(tmp_path: Path, text: str, capsys: pytest.CaptureFixture[str], fmt: str = "text") -> str:
    path = tmp_path / "Pulumi.mine.yaml"
    path.write_text(text)
    code = main(["--file", str(path), "--format", fmt])
    out = capsys.readouterr()
    assert code == 1, out.out
    return out.out + out.err


@pytest.mark.parametrize(("shape", "value", "secret", "what"), SHAPES, ids=[s[0] for s in SHAPES])
def test_no_refusal_or_warning_prints_a_secret(
    shape: str, value: str, secret: str, what: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    big = values_of("big-chat")
    texts: list[str] = []
    # the settings check: an environment entry, free-text and patterned fields, the host key, a nested key;
    # refused or not, none of their lines shows it
    for key, given in [
        ("vllm.environment", {"OTEL_EXPORTER_OTLP_HEADERS": value}),
        ("chat_ui.environment", {"WEBUI_BANNER": value}),
        ("vllm.served_model_name", value),
        ("vllm.model", value),
        ("vllm.image", value),
        ("host.address", value),
        ("host.docker", value),
        ("host.ssh_host_key", value),
        ("host.ssh_opts", ["-o", f"ProxyCommand={value}"]),
        ("embeddings.api_key", value),
        ("monitoring.retention", value),
        ("chat_ui.admin_email", value),
    ]:
        texts += errors(set_key(big, key, given))
    # the policy pack: in an env list and on a command line
    texts += no_plain_secrets(CONTAINER, {"envs": [f"X={value}"], "command": ["app", value]}, GOOD_OPTS)
    # the plan, from a stack file: plain in an environment, and written as `secure:` by hand
    texts.append(
        _plan(tmp_path, _stack_text(lambda c: c["rocm-inference:vllm"].update(environment={"X": value})), capsys)
    )
    for fmt in ("json", "markdown"):
        texts.append(
            _plan(
                tmp_path, _stack_text(lambda c: c.update({"rocm-inference:hf_token": {"secure": value}})), capsys, fmt
            )
        )
    for text in texts:
        _assert_not_printed(secret, text)


# --------------------------------------------------------------------------- 2. `secure:` written by hand

# `pulumi config set --secret`'s ciphertext: the passphrase and KMS providers' v1:NONCE:CIPHERTEXT, and the
# Pulumi Cloud's base64.
CIPHERTEXTS = [
    "v1:AAAAAAAAAAAAAAAA:aHR0cDovL29wczpodW50ZXIyQHByb3h5OjMxMjg=",
    "v1:Lk9TqhTbAS0PHSnb:X4yPEKGSfNQFrnZnJq3wrM1P2cZ8TfBVX0vvkOj/ng==",
    base64.b64encode(bytes(range(40))).decode(),
]
HANDWRITTEN = [
    ("a token", "hf_Hf7okenAbCdEfGhIjKl"),
    ("a password", "Qwerty987"),
    ("hex from openssl rand", "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822c"),
    ("a URL with a password", "http://ops:Pr0xyPassw0rd@proxy:3128"),
    ("v1 with nothing after it", "v1:"),
    ("a number", 123456),
]


@pytest.mark.parametrize(
    ("key", "path"),
    [
        ("rocm-inference:hf_token", "hf_token"),
        ("rocm-inference:vllm_api_key", "vllm_api_key"),
    ],
)
@pytest.mark.parametrize(("case", "text"), HANDWRITTEN, ids=[h[0] for h in HANDWRITTEN])
def test_2_a_handwritten_secure_value_is_refused_with_how_to_set_it(
    key: str, path: str, case: str, text: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = _plan(tmp_path, _stack_text(lambda c: c.update({key: {"secure": text}})), capsys)
    assert (
        f"Pulumi.mine.yaml: rocm-inference:{path} is written as `secure:` by hand, but what it holds is not Pulumi's "
        "ciphertext (v1:... from `pulumi config set --secret`): it is the secret itself, in plain text in the stack "
        "file and in git, and `pulumi up` cannot decrypt it; remove the entry and set it with "
        f"`pulumi config set --secret rocm-inference:{path} ...` (and replace the secret if the file was shared or "
        "committed)"
    ) in out
    if isinstance(text, str) and len(text) > 8:
        _assert_not_printed(text, out)


@pytest.mark.parametrize(("case", "text"), HANDWRITTEN[:4], ids=[h[0] for h in HANDWRITTEN[:4]])
def test_2_a_handwritten_nested_secure_value_names_its_path(
    case: str, text: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = _plan(
        tmp_path,
        _stack_text(lambda c: c["rocm-inference:vllm"].update(environment={"HTTPS_PROXY": {"secure": text}})),
        capsys,
    )
    assert (
        "Pulumi.mine.yaml: rocm-inference:vllm.environment.HTTPS_PROXY is written as `secure:` by hand, but what it "
        "holds is not Pulumi's ciphertext"
    ) in out
    assert "`pulumi config set --secret --path 'rocm-inference:vllm.environment.HTTPS_PROXY' ...`" in out
    _assert_not_printed(text, out)


@pytest.mark.parametrize("ciphertext", CIPHERTEXTS)
def test_2_pulumi_ciphertexts_pass(ciphertext: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "Pulumi.mine.yaml"
    path.write_text(_stack_text(lambda c: c.update({"rocm-inference:hf_token": {"secure": ciphertext}})))
    assert main(["--file", str(path)]) == 0, capsys.readouterr().err


# --------------------------------------------------------------------------- 13. switches with a secret word

# Open WebUI 0.12.4's own switches (open_webui/config.py L2543-L2580, env.py L304, L640, L762, L822, L889, L908)
SWITCHES = [
    ("ENABLE_API_KEYS", "true"),
    ("ENABLE_API_KEY_ENDPOINT_RESTRICTIONS", "True"),
    ("API_KEY_ALLOWED_ENDPOINTS", "/api/v1/messages,/api/v1/channels"),
    ("API_KEY_ALLOWED_ENDPOINTS", "/api/v1/messages, /api/chat/completions"),
    ("OAUTH_REFRESH_TOKEN_INCLUDE_SCOPE", "False"),
    ("ENABLE_OAUTH_ID_TOKEN_COOKIE", "false"),
    ("DATABASE_ENABLE_IAM_TOKEN_AUTH", "no"),
    ("ENABLE_SIGNUP_PASSWORD_CONFIRMATION", "on"),
    ("ENABLE_PASSWORD_VALIDATION", "1"),
    ("OAUTH_TOKEN_EXCHANGE_RATE_LIMIT_WINDOW", "180"),
    ("SEARXNG_CLIENT_KEY_FILE", "/run/secrets/searxng.key"),
    ("PASSWORD_MIN_LENGTH", "0.5"),
]
# Their neighbours that stay secrets: a secret word in the name and a value that is none of those.
STILL_SECRETS = [
    ("OAUTH_CLIENT_SECRET", "Qwerty987"),
    ("LDAP_APP_PASSWORD", "correct horse"),
    ("DB_PASSWORD", "123456789"),  # a long digit run: a PIN, not a switch
    ("API_KEY_ALLOWED_ENDPOINTS", "api/v1/messages"),
    ("REDIS_PASSWORD", "truefalse"),
]


@pytest.mark.parametrize(("name", "value"), SWITCHES)
def test_13_open_webui_switches_with_a_secret_word_pass(name: str, value: str) -> None:
    assert plainly_a_switch(value)
    assert secret_in_environment(name, value) is None
    assert errors(set_key(values_of("big-chat"), "chat_ui.environment", {name: value})) == []
    assert no_plain_secrets(CONTAINER, {"envs": [f"{name}={value}"]}, GOOD_OPTS) == []


@pytest.mark.parametrize(("name", "value"), STILL_SECRETS)
def test_13_a_secret_name_with_a_value_that_is_no_switch_is_still_refused(name: str, value: str) -> None:
    found = errors(set_key(values_of("big-chat"), "chat_ui.environment", {name: value}))
    assert found == [
        f"Pulumi.test.yaml: rocm-inference:chat_ui.environment has {name!r} with a name that says it is a secret: in "
        "plain text it would show in the plan, the compose export and `docker inspect`; make it a secret entry: "
        f"pulumi config set --secret --path 'rocm-inference:chat_ui.environment.{name}' VALUE (see README, Secrets)"
    ]


# --------------------------------------------------------------------------- 20. a private key as the host key

PRIVATE_KEYS = [
    PEM,
    "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEArsaQwerty987\n-----END RSA PRIVATE KEY-----",
    "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIEcQwerty987\n-----END EC PRIVATE KEY-----",
    "PuTTY-User-Key-File-3: ssh-ed25519\nEncryption: none\nPrivate-Lines: 1\nAAAAIPuttyQwerty987",
    "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAbareQwerty987",
]


@pytest.mark.parametrize("key", PRIVATE_KEYS)
def test_20_a_private_key_pasted_as_the_host_key_is_refused_without_printing_it(key: str) -> None:
    found = errors(set_key(values_of("fleet"), "hosts.gpu-a.ssh_host_key", key), ("gateway_api_key",))
    assert found == [
        "Pulumi.test.yaml: rocm-inference:hosts.gpu-a.ssh_host_key holds a private key (PEM or OpenSSH), not a host's "
        "public key: the host key is the server's public key as known_hosts holds it (`ssh-ed25519 AAAA...`, which "
        "python -m components.discover --ssh records, or `ssh-keyscan HOST`); the key you log in with goes into the "
        "secret rocm-inference:ssh_private_key (pulumi config set --secret rocm-inference:ssh_private_key < KEYFILE). "
        "What was pasted here is in plain text in the stack file: remove it, and replace that key if the file was "
        "shared or committed"
    ]
    _assert_not_printed(key.splitlines()[-1 if "PuTTY" in key or "\n" not in key else 1], found[0])


@pytest.mark.parametrize(
    "host_key",
    [
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl",
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl ops@gpu-a",
        "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBEmKSENjQEezOmxkZMy7opKgwFB9nkt5YRrYMjNuG5N87uRgg6CLrbo5wAdT/y6v0mKV0U2w0WZ2YB/++Tpockg=",
    ],
)
def test_20_public_host_keys_pass(host_key: str) -> None:
    assert errors(set_key(values_of("fleet"), "hosts.gpu-a.ssh_host_key", host_key), ("gateway_api_key",)) == []
