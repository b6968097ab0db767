"""One service's container as the deployment plan holds it (components/planning/deployment.py): pure data, no
Pulumi, every secret by name. components/container.py turns it into the image, the cache volume, the one-shot
download and the container, deciding nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from components.planning.timing import SHORT_RUN_S, Timeouts, go_duration, run_timeouts, with_deadline
from components.settings import StackSettings

# No start_interval: Docker Engine before v25 (Debian 12 ships 20.10) refuses it in compose; the
# interval (15 s by default, a stack setting) finds a server ready soon enough without one.
HEALTH_TIMEOUT_S = 10
HEALTH_RETRIES = 3
GATEWAY_TYPE = "rocm-inference:gateway:Gateway"


@dataclass(frozen=True)
class Secret:
    """A secret by name, never its value: one of the stack's (`key` as the settings name it:
    `gateway_api_key`, `servers.chat-a.api_key`, `embeddings.environment.HTTPS_PROXY`), or a password generated
    once and kept in state (`length` > 0; `key` is then its resource's name, `part` which of its outputs)."""

    key: str
    length: int = 0
    part: str = "result"  # or "bcrypt_hash"


# A secret value made of pieces, concatenated: plain text and secrets. The whole is a secret.
SecretText = tuple["str | Secret", ...]


@dataclass(frozen=True)
class Health:
    """A Docker healthcheck: its test, and its timings as Go durations."""

    test: tuple[str, ...]
    interval: str
    timeout: str
    retries: int
    start_period: str


def http_health_test(port: int, path: str = "/health") -> tuple[str, ...]:
    """A Docker healthcheck that needs only python's standard library: exit 0 on HTTP 200, else non-zero.

    `python3`, not `python`: every image here has it. The Infinity CPU image puts a stdlib venv
    first on PATH (libs/infinity_emb/Dockerfile.cpu_auto: `ENV PATH=/app/.venv/bin:$PATH`), which
    has python, python3 and python3.x; Ubuntu, which the ROCm images build on, ships /usr/bin/python3
    but /usr/bin/python only with python-is-python3 (upstream vLLM's Dockerfile.rocm_base installs
    it; the gfx906 image's recipe is not published). vLLM's own command keeps the seed's `python`,
    which the seed proves in that image.
    """
    code = (
        "import sys,urllib.request;"
        f"sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:{port}{path}',timeout=5).status==200 else 1)"
    )
    return ("CMD", "python3", "-c", code)


def health_check(
    port: int, interval: int, start_period: int, *, path: str = "/health", test: tuple[str, ...] | None = None
) -> Health:
    """The healthcheck: `test`, else a GET of `path` on `port`; the start period is the startup timeout."""
    return Health(
        test=test if test is not None else http_health_test(port, path),
        interval=go_duration(interval),
        timeout=go_duration(HEALTH_TIMEOUT_S),
        retries=HEALTH_RETRIES,
        start_period=go_duration(start_period),
    )


@dataclass(frozen=True)
class Run:
    """How a one-shot command runs on its host: it stops itself after `deadline_s` (components/planning/timing.py
    says why), its custom timeouts lie beyond that, and `log` is the one stream the engine shows ("stderr",
    "stdout" or "none")."""

    deadline_s: int = SHORT_RUN_S
    log: str = "none"

    def wrap(self, command: str) -> str:
        """The shell command, stopped at the deadline."""
        return with_deadline(command, self.deadline_s)

    @property
    def timeouts(self) -> Timeouts:
        return run_timeouts(self.deadline_s)


@dataclass(frozen=True)
class Prefetch:
    """A one-shot `docker run --rm` of the service's own image with its cache volume, run to completion before
    the service container is (re)created: the model download, while the old server keeps serving
    (components/container.py says why a command, not a Container resource)."""

    command: tuple[str, ...]
    timeout_s: int
    run: Run
    environment: Mapping[str, str] = field(default_factory=dict)
    secret_environment: Mapping[str, SecretText] = field(default_factory=dict)
    # The image's entrypoint replaced by these first words of the command (an image whose entrypoint would take
    # the command as its own arguments); empty: the image's own.
    entrypoint: tuple[str, ...] = ()


@dataclass(frozen=True)
class Container:
    """Everything about one service's container.

    Every long-running service has a healthcheck (the policy pack requires one). The published port, the cache
    volume, the network and uploaded files are each optional: the gateway has no cache.
    """

    image: str
    container_name: str
    command: tuple[str, ...]
    internal_port: int
    startup_timeout: int  # the health wait of `pulumi up` (wait_timeout)
    health: Health
    image_timeouts: Timeouts
    container_timeouts: Timeouts
    # docker-init as PID 1: it forwards a signal the healthcheck sends to PID 1 to the server.
    init: bool = False
    prefetch: Prefetch | None = None
    external_port: int | None = None
    bind: str = "127.0.0.1"
    cache_volume: str | None = None
    cache_path: str | None = None
    # Joins the stack's Docker network on its host (where a caller reaches it by container name).
    network: bool = False
    # container path -> file content (plain, or secret pieces)
    uploads: Mapping[str, str | SecretText] = field(default_factory=dict)
    # host path -> container path, bound read-only with `rslave` propagation, so that a filesystem
    # mounted on the host later shows inside too (node-exporter reads the host's root at /host); None:
    # Docker's default (rprivate), where the host's path is a private mount and Docker refuses `rslave`
    host_mounts: Mapping[str, str] = field(default_factory=dict)
    host_mount_propagation: str | None = "rslave"
    # The host's network and PID namespaces (node-exporter): no published port, no Docker network then.
    host_namespaces: bool = False
    # name -> address in the container's /etc/hosts (`host-gateway`: Docker's address of the host)
    extra_hosts: Mapping[str, str] = field(default_factory=dict)
    environment: Mapping[str, str] = field(default_factory=dict)
    secret_environment: Mapping[str, SecretText] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    devices: tuple[str, ...] = ()  # device paths, mapped as they are with rwm
    group_adds: tuple[str, ...] = ()
    shm_size_mb: int | None = None
    stop_grace_seconds: int = 30
    # The services (by name) its container starts after: the ones it talks to. Its image is pulled meanwhile.
    start_after: tuple[str, ...] = ()
    # The stack's name of the host it runs on: moving it to another host replaces its image and containers
    # there (a provider change alone replaces nothing; see components/planning/provider_facts.py).
    host: str = ""


@dataclass(frozen=True)
class Gpus:
    """`/dev/kfd` plus exactly the card/render nodes of a server's GPUs, the numeric groups, HIP_VISIBLE_DEVICES."""

    name: str  # the component's name
    host_indices: tuple[int, ...]
    device_paths: tuple[str, ...]
    group_adds: tuple[str, ...]
    environment: Mapping[str, str]


def secret_environment_of(s: StackSettings, service: str) -> dict[str, SecretText]:
    """The stack's own secret environment entries of a service (`servers.chat-a`, `embeddings`, `gateway`,
    `chat_ui`): values written with `pulumi config set --secret --path`."""
    prefix = f"{service}.environment."
    return {key[len(prefix) :]: (Secret(key),) for key in sorted(s.secrets) if key.startswith(prefix)}


# A generated backend key's length.
BACKEND_KEY_LENGTH = 40


def backend_key(s: StackSettings, name: str, given: tuple[str, ...]) -> Secret | None:
    """A server's own key: the stack's, else (behind a gateway, so no server is ever open) a generated one."""
    for key in given:
        if s.has_secret(key):
            return Secret(key)
    return Secret(f"{name}-api-key", BACKEND_KEY_LENGTH) if s.gateway is not None else None


def server_key(s: StackSettings, name: str) -> Secret | None:
    """The key of the stack's server `name` (its own, the stack's vllm_api_key, or generated behind a gateway)."""
    return backend_key(s, name, (f"servers.{name}.api_key", "vllm_api_key"))
