"""The one-shot model download from the Hugging Face Hub before a server (re)starts, shared by the engines: the
image's own huggingface_hub fetches the model at its revision into the server's cache volume, and the server
then runs offline."""

from __future__ import annotations

from collections.abc import Sequence

from components.planning.service import Prefetch, Run, Secret, SecretText
from components.planning.timing import download_deadline
from components.settings import StackSettings
from components.settings.models import DownloadSettings

# Each proxy variable in both cases: Python's urllib reads the lower case first, httpx and requests either.
PROXY_VARIABLES = ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy")


def download_command(model: str, revision: str | None, timeout_s: int, files: Sequence[str] = ()) -> tuple[str, ...]:
    """The model download, with the image's own huggingface_hub (which CLI the image has is unverified:
    huggingface-cli is gone in huggingface_hub 1.0, `hf` exists from 0.34), into the server's cache. `files`:
    only these files of the repository (snapshot_download's allow_patterns), else all of it."""
    only = f",allow_patterns={list(files)!r}" if files else ""
    code = (
        "from huggingface_hub import snapshot_download;"
        f"print(snapshot_download(repo_id={model!r}, revision={revision!r}{only}))"
    )
    # Stopped at its own deadline, inside the provider's create timeout (download_timeout + a margin):
    # a download the provider gave up waiting for would otherwise go on filling the cache unseen.
    return ("timeout", "-k", "30", str(timeout_s), "python3", "-c", code)


def download_environment(d: DownloadSettings) -> dict[str, str]:
    """The download's mirror and proxy as the variables huggingface_hub (HF_ENDPOINT) and its HTTP client (the
    proxies, read in either case) take; a proxy with a login comes from the secret download_proxy instead."""
    env = {"HF_ENDPOINT": d.endpoint} if d.endpoint else {}
    if d.proxy:
        env |= {name: d.proxy for name in PROXY_VARIABLES}
    if d.no_proxy:
        env |= {"NO_PROXY": d.no_proxy, "no_proxy": d.no_proxy}
    return env


def hub_download(
    stack: StackSettings,
    model: str,
    revision: str | None,
    timeout_s: int,
    download: DownloadSettings,
    files: Sequence[str] = (),
    environment: dict[str, str] | None = None,
    entrypoint: tuple[str, ...] = (),
) -> Prefetch:
    """The one-shot download of `model` at `revision` (only `files` when given). `entrypoint`: for an image whose
    own entrypoint would take the command as its arguments (the llama.cpp images' tools.sh)."""
    hf: dict[str, SecretText] = {"HF_TOKEN": (Secret("hf_token"),)} if stack.has_secret("hf_token") else {}
    if stack.has_secret("download_proxy"):
        # Like the token, on the download's stdin: the proxy's login never on a command line or in `docker inspect`.
        hf |= {name: (Secret("download_proxy"),) for name in PROXY_VARIABLES}
    command = download_command(model, revision, timeout_s, files)
    return Prefetch(
        command=command[len(entrypoint) :] if entrypoint else command,
        timeout_s=timeout_s,
        # huggingface_hub's progress bars are on stderr: a 40 GB download shows that it moves.
        run=Run(download_deadline(timeout_s), log="stderr"),
        environment={
            "HF_HUB_DISABLE_PROGRESS_BARS": "1",
            "DO_NOT_TRACK": "1",
            **(environment or {}),
            **download_environment(download),
        },
        secret_environment=hf,
        entrypoint=entrypoint,
    )
