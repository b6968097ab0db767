"""What looks like a secret: the one secret-detection rule, pure, shared by
the stack validation (components/settings), and so the plan, the compose export and the PR comment, and
by the CrossGuard policy pack (policy/rules.py), so all judge alike.

A secret shows by its name (`DB_PASSWORD`, `APIKEY`), or by the value's shape whatever its name says:
a token, a long random string, a password in a URL (`scheme://user:password@host`), a webhook URL whose
path is the secret (Slack, Discord, Teams...), a secret query parameter (`?token=`, `&sig=`), or a
password on a command line (`sshpass -p`, `--password=`, `mysql -pPASSWORD`). A value that names a
variable instead (`$NAME`, `${NAME}`) holds no secret, and a file path is where a secret is, not one.
"""

from __future__ import annotations

import math
import re
import shlex
from collections import Counter
from collections.abc import Iterable, Sequence
from urllib.parse import parse_qsl, urlsplit

# Tokens by their prefix: Hugging Face and OpenAI-style tokens, GitHub and GitLab tokens, Slack tokens,
# AWS access key ids.
SECRET_PREFIX = re.compile(
    r"(^|[^A-Za-z0-9])(hf_[A-Za-z0-9]{16,}|sk-[A-Za-z0-9_-]{16,}|ghp_[A-Za-z0-9]{20,}|glpat-[A-Za-z0-9_-]{16,}|xox[abpr]-[A-Za-z0-9-]{10,}|AKIA[0-9A-Z]{16})"
)
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


def name_parts(name: str) -> list[str]:
    """`TOKENIZERS_PARALLELISM` -> TOKENIZERS, PARALLELISM; `hfApiKey2` -> HF, API, KEY (upper case)."""
    return [p.upper() for p in _NAME_PARTS.findall(name)]


def looks_like_secret_name(name: str) -> bool:
    return any(p.endswith(_SECRET_ENDINGS) or p in _SECRET_PARTS for p in name_parts(name))


def _held(value: str) -> bool:
    """A value that holds something: neither empty, nor a variable's name, nor a file's path."""
    return bool(value) and not _PLACEHOLDER.match(value) and not value.startswith(("/", "~/", "./", "@"))


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
        if looks_like_secret_name(name) and _held(value):
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
    if looks_like_secret_value(value):
        return "a token or a long random string"
    for url in _URL.findall(value):
        found = credential_in_url(url)
        if found:
            return found
    return credential_in_command(command_words([value]))


def credential_in_words(texts: Sequence[str]) -> str | None:
    """What secret a command line given as a list (ssh options, a container's command) carries, or None."""
    for text in texts:
        found = credential_in_value(text)
        if found:
            return found
    return credential_in_command(command_words(texts))


def secret_in_environment(name: str, value: str) -> str | None:
    """Why an environment entry in plain configuration is a secret (its name, or its value's shape), or None."""
    if looks_like_secret_name(name):
        return "with a name that says it is a secret"
    found = credential_in_value(value)
    return f"with a value that looks like a secret, {found}" if found else None
