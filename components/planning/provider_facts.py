"""What the providers do with each input this project sets, at the pinned versions, with the line that says so.

Per Pulumi resource type and input field (camelCase, as the plan records it):
- `replaces`: a change forces a replacement (ForceNew / RequiresReplace / replaceOnChanges);
- `applied`: a change reaches the running object: it replaces it, or the provider's update function
  acts on it. False means a change shows as an in-place "update" that changes only Pulumi's state
  (the container's `healthcheck` and `init`, say): to really apply one, replace the resource;
- `read_back`: Read sets it from the live object, so drift shows on `pulumi refresh`;
- `sensitive`: Sensitive in the provider's schema (a secret in state without additional_secret_outputs).

Pinned: pulumi-docker 5.2.0, pulumi-random 4.21.4, pulumi-command 1.2.1 (the venv). The snapshots
have no pulumi-docker v5.2.0 tag: v5.1.0 and the newest commit after it both pin the upstream
submodule at kreuzwerker/terraform-provider-docker v4.5.0 (5074970c), which is what the docker
facts come from; the 5.2.0 SDK has one Container input that v4.5.0 lacks (`deviceCgroupRules`,
tests/test_provider_facts.py keeps the list), so 5.2.0 bridges a slightly newer upstream. pulumi-random
pins hashicorp/terraform-provider-random at f8d869dc, the v3.9.0 release commit (its go.mod).

provider_facts.extracted.json is what extract_provider_facts.py reads from those checkouts; the
tests hold this table to it, so it is not checked only against itself.
"""

from __future__ import annotations

from dataclasses import dataclass

DOCKER = "kreuzwerker/terraform-provider-docker@v4.5.0"
RANDOM = "hashicorp/terraform-provider-random@v3.9.0"
COMMAND = "pulumi/pulumi-command@v1.2.1"
PULUMI_DOCKER = "pulumi/pulumi-docker@v5.1.0"

CONTAINER = "docker:index/container:Container"
REMOTE_IMAGE = "docker:index/remoteImage:RemoteImage"
VOLUME = "docker:index/volume:Volume"
NETWORK = "docker:index/network:Network"
RANDOM_PASSWORD = "random:index/randomPassword:RandomPassword"
LOCAL_COMMAND = "command:local:Command"
REMOTE_COMMAND = "command:remote:Command"
DOCKER_PROVIDER = "pulumi:providers:docker"

C = "internal/provider/resource_docker_container.go"
CF = "internal/provider/resource_docker_container_funcs.go"


@dataclass(frozen=True)
class Fact:
    tf_name: str  # the provider's own name for the field (snake_case; pulumi-command's are Pulumi's)
    replaces: bool
    applied: bool
    read_back: bool
    sensitive: bool
    source: str  # `repo@version path#Lnn` of the line relied on
    note: str = ""


def _d(line: str) -> str:
    return f"{DOCKER} {line}"


def _same(tf: str, source: str, note: str = "") -> Fact:
    """ForceNew: a change replaces the container, so it is applied whatever update does."""
    return Fact(tf, replaces=True, applied=True, read_back=False, sensitive=False, source=source, note=note)


def _read(tf: str, source: str, note: str = "") -> Fact:
    """ForceNew and set by Read."""
    return Fact(tf, replaces=True, applied=True, read_back=True, sensitive=False, source=source, note=note)


def _state_only(tf: str, source: str, read_back: bool, note: str) -> Fact:
    """Neither ForceNew nor read by update: a change is an "update" that reaches only the state."""
    return Fact(tf, replaces=False, applied=False, read_back=read_back, sensitive=False, source=source, note=note)


FACTS: dict[str, dict[str, Fact]] = {
    CONTAINER: {
        "attach": _state_only(
            "attach",
            _d(f"{C}#L93"),
            False,
            "create-only: create waits for the exit (funcs L631-671); Delete reads it from state and then "
            "skips the graceful stop (funcs L1085)",
        ),
        "command": _read("command", _d(f"{C}#L167"), "read back from Config.Cmd (funcs L849)"),
        "entrypoints": _read("entrypoint", _d(f"{C}#L176"), "read back from Config.Entrypoint (funcs L850)"),
        "hosts": _read("host", _d(f"{C}#L541"), "extra /etc/hosts entries; read back (funcs L884)"),
        "mounts": _read("mounts", _d(f"{C}#L332"), "read back (funcs L881); bind_options.propagation is nested"),
        "networkMode": _read("network_mode", _d(f"{C}#L905"), "read back (funcs L954)"),
        "pidMode": _read("pid_mode", _d(f"{C}#L978"), "read back (funcs L956)"),
        "destroyGraceSeconds": _state_only(
            "destroy_grace_seconds",
            _d(f"{C}#L827"),
            False,
            "Delete reads it from state (funcs L1088): a change takes effect at the next stop",
        ),
        "devices": _read("devices", _d(f"{C}#L667"), "read back only when set (funcs L901-902)"),
        "envs": _same("env", _d(f"{C}#L594"), "not read back: funcs L893-898"),
        "groupAdds": _read("group_add", _d(f"{C}#L1122"), "funcs L974"),
        "healthcheck": _state_only(
            "healthcheck",
            _d(f"{C}#L1045"),
            True,
            "not ForceNew and not in Update (funcs L1016-1019): a new check reaches Docker only with a "
            "replacement; read back (funcs L960-961), so refresh shows the running one; MaxItems 1",
        ),
        "image": _read("image", _d(f"{C}#L145"), "read back as the image id when given one (funcs L840-845)"),
        "init": _state_only(
            "init", _d(f"{C}#L1126"), True, "not ForceNew and not in Update; read back (funcs L864-868)"
        ),
        "ipcMode": _read("ipc_mode", _d(f"{C}#L1115"), "funcs L973"),
        "labels": _same("labels", _d(f"{C}#L837"), "not read back: funcs L893-898"),
        "logDriver": _read("log_driver", _d(f"{C}#L891"), "funcs L951"),
        "logOpts": _read("log_opts", _d(f"{C}#L898"), "read back only when set (funcs L952, L983-988)"),
        "logs": _state_only("logs", _d(f"{C}#L100"), False, "create-only, with attach (funcs L634-669)"),
        "mustRun": Fact(
            "must_run",
            replaces=False,
            applied=True,
            read_back=True,
            sensitive=False,
            source=_d(f"{CF}#L998"),
            note="Update only starts a container when it goes false -> true (funcs L998-1013); Read sets "
            "it false for a container that is not running (funcs L810-822; one in its restart backoff reads as "
            "running, State.Running) and never back to true, and reads ports only while it runs or must_run is "
            "true (L797-805): after a refresh of a stopped one the next up replaces it (ports, ForceNew)",
        ),
        "name": _read("name", _d(f"{C}#L54"), "funcs L828"),
        "networksAdvanced": _same(
            "networks_advanced",
            _d(f"{C}#L913"),
            "never set by Read: it sets it only where the state's set is empty (funcs L786-796), and GetOk is "
            "false for an empty set, so no drift shows",
        ),
        "ports": _read(
            "ports",
            _d(f"{C}#L491"),
            "read from NetworkSettings.Ports when the container runs or must_run is true, and only when "
            "set (funcs L800-806)",
        ),
        "privileged": _read("privileged", _d(f"{C}#L660"), "funcs L900"),
        "restart": Fact(
            "restart",
            replaces=False,
            applied=True,
            read_back=True,
            sensitive=False,
            source=_d(f"{CF}#L1017"),
            note="Update calls ContainerUpdate with the restart policy (funcs L1052-1068); read back L857",
        ),
        "shmSize": _read("shm_size", _d(f"{C}#L867"), "funcs L945"),
        "uploads": _same(
            "upload",
            _d(f"{C}#L991"),
            "not read back (funcs L959); the nested `content` is ForceNew but not Sensitive (container.go "
            "L994-1000): a secret upload stays secret only as a secret Output",
        ),
        "volumes": _same("volumes", _d(f"{C}#L438"), "not read back (funcs L882)"),
        "wait": _state_only(
            "wait",
            _d(f"{C}#L79"),
            False,
            "create-only: the health wait runs in Create (funcs L590-628), never in Update",
        ),
        "waitTimeout": _state_only("wait_timeout", _d(f"{C}#L86"), False, "create-only (funcs L614)"),
    },
    REMOTE_IMAGE: {
        "name": Fact(
            "name",
            replaces=True,
            applied=True,
            read_back=False,
            sensitive=False,
            source=_d("internal/provider/resource_docker_image.go#L40"),
            note="Read looks the image up by this name and drops it from state if it is gone "
            "(image_funcs L113-122); it sets only image_id and repo_digest",
        ),
        "keepLocally": _state_only(
            "keep_locally",
            _d("internal/provider/resource_docker_image.go#L55"),
            False,
            "Delete reads it from state (image_funcs L190): a change matters only at the next delete",
        ),
        "triggers": _same("triggers", _d("internal/provider/resource_docker_image.go#L88"), "a map; unused here"),
        "pullTriggers": _same("pull_triggers", _d("internal/provider/resource_docker_image.go#L65"), "unused here"),
        "platform": _same("platform", _d("internal/provider/resource_docker_image.go#L95"), "unused here"),
    },
    VOLUME: {
        "name": _read("name", _d("internal/provider/resource_docker_volume.go#L46"), "Computed; Read L308"),
        "labels": _read(
            "labels",
            _d("internal/provider/resource_docker_volume.go#L52"),
            "read back from the host (L309): the project ignores changes to it on the kept (retain_on_delete) cache",
        ),
    },
    NETWORK: {
        "name": _read("name", _d("internal/provider/resource_docker_network.go#L29"), "network_funcs L175"),
        "driver": _read("driver", _d("internal/provider/resource_docker_network.go#L44"), "network_funcs L177"),
    },
    RANDOM_PASSWORD: {
        "length": _same("length", f"{RANDOM} internal/provider/resource_password.go#L585", "Read is a no-op (L93-95)"),
        "special": _same("special", f"{RANDOM} internal/provider/resource_password.go#L604"),
        "result": Fact(
            "result",
            replaces=False,
            applied=False,
            read_back=False,
            sensitive=True,
            source=f"{RANDOM} internal/provider/resource_password.go#L725",
            note="an output, not an input: a secret in state",
        ),
    },
    DOCKER_PROVIDER: {
        "host": Fact(
            "host",
            replaces=False,
            applied=True,
            read_back=False,
            sensitive=False,
            source=_d("internal/provider/provider.go#L45"),
            note="no provider config field is ForceNew: a change re-points the provider, replaces nothing",
        ),
        "sshOpts": Fact(
            "ssh_opts",
            replaces=False,
            applied=True,
            read_back=False,
            sensitive=False,
            source=_d("internal/provider/provider.go#L65"),
        ),
    },
}


def _command(sub: str, conn: bool) -> dict[str, Fact]:
    """pulumi-command: only `triggers` is replaceOnChanges; Update re-runs `update` (else `create`) with every
    new input; there is no Read, so the default returns the state unchanged (pulumi-go-provider v1.3.0
    infer/resource.go L1353-1363)."""
    ctl = f"{COMMAND} provider/pkg/provider/{sub}/commandController.go"
    update = f"{ctl}#L{29 if sub == 'local' else 27}"
    base = "local/base.go" if sub == "local" else "remote/command.go"
    lines = (
        {"stdin": 25, "environment": 29, "logging": 26}
        if sub == "local"
        else {"stdin": 44, "environment": 47, "logging": 45}
    )
    facts = {
        "triggers": Fact(
            "triggers",
            replaces=True,
            applied=True,
            read_back=False,
            sensitive=False,
            source=f"{COMMAND} provider/pkg/provider/common/inputs.go#L10",
            note="the SDK also sets replace_on_changes=['triggers[*]']",
        ),
        "create": Fact("create", False, True, False, False, update, "Update runs `create` when no `update` is given"),
        "update": Fact(
            "update",
            False,
            True,
            False,
            False,
            f"{COMMAND} provider/pkg/provider/common/inputs.go#L13",
            "what a change of any other input runs (`create` when it is not given)",
        ),
        "stdin": Fact("stdin", False, True, False, False, f"{COMMAND} provider/pkg/provider/{base}#L{lines['stdin']}"),
        "environment": Fact(
            "environment", False, True, False, False, f"{COMMAND} provider/pkg/provider/{base}#L{lines['environment']}"
        ),
        "logging": Fact(
            "logging",
            False,
            True,
            False,
            False,
            f"{COMMAND} provider/pkg/provider/{base}#L{lines['logging']}",
            "which stream the engine shows; both are outputs whatever it says",
        ),
    }
    if conn:
        facts["connection"] = Fact(
            "connection",
            replaces=False,
            applied=True,
            read_back=False,
            sensitive=True,
            source=f"{COMMAND} provider/pkg/provider/remote/command.go#L46",
            note='provider:"secret"; a new connection is used by the re-run, replaces nothing',
        )
    return facts


FACTS[LOCAL_COMMAND] = _command("local", conn=False)
FACTS[REMOTE_COMMAND] = _command("remote", conn=True)

# pulumi-docker's provider/resources.go: the only per-resource DeleteBeforeReplace is the container's.
DELETE_BEFORE_REPLACE: dict[str, Fact] = {
    CONTAINER: Fact(
        "docker_container",
        replaces=True,
        applied=True,
        read_back=False,
        sensitive=False,
        source=f"{PULUMI_DOCKER} provider/resources.go#L114",
        note="the provider asks for delete-first when a ForceNew field changed; a replacement the engine "
        "starts (replace_on_changes, a replacement trigger, replace_with) is delete-first only where the "
        "program says so (pulumi/pulumi v3.259.0 pkg/resource/deploy/step_generator.go L2040-2046)",
    ),
}


@dataclass(frozen=True)
class RunOutcome:
    """What a one-shot run that fails leaves in Pulumi's state, so what the next `pulumi up` does with it."""

    keeps_state: bool
    source: str
    note: str


# A container that runs to completion (attach, must_run false) succeeds whatever its exit code: create waits
# for the exit and discards the code (funcs L657-663); Read records it (L815-816). It stays in state, and
# the next `pulumi up` sees no change. A wait or log stream that breaks after the id was set (L460, L661-666)
# is an initialization error: kept too. pulumi-command returns a failed run's error without
# ResourceInitFailedError, so pulumi-go-provider drops the state: the next `pulumi up` runs it again.
FAILED_RUN: dict[str, RunOutcome] = {
    CONTAINER: RunOutcome(
        True,
        _d(f"{CF}#L657-673"),
        "exit code kept in state, the create reported as a success; the next up re-reads it and changes nothing",
    ),
    LOCAL_COMMAND: RunOutcome(
        False,
        "pulumi/pulumi-go-provider@v1.3.0 infer/resource.go#L1291-1292",
        "a plain error from pulumi-command (provider/pkg/provider/local/commandController.go#L55-56): no state",
    ),
    REMOTE_COMMAND: RunOutcome(
        False,
        "pulumi/pulumi-go-provider@v1.3.0 infer/resource.go#L1291-1292",
        "a plain error from pulumi-command (provider/pkg/provider/remote/commandController.go#L57-59): no state",
    ),
}


def failed_run_keeps_state(type_token: str) -> bool:
    """Whether a one-shot run of this type that fails stays in state (so a plain `pulumi up` cannot retry it)."""
    outcome = FAILED_RUN.get(type_token)
    return True if outcome is None else outcome.keeps_state


def fact(type_token: str, field: str) -> Fact | None:
    return FACTS.get(type_token, {}).get(field)


def replace_fields(type_token: str) -> frozenset[str]:
    """The fields of the type this table knows that force a replacement."""
    return frozenset(name for name, f in FACTS.get(type_token, {}).items() if f.replaces)


def delete_before_replace(type_token: str) -> bool:
    """Whether the provider itself replaces this type delete-first (pulumi-docker: the Container only)."""
    return type_token in DELETE_BEFORE_REPLACE


def provider_config_replaces(provider: str) -> frozenset[str]:
    """Provider config fields whose change replaces every resource of the provider: none for docker."""
    return frozenset(name for name, f in FACTS.get(f"pulumi:providers:{provider}", {}).items() if f.replaces)
