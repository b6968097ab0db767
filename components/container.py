"""The hardened container that every server of this project runs in: image, cache volume, container.

What a deployment that is left running needs beyond a compose file, in one place:
- a healthcheck on /health with the image's own python (curl is not in every image), a start
  period long enough for a model load, and `wait=True` so `pulumi up` returns only when it serves;
- `unless-stopped`: vLLM exits 0 when it shuts down gracefully, on SIGTERM (a daemon stop, a
  reboot) and when its engine dies (vllm/entrypoints/launcher.py serve_http: the signal handler
  cancels the server task, `terminate_if_errored` sets `should_exit`, and nothing calls sys.exit),
  so `on-failure` would leave it down after a reboot or an engine death. Docker refuses a retry
  count beside `unless-stopped`, and never resets one after a good run; its own backoff (100 ms,
  doubling to 1 min, reset after 10 s of running: moby daemon/restartmanager/restartmanager.go)
  paces a crash loop, the preflight and the rules catch deterministic failures before a deploy;
- custom timeouts from the stack's own figures (see components/planning/timing.py): the health
  wait runs inside the provider's create step, 20 minutes by default;
- json-file logs with rotation (unbounded by default);
- the model cache in a named volume that survives container replacement and that Pulumi never
  deletes (`retain_on_delete`: a destroy, a removed server or a replacement drops it from state and
  leaves it on the host, where a later volume of that name finds it again). Not `protect`: that
  refuses the very day-two changes this project supports (removing a server, moving it to another
  host, `pulumi destroy`) and adds no safety over retain_on_delete. It carries only labels that never
  change for it (project, stack), and Pulumi ignores label and name changes on it (both force a
  replacement; the provider reads the host's labels back: resource_docker_volume.go L46-52, L308-309
  at v4.5.0);
- `delete_before_replace`: the container has a fixed name, a host port and maybe GPU memory, so
  pulumi-docker's default create-before-delete would fail (pulumi-docker issue #1356);
- a private IPC namespace with an explicit /dev/shm size instead of `--ipc=host`, no `privileged`;
- secrets only in the environment, each entry a secret, and `envs` a secret output in state.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_docker as docker

from components.host import HostShell, on_machine
from components.planning.deployment import Container, Prefetch, Run, Secret, SecretText, Service, Timeouts

RESTART_POLICY = "unless-stopped"
LOG_DRIVER = "json-file"
LOG_OPTS = {"max-size": "100m", "max-file": "5"}
LABEL_PREFIX = "rocm-inference"


# Labels a model cache volume carries: ones that never change for it (never GPUs, ports or models).
VOLUME_LABELS = frozenset({f"{LABEL_PREFIX}.project", f"{LABEL_PREFIX}.stack"})


def _custom(t: Timeouts) -> pulumi.CustomTimeouts:
    return pulumi.CustomTimeouts(create=t.create, update=t.update, delete=t.delete)


def container_envs(
    plain: Mapping[str, str], secret: Mapping[str, pulumi.Output[str] | None]
) -> list[pulumi.Input[str]]:
    """`KEY=value` entries; each secret one stays a secret Output (never an f-string on an Output)."""
    envs: list[pulumi.Input[str]] = [f"{k}={v}" for k, v in sorted(plain.items())]
    envs += [pulumi.Output.secret(pulumi.Output.concat(k, "=", v)) for k, v in sorted(secret.items()) if v is not None]
    return envs


@dataclass(frozen=True)
class Wiring:
    """What the plan names and only the program holds: each secret's Output, the host's network, the resources
    a service waits for (its host's preflight; the services it talks to, before its container starts)."""

    secrets: Callable[[Secret], pulumi.Output[str]]
    networks: Sequence[pulumi.Input[str]] = ()
    depends_on: Sequence[pulumi.Resource] = ()
    start_after: Sequence[pulumi.Resource] = ()

    def text(self, value: SecretText) -> pulumi.Output[str]:
        """A secret made of pieces, as one secret Output (never an f-string on an Output)."""
        if len(value) == 1 and isinstance(value[0], Secret):
            return self.secrets(value[0])
        pieces = [p if isinstance(p, str) else self.secrets(p) for p in value]
        return pulumi.Output.secret(pulumi.Output.concat(*pieces))

    def environment(self, secret: Mapping[str, SecretText]) -> dict[str, pulumi.Output[str] | None]:
        return {k: self.text(v) for k, v in secret.items()}


@dataclass(frozen=True)
class ServiceResources:
    image: docker.RemoteImage
    volume: docker.Volume | None
    container: docker.Container

    download: pulumi.Resource | None = None
    port: int | None = None  # the planned published port (Container.external_port)

    def url(self, address: str, path: str = "") -> pulumi.Output[str]:
        """Known only once the container is up and healthy (wait=True): the URL of a serving endpoint. Its port
        is the planned one, never the container's read-back ports: `pulumi refresh --run-program` reads a
        stopped container's state back with no ports at all."""
        port = self.port
        if port is None:
            raise ValueError("a service that publishes no port has no URL")
        return self.container.name.apply(lambda _: f"http://{address}:{port}{path}")


@dataclass(frozen=True)
class ServerArgs:
    """One planned service and what the program holds for it: its host's Docker and shell, its wiring."""

    plan: Service
    wiring: Wiring
    provider: docker.Provider
    shell: HostShell
    address: str  # its host's address, where its published port is reached


class Server(pulumi.ComponentResource):
    """A component that runs one planned service container (a vLLM or Infinity server, the gateway): its type
    token is its engine's (components/planning/engines/)."""

    base_url: pulumi.Output[str]
    model: str
    container_name: pulumi.Output[str]
    container: docker.Container

    def __init__(self, name: str, args: ServerArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        p = args.plan
        super().__init__(p.type, name, None, opts)
        res = service_resources(name, p.container, args.wiring, self, args.provider, args.shell)
        self.container = res.container
        self.model = p.model
        self.base_url = res.url(args.address, p.path)
        self.container_name = res.container.name
        self.register_outputs({"base_url": self.base_url, "model": self.model, "container_name": self.container_name})


def service_resources(
    name: str,
    spec: Container,
    wiring: Wiring,
    parent: pulumi.Resource,
    provider: docker.Provider,
    shell: HostShell | None = None,
) -> ServiceResources:
    """The image, cache volume (if any) and container of one service, children of `parent`, named from `name`."""
    # Every resource of the service, the one-shot runs included, is replaced when the host's machine changes.
    child = pulumi.ResourceOptions.merge(pulumi.ResourceOptions(parent=parent, provider=provider), on_machine(provider))
    labels = [docker.ContainerLabelArgs(label=k, value=v) for k, v in sorted(spec.labels.items())]
    # Nothing is pulled before the host's preflight check has passed.
    image = docker.RemoteImage(
        f"{name}-image",
        name=spec.image,
        keep_locally=True,
        opts=pulumi.ResourceOptions.merge(
            child,
            pulumi.ResourceOptions(
                depends_on=list(wiring.depends_on),
                custom_timeouts=_custom(spec.image_timeouts),
                replacement_trigger=_moved(spec),
            ),
        ),
    )
    volume = None
    if spec.cache_volume is not None and spec.cache_path is not None:
        volume = docker.Volume(
            f"{name}-cache",
            name=spec.cache_volume,
            labels=[
                docker.VolumeLabelArgs(label=k, value=v) for k, v in sorted(spec.labels.items()) if k in VOLUME_LABELS
            ],
            # A model cache is tens of GB of downloads: never deleted by a replacement, a destroy or a removal.
            # Its name is kept once created: the default derives from the container's name, and a rename of
            # the container would otherwise start an empty cache (the container mounts the volume by the name
            # in state). Set `cache_volume` before the first deploy to choose it. A move to another host
            # creates it there and leaves the old one where it was.
            opts=pulumi.ResourceOptions.merge(
                child,
                pulumi.ResourceOptions(
                    retain_on_delete=True, ignore_changes=["labels", "name"], replacement_trigger=_moved(spec)
                ),
            ),
        )
    if spec.host_namespaces and (spec.external_port is not None or wiring.networks):
        raise ValueError(f"{name}: a container on the host's network publishes no port and joins no Docker network")
    depends_on = [*wiring.depends_on, *wiring.start_after]
    download = None
    if spec.prefetch is not None:
        if volume is None or spec.cache_path is None or shell is None:
            raise ValueError(
                "a download fills the service's cache volume on its host: give it one and the host's shell"
            )
        download = _download(name, spec, spec.prefetch, wiring, image, volume, shell, child)
        # Only an ordering: `pulumi up` registers the server once the download has succeeded, and a failed
        # one ends it before the old server is touched. Never through an input: when the download is replaced
        # (a new model), the engine deletes first every delete-before-replace dependent that an input of the
        # download's would replace, i.e. the serving container, before the download even starts
        # (pulumi/pulumi v3.259.0 pkg/resource/deploy/step_generator.go L3220-3361, calculateDependentReplacements).
        depends_on.append(download)
    files = {path: text if isinstance(text, str) else wiring.text(text) for path, text in spec.uploads.items()}
    uploads = [docker.ContainerUploadArgs(file=path, content=text) for path, text in sorted(files.items())]
    # A file whose content is an Output here is a secret (a password, a key, a webhook): the provider's
    # schema does not mark upload content sensitive, and the engine keeps an output secret only when the
    # whole top-level input was, so the whole list goes as a secret and stays one in state.
    secret_uploads = any(isinstance(text, pulumi.Output) for text in files.values())
    container = docker.Container(
        f"{name}-container",
        name=spec.container_name,
        image=image.image_id,
        command=list(spec.command) or None,  # none: the image's own CMD
        envs=container_envs(spec.environment, wiring.environment(spec.secret_environment)),
        devices=[docker.ContainerDeviceArgs(host_path=d, container_path=d, permissions="rwm") for d in spec.devices]
        or None,
        group_adds=list(spec.group_adds) or None,
        shm_size=spec.shm_size_mb,
        ipc_mode="private",
        privileged=False,
        init=True if spec.init else None,
        ports=[docker.ContainerPortArgs(internal=spec.internal_port, external=spec.external_port, ip=spec.bind)]
        if spec.external_port is not None
        else None,
        volumes=[docker.ContainerVolumeArgs(volume_name=volume.name, container_path=spec.cache_path)]
        if volume
        else None,
        mounts=[
            docker.ContainerMountArgs(
                type="bind",
                source=src,
                target=dst,
                read_only=True,
                bind_options=docker.ContainerMountBindOptionsArgs(propagation=spec.host_mount_propagation)
                if spec.host_mount_propagation
                else None,
            )
            for src, dst in sorted(spec.host_mounts.items())
        ]
        or None,
        network_mode="host" if spec.host_namespaces else None,
        pid_mode="host" if spec.host_namespaces else None,
        hosts=[docker.ContainerHostArgs(host=h, ip=ip) for h, ip in sorted(spec.extra_hosts.items())] or None,
        networks_advanced=[docker.ContainerNetworksAdvancedArgs(name=n) for n in wiring.networks] or None,
        uploads=(pulumi.Output.secret(uploads) if secret_uploads else uploads) or None,
        healthcheck=docker.ContainerHealthcheckArgs(
            tests=list(spec.health.test),
            interval=spec.health.interval,
            timeout=spec.health.timeout,
            retries=spec.health.retries,
            start_period=spec.health.start_period,
        ),
        wait=True,
        wait_timeout=spec.startup_timeout,
        restart=RESTART_POLICY,
        log_driver=LOG_DRIVER,
        log_opts=dict(LOG_OPTS),
        labels=labels,
        destroy_grace_seconds=spec.stop_grace_seconds,
        opts=pulumi.ResourceOptions.merge(
            child,
            pulumi.ResourceOptions(
                delete_before_replace=True,
                additional_secret_outputs=["envs", *(["uploads"] if secret_uploads else [])],
                depends_on=depends_on,
                custom_timeouts=_custom(spec.container_timeouts),
                # Every change replaces. The provider applies no healthcheck or init change to a running
                # container (neither replace-forcing nor in its update: components/planning/provider_facts.py),
                # and "*" is what makes the engine replace, not update, a container whose create failed its
                # health wait: without it the next `pulumi up` accepts a server that never became healthy
                # (the SDK's ResourceOptions.replace_on_changes; pulumi/pulumi v3.259.0
                # pkg/resource/deploy/step_generator.go L3120-3200, applyReplaceOnChanges).
                replace_on_changes=["*"],
                replacement_trigger=_moved(spec),
            ),
        ),
    )
    return ServiceResources(image, volume, container, download, spec.external_port)


def fetch_name(spec: Container) -> str:
    return f"{spec.container_name}-prefetch"


def _moved(spec: Container) -> str | None:
    """The host, as a replacement trigger: a change of host replaces; none (before it existed) replaces nothing."""
    return spec.host or None


def docker_run(run: Mapping[str, Any]) -> str:
    """The shell command of a one-shot `docker run --rm` described as a container's inputs would describe it.

    A container of that name left by an interrupted run is removed first. Secret variables come on stdin as
    an env file, never on a command line (`docker inspect` and `ps` show those).
    """
    argv = ["docker", "run", "--rm", "--name", run["name"]]
    entrypoint = list(run.get("entrypoints") or [])
    if entrypoint:
        argv += ["--entrypoint", entrypoint[0]]
    for v in run["volumes"]:
        argv += ["-v", f"{v['volumeName']}:{v['containerPath']}"]
    for entry in run["envs"]:
        argv += ["-e", entry]
    if run["secretEnvs"]:
        argv += ["--env-file", "/dev/stdin"]
    argv += [run["image"], *entrypoint[1:], *run["command"]]
    return f"docker rm -f {shlex.quote(run['name'])} >/dev/null 2>&1; exec {shlex.join(argv)}"


@dataclass(frozen=True)
class OneShot:
    """A container that runs to completion where the host's Docker is, as `docker run --rm` through
    pulumi-command: a failure ends `pulumi up` and leaves nothing in state, so the next `pulumi up` runs it
    again (a Container resource that ran once keeps its exit code in state, and a failed one fails every
    later run until it is removed by hand)."""

    name: str  # its container's name
    image: pulumi.Input[str]
    command: Sequence[str]
    volume: pulumi.Input[str]
    path: str
    environment: Mapping[str, str] = field(default_factory=dict)
    secret_environment: Mapping[str, pulumi.Output[str] | None] = field(default_factory=dict)
    entrypoint: Sequence[str] = ()
    # What a change of only its secrets does: None runs it again; "true" does nothing.
    on_secret_change: str | None = None
    # When the command stops itself (HostShell.command), and the stream the engine shows.
    run: Run = field(default_factory=Run)


def run_once(resource_name: str, shell: HostShell, job: OneShot, opts: pulumi.ResourceOptions) -> pulumi.Resource:
    """The one-shot run as a command resource. Its description, in a container's own input names, is its
    trigger: a change of image, command or volume runs it again, and the compose export shows it from there."""
    secrets = {k: v for k, v in sorted(job.secret_environment.items()) if v is not None}
    run: dict[str, pulumi.Input[Any]] = {
        "name": job.name,
        "image": job.image,
        "command": list(job.command),
        "envs": [f"{k}={v}" for k, v in sorted(job.environment.items())],
        "secretEnvs": sorted(secrets),
        "volumes": [{"volumeName": job.volume, "containerPath": job.path}],
        **({"entrypoints": list(job.entrypoint)} if job.entrypoint else {}),
    }
    resolved = pulumi.Output.from_input(run)
    lines: pulumi.Output[str] = pulumi.Output.concat(
        *(pulumi.Output.concat(k, "=", v, "\n") for k, v in secrets.items())
    )
    stdin: pulumi.Output[str] = pulumi.Output.secret(lines)
    return shell.command(
        resource_name,
        resolved.apply(docker_run),
        run=job.run,
        stdin=stdin if secrets else None,
        triggers=[resolved],
        update=job.on_secret_change,
        opts=opts,
    )


def _download(
    name: str,
    spec: Container,
    p: Prefetch,
    wiring: Wiring,
    image: docker.RemoteImage,
    volume: docker.Volume,
    shell: HostShell,
    child: pulumi.ResourceOptions,
) -> pulumi.Resource:
    """The model download: a one-shot `docker run --rm` of the service's own image with its cache volume, run to
    completion before the service container is (re)created, while the old server keeps serving.

    A command (pulumi-command), not a Container resource: a Container that ran once stays in state with its
    exit code, so a failed download would fail every later `pulumi up` until someone removes it by hand,
    and one whose wait broke would be accepted with no exit code at all. A failed command leaves nothing in
    state (components/host.py HostShell.command): the next `pulumi up` simply tries again.
    """
    assert spec.cache_path is not None
    job = OneShot(
        name=fetch_name(spec),
        image=image.image_id,
        command=p.command,
        volume=volume.name,
        path=spec.cache_path,
        environment=p.environment,
        secret_environment=wiring.environment(p.secret_environment),
        # A rotated token changes only stdin: the weights are there already, nothing to run again.
        on_secret_change="true",
        run=p.run,
        entrypoint=p.entrypoint,
    )
    return run_once(
        f"{name}-prefetch",
        shell,
        job,
        pulumi.ResourceOptions.merge(
            child,
            pulumi.ResourceOptions(
                depends_on=list(wiring.depends_on),
                replacement_trigger=_moved(spec),
            ),
        ),
    )
