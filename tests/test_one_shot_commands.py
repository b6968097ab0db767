"""The one-shot runs' command lines as the host's shell receives them: the model download and Grafana's
password reset, written out (components/container.py docker_run, components/vllm.py, components/monitoring.py).
The engine tests run them; these say what they are, word for word, and what the shell makes of them."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from components.tools.planned import Plan
from tests.conftest import shipped_plan
from tests.stacks import plan_values, set_key, values_of

IMAGE = re.compile(r"sha256:[0-9a-f]{64}")


def _command(plan: Plan, run: str, image: str) -> str:
    """The run's command line, its image id (the mocks' digest) written as <image> once checked to be the
    image resource's."""
    create = str(plan.by_name(run).inputs["create"])
    (digest,) = set(IMAGE.findall(create))
    container = plan.by_name(image).inputs["image"]
    assert digest == container, f"{run} runs {digest}, {image} {container}"
    return create.replace(digest, "<image>")


def test_the_model_download_command_line() -> None:
    p = shipped_plan("big-chat")
    create = _command(p, "vllm-prefetch", "vllm-container")
    assert create == (
        "docker rm -f vllm-prefetch >/dev/null 2>&1; exec docker run --rm --name vllm-prefetch "
        "-v vllm-hf-cache:/root/.cache/huggingface -e DO_NOT_TRACK=1 -e HF_HUB_DISABLE_PROGRESS_BARS=1 <image> "
        "timeout -k 30 7200 python3 -c 'from huggingface_hub import snapshot_download;print(snapshot_download("
        "repo_id='\"'\"'casperhansen/llama-3.3-70b-instruct-awq'\"'\"', revision=None))'"
    )
    # what the shell runs after the clean-up: the program handed to python3 is one argument, quotes intact
    argv = shlex.split(create.split("; exec ", 1)[1])
    assert argv[argv.index("<image>") + 1 :] == [
        "timeout",
        "-k",
        "30",
        "7200",
        "python3",
        "-c",
        "from huggingface_hub import snapshot_download;"
        "print(snapshot_download(repo_id='casperhansen/llama-3.3-70b-instruct-awq', revision=None))",
    ]
    r = p.by_name("vllm-prefetch")
    assert (r.inputs["update"], r.inputs.get("stdin")) == ("true", None), "a new token alone downloads nothing"
    assert r.inputs["environment"] == {"DOCKER_HOST": "unix:///var/run/docker.sock"}


def test_the_download_of_a_pinned_revision(tmp_path: Path) -> None:
    revision = "0123456789abcdef0123456789abcdef01234567"
    p = plan_values(set_key(values_of("small-chat"), "vllm.model_revision", revision), tmp_path)
    argv = shlex.split(_command(p, "vllm-prefetch", "vllm-container").split("; exec ", 1)[1])
    assert argv[-1] == (
        "from huggingface_hub import snapshot_download;"
        f"print(snapshot_download(repo_id='Qwen/Qwen2.5-14B-Instruct-AWQ', revision='{revision}'))"
    )


def test_the_fleet_downloads_on_each_host_through_its_own_docker() -> None:
    """A remote command runs on the server's host, whose shell reaches its Docker without DOCKER_HOST."""
    r = shipped_plan("fleet").by_name("coder-prefetch")
    assert r.type == "command:remote:Command" and r.inputs.get("environment") is None
    create = _command(shipped_plan("fleet"), "coder-prefetch", "coder-container")
    # pulumi-command never ends a remote command: the host's own shell stops it, after the download's deadline
    outer = shlex.split(create)
    assert outer[:6] == ["timeout", "-k", "30", "7500", "sh", "-c"] and len(outer) == 7
    assert outer[6].startswith(
        "docker rm -f coder-prefetch >/dev/null 2>&1; exec docker run --rm --name coder-prefetch "
        "-v coder-hf-cache:/root/.cache/huggingface -e DO_NOT_TRACK=1 -e HF_HUB_DISABLE_PROGRESS_BARS=1 <image> "
        "timeout -k 30 7200 python3 -c "
    )


def test_grafanas_password_reset_command_line_takes_the_password_on_stdin() -> None:
    p = shipped_plan("big-chat")
    create = _command(p, "grafana-password-reset", "grafana-container")
    assert create == (
        "docker rm -f grafana-password-reset >/dev/null 2>&1; exec docker run --rm --name grafana-password-reset "
        "--entrypoint sh -v grafana-data:/var/lib/grafana --env-file /dev/stdin <image> -c "
        '\'printf "%s\\n" "$GF_SECURITY_ADMIN_PASSWORD" | grafana cli --homepath /usr/share/grafana '
        "--config /etc/grafana/grafana.ini admin reset-admin-password --password-from-stdin'"
    )
    argv = shlex.split(create.split("; exec ", 1)[1])
    assert argv[argv.index("<image>") + 1 :] == [
        "-c",
        'printf "%s\\n" "$GF_SECURITY_ADMIN_PASSWORD" | grafana cli --homepath /usr/share/grafana '
        "--config /etc/grafana/grafana.ini admin reset-admin-password --password-from-stdin",
    ]
    r = p.by_name("grafana-password-reset")
    # the password comes as an env file on stdin: never on a command line that `ps` shows
    assert r.inputs["stdin"] == "GF_SECURITY_ADMIN_PASSWORD=[secret]\n"
    assert r.inputs.get("update") is None, "a new password runs the reset again"


# --------------------------------------------------------------------------- the download's mirror and proxy (issue 27)

SECURE = {"secure": "v1:AAAAAAAAAAAAAAAA:BBBBBBBB"}


def test_the_download_gets_its_mirror_proxy_and_no_proxy_and_the_server_does_not(tmp_path: Path) -> None:
    download = {"endpoint": "https://hf-mirror.example", "proxy": "http://proxy.lan:3128", "no_proxy": "localhost,.lan"}
    p = plan_values(set_key(values_of("small-chat"), "vllm.download", download), tmp_path)
    create = _command(p, "vllm-prefetch", "vllm-container")
    assert create.startswith(
        "docker rm -f vllm-prefetch >/dev/null 2>&1; exec docker run --rm --name vllm-prefetch "
        "-v vllm-hf-cache:/root/.cache/huggingface -e DO_NOT_TRACK=1 -e HF_ENDPOINT=https://hf-mirror.example "
        "-e HF_HUB_DISABLE_PROGRESS_BARS=1 -e HTTPS_PROXY=http://proxy.lan:3128 -e HTTP_PROXY=http://proxy.lan:3128 "
        "-e NO_PROXY=localhost,.lan -e http_proxy=http://proxy.lan:3128 -e https_proxy=http://proxy.lan:3128 "
        "-e no_proxy=localhost,.lan <image> timeout -k 30 7200 python3 -c "
    ), create
    assert p.by_name("vllm-prefetch").inputs.get("stdin") is None
    server_env = " ".join(p.by_name("vllm-container").inputs["envs"])
    assert "HF_ENDPOINT" not in server_env and "PROXY" not in server_env.upper()


def test_a_proxy_with_a_login_reaches_the_download_on_its_stdin_never_its_command_line(tmp_path: Path) -> None:
    p = plan_values(values_of("small-chat"), tmp_path, secure={"download_proxy": SECURE, "hf_token": SECURE})
    r = p.by_name("vllm-prefetch")
    create = _command(p, "vllm-prefetch", "vllm-container")
    assert "--env-file /dev/stdin <image> timeout" in create and "PROXY" not in create.upper()
    assert str(r.inputs["stdin"]).splitlines() == [
        "HF_TOKEN=[secret]",
        "HTTPS_PROXY=[secret]",
        "HTTP_PROXY=[secret]",
        "http_proxy=[secret]",
        "https_proxy=[secret]",
    ]
    assert r.inputs["update"] == "true", "a new proxy password alone downloads nothing again"


def test_a_download_without_settings_is_as_before(tmp_path: Path) -> None:
    p = plan_values(set_key(values_of("small-chat"), "vllm.download", {}), tmp_path)
    assert "-e DO_NOT_TRACK=1 -e HF_HUB_DISABLE_PROGRESS_BARS=1 <image>" in _command(
        p, "vllm-prefetch", "vllm-container"
    )
