"""What looks like a secret, and what is an unpinned image: pure checks shared by the stack validation
and the CrossGuard policy pack (policy/rules.py), so both judge alike."""

from __future__ import annotations

import math
import re
from collections import Counter

# Names that say "secret"; values that are one whatever their name says: Hugging Face and OpenAI-style
# tokens, GitHub and GitLab tokens, Slack tokens, AWS access key ids, and long random strings.
SECRET_NAME = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|PASSWD)", re.IGNORECASE)
SECRET_PREFIX = re.compile(
    r"(^|[^A-Za-z0-9])(hf_[A-Za-z0-9]{16,}|sk-[A-Za-z0-9_-]{16,}|ghp_[A-Za-z0-9]{20,}|glpat-[A-Za-z0-9_-]{16,}|xox[abpr]-[A-Za-z0-9-]{10,}|AKIA[0-9A-Z]{16})"
)
_TOKEN_CHARS = re.compile(r"^[A-Za-z0-9_+=.-]+$")
_HEX = re.compile(r"^[0-9a-fA-F]+$")
HIGH_ENTROPY_MIN_LENGTH = 32
HIGH_ENTROPY_BITS = 4.0


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


def looks_like_secret_name(name: str) -> bool:
    return bool(SECRET_NAME.search(name))


def image_is_unpinned(image: str) -> bool:
    """No tag nor digest (which means `latest`), or `latest` itself: a tag that moves under you."""
    if "@sha256:" in image:
        return False
    last = image.rsplit("/", 1)[-1]
    return ":" not in last or last.endswith(":latest")
