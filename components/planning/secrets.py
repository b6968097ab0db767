"""What looks like a secret: the one secret-detection rule, pure, shared by
the stack validation (components/settings), and so the plan, the compose export and the PR comment, and
by the CrossGuard policy pack (policy/rules.py), so all judge alike.

A secret shows by its name (`DB_PASSWORD`, `APIKEY`), or by the value's shape whatever its name says:
a token by its well-known prefix (`hf_`, `ghp_`, `sk-`, `AKIA`...), a JSON Web Token, a PEM private key, an
HTTP Authorization header's credentials (`Basic ...`, `Bearer ...`), a long random string, a password in a
URL (`scheme://user:password@host`, or `user:password@host` with no scheme), a webhook URL whose path is
the secret (Slack, Discord, Teams...), a secret query parameter (`?token=`, `&sig=`, `?auth=`), a secret in
a `name=value` list (OpenTelemetry's `*_HEADERS`, a connection string's `AccountKey=`, `Password=`,
`SharedAccessSignature=`), or a password on a command line (`sshpass -p`, `--password=`, `mysql -pPASSWORD`).
A value that names a variable instead (`$NAME`, `${NAME}`) holds no secret, a file path is where a secret
is, not one, and a plain boolean, number or list of paths is a switch whatever its name says
(Open WebUI's `ENABLE_API_KEY: "true"`, `API_KEY_ALLOWED_ENDPOINTS: /api/v1/models,/api/chat/completions`).
"""

from __future__ import annotations

import math
import re
import shlex
from collections import Counter
from collections.abc import Iterable, Sequence
from urllib.parse import parse_qsl, unquote, urlsplit

# Tokens by their well-known prefix: (what, pattern of the whole token). A token starts a value or follows a
# character that is neither a letter, a digit nor `/` (a path or a Hub id `org/name` holds none).
_TOKEN_KINDS: tuple[tuple[str, str], ...] = (
    ("a Hugging Face token", r"(hf_|api_org_)[A-Za-z0-9]{16,}"),
    ("a GitHub token", r"(gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,})"),
    ("a GitLab token", r"(glpat|gldt|glptt|glrt|glsoat)-[A-Za-z0-9_-]{16,}"),
    ("an Anthropic API key", r"sk-ant-[A-Za-z0-9_-]{16,}"),
    ("an OpenAI-style API key", r"sk-(proj-|svcacct-|or-v1-)?[A-Za-z0-9_-]{16,}"),
    ("a Slack token", r"(xox[abposr]|xapp)-[A-Za-z0-9-]{10,}"),
    ("an AWS access key id", r"(AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}"),
    ("a Google API key", r"AIza[0-9A-Za-z_-]{35}"),
    ("a Google OAuth token", r"ya29\.[0-9A-Za-z_-]{20,}"),
    ("a Docker Hub token", r"dckr_pat_[A-Za-z0-9_-]{20,}"),
    ("an npm token", r"npm_[A-Za-z0-9]{36}"),
    ("a PyPI token", r"pypi-AgE[A-Za-z0-9_-]{20,}"),
    ("a Groq API key", r"gsk_[A-Za-z0-9]{20,}"),
    ("an NVIDIA API key", r"nvapi-[A-Za-z0-9_-]{20,}"),
    ("a Replicate token", r"r8_[A-Za-z0-9]{20,}"),
    ("a Perplexity API key", r"pplx-[A-Za-z0-9]{20,}"),
    ("an xAI API key", r"xai-[A-Za-z0-9]{20,}"),
    ("a Stripe key", r"(sk|rk)_(live|test)_[A-Za-z0-9]{16,}"),
    ("a SendGrid API key", r"SG\.[A-Za-z0-9_-]{16,}\.[A-Za-z0-9_-]{16,}"),
    ("a HashiCorp Vault token", r"hv[sb]\.[A-Za-z0-9_-]{20,}"),
    ("a DigitalOcean token", r"do[por]_v1_[a-f0-9]{64}"),
    ("a Tailscale key", r"tskey-[a-z]+-[A-Za-z0-9_-]{16,}"),
    ("an age secret key", r"AGE-SECRET-KEY-1[0-9A-Z]{20,}"),
)
_TOKENS = [(what, re.compile(r"(?:^|[^A-Za-z0-9/])(" + pattern + r")")) for what, pattern in _TOKEN_KINDS]
# One pattern for all of them (the policy pack and a message's redaction look for any).
SECRET_PREFIX = re.compile(r"(^|[^A-Za-z0-9/])(" + "|".join(p for _, p in _TOKEN_KINDS) + ")")
# A JSON Web Token: base64url of `{"` (header) . base64url of `{"` (claims) . signature (RFC 7519, RFC 7515).
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*")
# A private key in PEM (RFC 7468: PKCS#1, PKCS#8, SEC1, OpenSSH), PuTTY's format, or an OpenSSH key's body
# pasted without its armour (base64 of `openssh-key-v1\0`).
_PRIVATE_KEY = re.compile(
    r"-----BEGIN ([A-Z0-9]+ )*PRIVATE KEY( BLOCK)?-----|PuTTY-User-Key-File-\d|b3BlbnNzaC1rZXktdjEA"
)
# An HTTP Authorization header's credentials (RFC 7617 Basic, RFC 6750 Bearer and its b64token), also
# URL-encoded (`Basic%20...`, as OpenTelemetry's OTEL_EXPORTER_OTLP_HEADERS are written).
_AUTH_HEADER = re.compile(
    r"(?:^|[^A-Za-z0-9])(Basic|Bearer|Token|Digest)(?:\s+|%20|\+)([A-Za-z0-9._~+/-]{8,}=*)", re.IGNORECASE
)
# `user:password@host` with no scheme (a proxy or DSN written the way curl and many clients take it).
_BARE_USERINFO = re.compile(
    r"(?:^|[\s,;=(\[])([^\s:/@,;=]+):([^\s/@,;]+)@(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9][A-Za-z0-9.-]*)"
)
# `name=value` pairs in a list: a query, OpenTelemetry's `k=v,k2=v2`, a connection string's `K=V;K2=V2`, a
# JSON object's `"name": "value"`.
_PAIR = re.compile(r"(^|[\s,;&?{(])([A-Za-z][A-Za-z0-9_.-]*)\s*=\s*([^\s,;&]*)")
_JSON_PAIR = re.compile(r'"([A-Za-z][A-Za-z0-9_.-]*)"\s*:\s*"([^"]*)"')
# Names that hold a secret only as a pair or query (a connection string's `Pwd=`, a URL's `?auth=`), besides
# the names read by their parts: as an environment variable's name they are something else (SSH_AUTH_SOCK).
_PAIR_SECRET_NAMES = frozenset({"AUTH", "PWD", "PW", "SAS"})
_TOKEN_CHARS = re.compile(r"^[A-Za-z0-9_+=.-]+$")
_HEX = re.compile(r"^[0-9a-fA-F]+$")
HIGH_ENTROPY_MIN_LENGTH = 32
HIGH_ENTROPY_BITS = 4.0

# A name is read by its parts (split on `_`, `-`, `.`, digits and case changes), never by substring:
# a part that ends with one of these words (`KEY`, `APIKEY`, `DBPASSWORD`), or is one of the exact
# parts. Not `TOKENS`: that counts model tokens (MAX_TOKENS); nor `KEYBOARD`, `TOKENIZERS`, `PASSWORDLESS`.
_SECRET_ENDINGS = ("PASSWORD", "PASSWORDS", "PASSWD", "SECRET", "SECRETS", "TOKEN", "KEY", "KEYS")
_SECRET_PARTS = frozenset({"PASS", "SIG", "SIGNATURE"})
_NAME_PARTS = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+")

# The environment variables this project fills from Pulumi secrets itself.
PROJECT_SECRET_ENV = re.compile(
    r"^(HF_TOKEN|VLLM_API_KEY|INFINITY_API_KEY|LITELLM_MASTER_KEY|BACKEND_KEY_[A-Z0-9_]+|GF_SECURITY_ADMIN_PASSWORD"
    r"|WEBUI_ADMIN_PASSWORD|WEBUI_SECRET_KEY|OPENAI_API_KEYS|RAG_OPENAI_API_KEY)$"
)
# A container label naming the stack's own secret environment entries (`environment` values written
# with `pulumi config set --secret --path`): the policy pack trusts those names in a secret env list.
SECRET_ENV_LABEL = "rocm-inference.secret-env"

# A value that names a variable instead of holding the secret: `$NAME` or `${NAME}` (no `${NAME:-default}`).
_PLACEHOLDER = re.compile(r"^\$(\{[A-Za-z_][A-Za-z0-9_]*\}|[A-Za-z_][A-Za-z0-9_]*)$")
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s\"'<>]+")
_USERINFO = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://([^/?#@]*):([^/?#@]*)@")
# Incoming webhooks whose URL path is the secret, by service: (what, host pattern, path pattern).
_WEBHOOKS: tuple[tuple[str, str, str], ...] = (
    ("a Slack webhook URL", r"hooks\.slack\.com", r"^/(services|workflows|triggers)/."),
    ("a Discord webhook URL", r"((ptb|canary)\.)?discord(app)?\.com", r"^/api/(v\d+/)?webhooks/."),
    ("a Microsoft Teams webhook URL", r"[\w-]+\.webhook\.office\.com", r"^/webhook"),
    ("a Microsoft Teams webhook URL", r"outlook\.office(365)?\.com", r"^/webhook"),
    ("a Telegram bot URL", r"api\.telegram\.org", r"^/(file/)?bot[^/]+:."),
    ("a Zapier webhook URL", r"hooks\.zapier\.com", r"^/hooks/."),
    ("an IFTTT webhook URL", r"maker\.ifttt\.com", r"/(key|use)/."),
)
# Any other service's webhook (Mattermost, Rocket.Chat, Gitea...): a token-like segment after `hooks`.
_HOOK_SEGMENT = re.compile(
    r"/(hooks|webhooks?|webhookb2)/([^?#]*/)?(?=[A-Za-z0-9_-]*[0-9])(?=[A-Za-z0-9_-]*[A-Za-z])[A-Za-z0-9_-]{16,}"
)
# Programs that take a password in a short option: option, whether only its attached form counts
# (a lone `mysql -p` prompts), whether the value is `user:password` (`curl -u user` prompts).
_PASSWORD_OPTIONS: dict[str, tuple[str, bool, bool]] = {
    "sshpass": ("-p", False, False),
    "redis-cli": ("-a", False, False),
    "mysql": ("-p", True, False),
    "mysqldump": ("-p", True, False),
    "mysqladmin": ("-p", True, False),
    "mariadb": ("-p", True, False),
    "curl": ("-u", False, True),
}


def entropy_bits(text: str) -> float:
    """Shannon entropy per character."""
    counts = Counter(text)
    return -sum(n / len(text) * math.log2(n / len(text)) for n in counts.values())


def token_kind(value: str) -> str | None:
    """What well-known token the value holds (by its prefix), or None."""
    for what, pattern in _TOKENS:
        if pattern.search(value):
            return what
    return None


def looks_like_secret_value(value: str) -> bool:
    """A token by its prefix, or a long random-looking string (no spaces, no paths, letters and digits)."""
    if SECRET_PREFIX.search(value):
        return True
    token = value.strip()
    if len(token) >= HIGH_ENTROPY_MIN_LENGTH and _HEX.match(token):
        return True  # `openssl rand -hex 24`: hex spends 4 bits a character, below the entropy bar
    return (
        len(token) >= HIGH_ENTROPY_MIN_LENGTH
        and bool(_TOKEN_CHARS.match(token))
        and any(c.isdigit() for c in token)
        and any(c.isalpha() for c in token)
        and entropy_bits(token) >= HIGH_ENTROPY_BITS
    )


# A switch, not a credential: a boolean (YAML's and the environment's spellings), a number, or a path or a
# list of paths (`/api/v1/models,/api/chat/completions`, `/etc/a.pem:/etc/b.pem`).
_BOOLEAN = frozenset({"true", "false", "yes", "no", "on", "off", "y", "n", "enabled", "disabled", "none", "null"})
_NUMBER = re.compile(r"^[+-]?(\d{1,6}(\.\d*)?|\.\d+)([eE][+-]?\d{1,3})?$")  # not a long digit run (a PIN)
_PATHS = re.compile(r"^(?:(?:/|~/|\./|\.\./)[^\s,:;]*)(?:\s*[,:;]\s*(?:(?:/|~/|\./|\.\./)[^\s,:;]*))*$")


def plainly_a_switch(value: str) -> bool:
    """A value that is plainly a boolean, a number or paths: no credential, whatever its name says."""
    text = value.strip()
    return text.lower() in _BOOLEAN or bool(_NUMBER.match(text)) or bool(_PATHS.match(text))


def name_parts(name: str) -> list[str]:
    """`TOKENIZERS_PARALLELISM` -> TOKENIZERS, PARALLELISM; `hfApiKey2` -> HF, API, KEY (upper case)."""
    return [p.upper() for p in _NAME_PARTS.findall(name)]


def looks_like_secret_name(name: str) -> bool:
    return any(p.endswith(_SECRET_ENDINGS) or p in _SECRET_PARTS for p in name_parts(name))


def _held(value: str) -> bool:
    """A value that holds something: neither empty, nor a variable's name, nor a file's path."""
    return bool(value) and not _PLACEHOLDER.match(value) and not value.startswith(("/", "~/", "./", "@"))


def _secret_pair(name: str, value: str) -> bool:
    """`name=value` in a list that gives a secret: the name's last part says so (`AccountKey`, `api-key`,
    `access_token`; not `HostKeyAlgorithms`, `SharedAccessKeyName`), and the value holds one."""
    parts = name_parts(name)
    secret_name = bool(parts) and (parts[-1].endswith(_SECRET_ENDINGS) or parts[-1] in _SECRET_PARTS)
    secret_name = secret_name or name.upper() in _PAIR_SECRET_NAMES
    return secret_name and _held(value) and not plainly_a_switch(value)


def credential_in_url(url: str) -> str | None:
    """What secret a URL carries in itself, or None."""
    userinfo = _USERINFO.match(url)
    if userinfo and _held(userinfo.group(2)):
        return "a password in a URL (user:password@)"
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError:
        return None  # not a URL after all (a bad port or bracket)
    for what, host_pattern, path_pattern in _WEBHOOKS:
        if re.fullmatch(host_pattern, host, re.IGNORECASE) and re.search(path_pattern, parts.path):
            return f"{what} (its path is the secret)"
    if _HOOK_SEGMENT.search(parts.path):
        return "a webhook URL (its path is the secret)"
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if (looks_like_secret_name(name) or _secret_pair(name, value) or name.upper() == "CODE") and (
            _held(value) and not plainly_a_switch(value)
        ):
            return f"a secret in a URL's query ({name}=)"
    return None


def credential_in_command(words: Sequence[str]) -> str | None:
    """What secret a command line carries, or None: `sshpass -p PASSWORD`, `--password=PASSWORD`,
    `--api-key KEY`, `mysql -pPASSWORD`, `curl -u user:password`, `redis-cli -a PASSWORD`."""
    for n, word in enumerate(words):
        following = words[n + 1] if n + 1 < len(words) else ""
        if word.startswith("--") and len(word) > 2:
            flag, eq, given = word.partition("=")
            value = given if eq else ("" if following.startswith("-") else following)
            if looks_like_secret_name(flag) and _held(value):
                return f"a secret on a command line ({flag})"
        program = word.rsplit("=", 1)[-1].rsplit("/", 1)[-1]  # `ProxyCommand=/usr/bin/sshpass`
        if program in _PASSWORD_OPTIONS:
            found = _password_option(program, words[n + 1 :])
            if found:
                return found
    return None


def _password_option(program: str, args: Sequence[str]) -> str | None:
    option, attached_only, userinfo = _PASSWORD_OPTIONS[program]
    for n, arg in enumerate(args):
        if arg == option and not attached_only:
            value = args[n + 1] if n + 1 < len(args) else ""
        elif arg.startswith(option) and len(arg) > len(option) and not arg.startswith("--"):
            value = arg[len(option) :]
        else:
            continue
        if userinfo:
            value = value.partition(":")[2]
        if _held(value):
            return f"a password on a command line ({program} {option})"
    return None


def command_words(texts: Iterable[str]) -> list[str]:
    """The words of one command line written as strings (`ssh_opts`, a ProxyCommand, an env value)."""
    words: list[str] = []
    for text in texts:
        try:
            words += shlex.split(text)
        except ValueError:  # an unbalanced quote: read it as plain words
            words += text.split()
    return words


def credential_in_value(value: str) -> str | None:
    """What secret a value carries by its shape, whatever its name says, or None."""
    if _PRIVATE_KEY.search(value):
        return "a private key (PEM or OpenSSH)"
    if _JWT.search(value):
        return "a JSON Web Token (JWT)"
    kind = token_kind(value)
    if kind:
        return f"{kind} (by its prefix)"
    if looks_like_secret_value(value):
        return "a token or a long random string"
    decoded = unquote(value) if "%" in value else value
    header = _AUTH_HEADER.search(decoded)
    if header and _credentials(header.group(2)):
        return f"an HTTP Authorization header's credentials ({header.group(1).capitalize()} ...)"
    for url in _URL.findall(value):
        found = credential_in_url(url)
        if found:
            return found
    found = credential_in_command(command_words([value]))
    if found:
        return found
    bare = _BARE_USERINFO.search(value)
    if bare and _held(bare.group(2)) and not re.fullmatch(r"sha\d+", bare.group(3)):
        return "a password before a host (user:password@host)"
    for text in dict.fromkeys((value, decoded)):  # in this order, each once: the same message every run
        pairs = [('"', *p) for p in _JSON_PAIR.findall(text)] + _PAIR.findall(text)
        for before, name, given in pairs:
            if _secret_pair(name, given.strip("'\"")):
                where = (
                    "a JSON object"
                    if before == '"'
                    else "a URL's query"
                    if before in ("?", "&")
                    else "a connection string"
                    if ";" in text
                    else "a name=value list"
                )
                return f"a secret in {where} ({name}=)"
    return None


def _credentials(token: str) -> bool:
    """A header's credentials, not a word after `Bearer` in prose (`Bearer authentication`)."""
    return _held(token) and (any(c.isdigit() for c in token) or any(c.isupper() for c in token) or "=" in token)


def credential_in_words(texts: Sequence[str]) -> str | None:
    """What secret a command line given as a list (ssh options, a container's command) carries, or None."""
    for text in texts:
        found = credential_in_value(text)
        if found:
            return found
    return credential_in_command(command_words(texts))


def secret_in_environment(name: str, value: str) -> str | None:
    """Why an environment entry in plain configuration is a secret (its name, or its value's shape), or None.
    A plain boolean, number or list of paths is a switch whatever its name says (`ENABLE_API_KEY: "true"`)."""
    if looks_like_secret_name(name) and not plainly_a_switch(value):
        return "with a name that says it is a secret"
    found = credential_in_value(value)
    return f"with a value that looks like a secret, {found}" if found else None
