"""Stand-in for huggingface_hub in the stub images: snapshot_download lays out the Hub cache as the real
library does (hub/models--ORG--NAME/{refs,snapshots}), without a network; a repository named
`*missing*` is not found, as a 404 from the Hub would be."""

import os
import pathlib
import sys


def snapshot_download(repo_id, revision=None, **kwargs):  # noqa: ANN001, ANN201, ARG001 - the real signature
    if "missing" in repo_id:
        sys.exit(f"404 Client Error: Repository Not Found for url: https://huggingface.co/api/models/{repo_id}")
    home = pathlib.Path(os.environ.get("HF_HOME", os.path.expanduser("~/.cache/huggingface")))
    repo = home / "hub" / ("models--" + repo_id.replace("/", "--"))
    commit = revision if revision and len(revision) == 40 else "0123456789abcdef0123456789abcdef01234567"
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True, exist_ok=True)
    (snapshot / "config.json").write_text("{}\n")
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / (revision or "main")).write_text(commit)
    # Whether the token reached the download (the engine test reads it; the real library sends it to the Hub).
    (repo / "token").write_text("set\n" if os.environ.get("HF_TOKEN") else "unset\n")
    return str(snapshot)
