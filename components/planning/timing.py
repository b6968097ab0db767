"""How long `pulumi up` waits, and how those durations are written: pure, free of Pulumi.

pulumi-docker bridges kreuzwerker/terraform-provider-docker (v4.5.x), which reads every healthcheck
duration back with Go's `time.Duration.String()` (internal/provider/resource_docker_container_funcs.go
L960-970 at v4.5.0): `1800s` comes back as `30m0s`. A duration written any other way differs from
state on every preview, so each one this project writes goes through `go_duration`.

Its container and image resources give their create step 20 minutes by default
(resource_docker_container.go L12-14 and L30-33, resource_docker_image.go L10-12 and L24-27), and the
container's health wait (`wait_timeout`) runs inside that create step (resource_docker_container_funcs.go
L590-621): a 70B load that takes 25 minutes would fail `pulumi up` with "container failed to be in
healthy state". So each resource gets custom timeouts from the stack's own figures.
"""

from __future__ import annotations

import math
import shlex
from dataclasses import dataclass

# How long a vLLM server takes from start to /health: engine start (RCCL, profiling, graphs) plus reading
# the weights from the cache volume. From a recorded gfx906 log (nlzy/vllm-gfx906 issue #44: a 70B
# checkpoint's shards load over about four minutes); an estimate, shown as one. The plan's downtime note
# (components/tools/review.py) and the stack's startup_timeout warning (components/planning/rules.py) use it.
ENGINE_START_S = 120
LOAD_GIB_PER_S = 0.15


@dataclass(frozen=True)
class LoadEstimate:
    """The estimated start of a vLLM server that loads `weights_gib` of weights (over all its GPUs)."""

    weights_gib: float

    @property
    def seconds(self) -> float:
        return ENGINE_START_S + self.weights_gib / LOAD_GIB_PER_S

    @property
    def basis(self) -> str:
        return f"{ENGINE_START_S} s engine start + {self.weights_gib:.0f} GiB of weights at {LOAD_GIB_PER_S} GiB/s"


def load_estimate(weights_gib_per_gpu: float, tensor_parallel_size: int) -> LoadEstimate:
    """The load estimate of a server from its memory plan's weights per GPU and its GPU count."""
    return LoadEstimate(weights_gib_per_gpu * tensor_parallel_size)


def whole_minutes(seconds: float) -> int:
    """Seconds rounded up to whole minutes, in seconds (a timeout to suggest)."""
    return math.ceil(seconds / 60) * 60


# Beyond the health wait, a container's create step pulls nothing (the image is its own resource) but
# creates, starts and inspects the container: a few minutes cover a slow daemon.
CREATE_MARGIN_S = 300
# Deleting a container waits its stop grace period; then Docker kills it.
DELETE_MARGIN_S = 120


def go_duration(seconds: int) -> str:
    """A whole number of seconds as Go's time.Duration.String(): 15 -> 15s, 90 -> 1m30s, 1800 -> 30m0s, 3600 -> 1h0m0s."""
    if seconds < 0:
        raise ValueError(f"a negative duration: {seconds}")
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def parse_go_duration(text: str) -> int:
    """The seconds of a Go duration made of h, m and s parts (the inverse of go_duration)."""
    total, number = 0, ""
    units = {"h": 3600, "m": 60, "s": 1}
    for char in text:
        if char.isdigit():
            number += char
        elif char in units and number:
            total += int(number) * units[char]
            number = ""
        else:
            raise ValueError(f"not a Go duration of whole seconds: {text!r}")
    if number or not text:
        raise ValueError(f"not a Go duration of whole seconds: {text!r}")
    return total


@dataclass(frozen=True)
class Timeouts:
    """Custom timeouts of one resource, as Go durations (what Pulumi's CustomTimeouts takes)."""

    create: str
    update: str
    delete: str


def container_timeouts(startup_timeout: int, stop_grace_seconds: int) -> Timeouts:
    """The health wait runs inside create. A replacement is a create (a create step of the new container:
    pulumi/pulumi v3.259.0 pkg/resource/deploy/step_generator.go L2135-2160, NewCreateReplacementStep), so it
    takes the create timeout; the update timeout is for an in-place update, which waits for nothing."""
    wait = go_duration(startup_timeout + CREATE_MARGIN_S)
    return Timeouts(create=wait, update=wait, delete=go_duration(stop_grace_seconds + DELETE_MARGIN_S))


def image_timeouts(pull_timeout: int) -> Timeouts:
    """A 10 GB ROCm image on a slow line takes longer than the provider's 20 minutes."""
    pull = go_duration(pull_timeout)
    return Timeouts(create=pull, update=pull, delete=go_duration(DELETE_MARGIN_S))


# A one-shot command (a download, Grafana's reset, the preflight) stops itself at its deadline: over SSH,
# pulumi-command runs it with session.Run and never ends it when the engine gives up (pulumi-command v1.2.1
# provider/pkg/provider/remote/commandOutputs.go L95: no context), so a hung `grafana cli` or `docker run`
# would block `pulumi up`; a local one is started with exec.CommandContext (local/commandOutputs.go L59),
# which the engine's timeout ends. `timeout` sends TERM at the deadline (docker run hands it to its
# container), then KILL after KILL_AFTER_S; the resource's own timeout is beyond both.
KILL_AFTER_S = 30
RUN_MARGIN_S = 60
# Grafana's reset and the preflight: a few seconds each, a slow daemon or link included.
SHORT_RUN_S = 300


def with_deadline(command: str, seconds: int) -> str:
    """The shell command, stopped after `seconds` (TERM, then KILL): its stdin still reaches it."""
    return f"timeout -k {KILL_AFTER_S} {seconds} sh -c {shlex.quote(command)}"


def run_timeouts(deadline_s: int) -> Timeouts:
    """A one-shot command's custom timeouts: beyond its own deadline and the kill after it."""
    wait = go_duration(deadline_s + KILL_AFTER_S + RUN_MARGIN_S)
    return Timeouts(create=wait, update=wait, delete=go_duration(DELETE_MARGIN_S))


def download_deadline(download_timeout: int) -> int:
    """The download's command: the docker run around the download, which stops itself at download_timeout."""
    return download_timeout + CREATE_MARGIN_S
