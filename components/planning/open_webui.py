"""Open WebUI's variables that the project sets itself: the offline ones, each with its reason, and every one
a stack's `chat_ui.environment` may not set. Below both the settings' validation (which refuses those) and the
chat page's planning (components/planning/chat_ui.py, which sets them), so that neither imports the other.
Every name was read in open-webui 0.12.4 (the PyPI wheel, open_webui/config.py and env.py).
"""

from __future__ import annotations

# Nothing reaches the internet, at start or at use. Each entry: variable, value, why.
OFFLINE: tuple[tuple[str, str, str], ...] = (
    # env.py L1225-1229: HF_HUB_OFFLINE=1, no version update check, no pip installs of tools' requirements.
    ("OFFLINE_MODE", "true", "no update check, no Hugging Face downloads"),
    ("ENABLE_VERSION_UPDATE_CHECK", "false", "asks the project's release feed (off under OFFLINE_MODE too)"),
    # config.py L243; the image's default OLLAMA_BASE_URL=/ollama becomes host.docker.internal:11434.
    ("ENABLE_OLLAMA_API", "false", "no Ollama in the stack"),
    # config.py L296-299: with OLLAMA_BASE_URL unset (or the image's /ollama) it probes ports 11434 and 12434
    # at import, even with the Ollama API off. A name that cannot resolve (RFC 6761 .invalid) stops the probe,
    # and any later use of it would fail at once and show up as a lookup.
    ("OLLAMA_BASE_URL", "http://ollama.invalid:11434", "stops the Ollama port probe at start"),
    ("ENABLE_WEB_SEARCH", "false", "web search asks search engines on the internet (default off; kept off)"),
    ("ENABLE_COMMUNITY_SHARING", "false", "the share button posts chats to openwebui.com"),
    ("ENABLE_DIRECT_CONNECTIONS", "false", "users' own API endpoints, from the browser (default off; kept off)"),
    ("ENABLE_IMAGE_GENERATION", "false", "no image model in the stack"),
    ("RAG_EMBEDDING_MODEL_AUTO_UPDATE", "false", "never downloads a local embedding model"),
    ("RAG_RERANKING_MODEL_AUTO_UPDATE", "false", "never downloads a local reranking model"),
    ("WHISPER_MODEL_AUTO_UPDATE", "false", "never downloads a speech-to-text model"),
    # The image's Dockerfile sets these for the libraries it bundles (chromadb, Scarf).
    ("ANONYMIZED_TELEMETRY", "false", "chromadb's telemetry"),
    ("SCARF_NO_ANALYTICS", "true", "install analytics of bundled libraries"),
    ("DO_NOT_TRACK", "true", "telemetry of bundled libraries"),
    ("HF_HUB_OFFLINE", "1", "no Hugging Face downloads (OFFLINE_MODE sets it too, after import)"),
)

# Variables the stack's `chat_ui.environment` may not set: the project sets them from the stack.
MANAGED = frozenset(
    {
        *(name for name, _, _ in OFFLINE),
        "WEBUI_AUTH",
        "ENABLE_SIGNUP",
        "DEFAULT_USER_ROLE",
        "ENABLE_PERSISTENT_CONFIG",
        "WEBUI_ADMIN_EMAIL",
        "WEBUI_ADMIN_NAME",
        "WEBUI_ADMIN_PASSWORD",
        "WEBUI_SECRET_KEY",
        "WEBUI_SECRET_KEY_FILE",
        "DATA_DIR",
        "PORT",
        "ENABLE_OPENAI_API",
        "OPENAI_API_BASE_URL",
        "OPENAI_API_BASE_URLS",
        "OPENAI_API_KEY",
        "OPENAI_API_KEYS",
        "OPENAI_API_CONFIGS",
        "RAG_EMBEDDING_ENGINE",
        "RAG_EMBEDDING_MODEL",
        "RAG_OPENAI_API_BASE_URL",
        "RAG_OPENAI_API_KEY",
        "RAG_EMBEDDING_QUERY_PREFIX",
        "RAG_EMBEDDING_CONTENT_PREFIX",
    }
)
