"""Each day-two operation, as the engine will take it: the predicted steps, their order and the serving gap.

Plans of the real stack files before and after the change (the program under the SDK's mocks), then the
engine's replacement rules (components/planning/steps.py) over the two. Each test states what `pulumi up`
does and fails if one of the defects of the day-two issue comes back.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from components.planning.steps import Resource, predict
from components.tools.planned import Plan
from components.tools.review import Diff, diff
from tests.conftest import stack_file
from tests.stacks import plan_values

Edit = Callable[[dict[str, Any], dict[str, Any]], None]  # (values, secure) -> None, in place


def _write(tmp_path: Path, name: str, values: dict[str, Any], secure: dict[str, Any], stack: str = "day2") -> Plan:
    """Plan these values as stack `stack` (one name before and after: the stack's name is in labels)."""
    return plan_values(values, tmp_path / name, secure, stack)


def day_two(tmp_path: Path, stack: str, edit: Edit, secure: dict[str, Any] | None = None) -> Diff:
    """What `pulumi up` does to a deployment of `stack` (with these secure values) after `edit`."""
    sf = stack_file(stack)
    values = {k: v for k, v in copy.deepcopy(sf.values).items() if k not in sf.secure}
    secrets = {k: v for k, v in copy.deepcopy(sf.values).items() if k in sf.secure} | (secure or {})
    before = _write(tmp_path, "before", values, secrets)
    edit(values, secrets)
    after = _write(tmp_path, "after", values, secrets)
    return diff(before.as_json(), after, "before")


def ops(d: Diff) -> list[tuple[str, str]]:
    """The steps as (op, resource)."""
    return [(line.split()[0], line.split()[1].rstrip(":")) for line in d.steps]


def index(d: Diff, op: str, name: str) -> int:
    return ops(d).index((op, name))


def change_of(d: Diff, name: str) -> str:
    return next(c.kind for c in d.changes if c.name == name)


def _set(path: str, value: Any) -> Edit:
    def edit(values: dict[str, Any], secure: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = values
        for p in parents:
            node = node[p]
        node[last] = value

    return edit


# --------------------------------------------------------------------------- single host


def test_a_model_change_downloads_while_the_old_server_serves(tmp_path: Path) -> None:
    d = day_two(tmp_path, "small-chat", _set("vllm.model", "Qwen/Qwen2.5-7B-Instruct-AWQ"))
    # the new download runs first; only then is the old server deleted, and the new one created
    assert (
        index(d, "create", "vllm-prefetch")
        < index(d, "delete", "vllm-container")
        < index(d, "create", "vllm-container")
    )
    (outage,) = [o for o in d.outages if o.startswith("vllm-container")]
    assert outage.startswith("vllm-container: down from step") and "runs in between" not in outage
    assert "while" in outage and "weights load" in outage
    assert change_of(d, "vllm-container") == "replace" and change_of(d, "vllm-prefetch") == "replace"
    assert "embeddings-container" not in {c.name for c in d.changes}, "the embeddings server is untouched"
    assert "vllm-cache" not in {c.name for c in d.changes}, "the cache stays"


def test_the_old_gate_through_a_label_would_delete_the_server_before_the_download() -> None:
    """The defect this project had: the server's labels took the download's exit code. A replaced download
    (delete-before-replace) makes that input unknown; labels force a replacement; so the engine deletes the
    server first, and it is down for the whole download."""
    container = "docker:index/container:Container"
    fetch_old = Resource("fetch", container, {"command": ["dl", "a"]}, {"provider": "p"}, True)
    fetch_new = Resource("fetch", container, {"command": ["dl", "b"]}, {"provider": "p"}, True)
    server_old = Resource(
        "server",
        container,
        {"command": ["serve", "a"], "labels": [{"label": "fetched", "value": "a"}]},
        {"provider": "p", "dependencies": ["fetch"], "property_dependencies": {"labels": ["fetch"]}},
        True,
    )
    server_new = Resource(
        "server", container, {**server_old.inputs, "command": ["serve", "b"]}, server_old.options, True
    )
    steps, _ = predict([fetch_old, server_old], [fetch_new, server_new])
    assert [(s.op, s.name) for s in steps] == [
        ("delete", "server"),  # deleted first: its labels would be unknown
        ("delete", "fetch"),
        ("create", "fetch"),  # the download, with no server
        ("create", "server"),
    ]
    # ordered by depends_on alone, the server serves through the download
    plain = Resource("server", container, server_old.inputs, {"provider": "p", "dependencies": ["fetch"]}, True)
    steps, _ = predict(
        [fetch_old, plain], [fetch_new, Resource("server", container, server_new.inputs, plain.options, True)]
    )
    assert [(s.op, s.name) for s in steps][:3] == [("delete", "fetch"), ("create", "fetch"), ("delete", "server")]


def test_an_image_bump_pulls_first_then_replaces_the_container(tmp_path: Path) -> None:
    d = day_two(tmp_path, "small-chat", _set("embeddings.image", "michaelf34/infinity:0.0.76-cpu"))
    assert index(d, "create", "embeddings-image") < index(d, "delete", "embeddings-container")
    assert change_of(d, "embeddings-container") == "replace"
    assert {c.name for c in d.changes} == {"embeddings-image", "embeddings-container"}
    # the old image resource goes after the program ends; keep_locally leaves it on the host
    assert ops(d)[-1] == ("delete", "embeddings-image")


def test_a_health_setting_replaces_the_container_instead_of_changing_nothing(tmp_path: Path) -> None:
    d = day_two(tmp_path, "small-chat", _set("vllm.health_interval", 30))
    assert change_of(d, "vllm-container") == "replace", "a healthcheck change reaches Docker only with a new container"
    assert ops(d) == [("delete", "vllm-container"), ("create", "vllm-container")]
    step = d.steps[0]
    assert "healthcheck" in step
    # without replace_on_changes "*", the provider would report an update that reaches nothing
    container = "docker:index/container:Container"
    hc = Resource("c", container, {"healthcheck": {"interval": "15s"}}, {"provider": "p"}, True)
    hc2 = Resource("c", container, {"healthcheck": {"interval": "30s"}}, {"provider": "p"}, True)
    steps, (verdict,) = predict([hc], [hc2])
    assert verdict.change == "unapplied" and verdict.unapplied == ["healthcheck"]
    assert steps[0].op == "unapplied"


def test_a_gpu_change_replaces_the_server_and_runs_the_preflight_again(tmp_path: Path) -> None:
    d = day_two(tmp_path, "small-chat", _set("vllm.gpus", [0]))
    assert change_of(d, "vllm-container") == "replace"
    assert change_of(d, "host-preflight") == "replace"
    assert index(d, "create", "host-preflight") < index(d, "delete", "vllm-container")


def test_a_container_rename_keeps_its_cache(tmp_path: Path) -> None:
    d = day_two(tmp_path, "small-chat", _set("vllm.container_name", "qwen"))
    names = {c.name for c in d.changes}
    assert "vllm-cache" not in names, "the volume keeps its name (ignore_changes): no new, empty cache"
    assert change_of(d, "vllm-container") == "replace"
    assert not [s for s in d.steps if s.startswith(("refused", "forgotten"))]


def test_rotating_the_hf_token_restarts_no_server(tmp_path: Path) -> None:
    old = {"hf_token": {"secure": "v1:AAAA:token-one"}}
    d = day_two(tmp_path, "big-chat", lambda v, s: s.update(hf_token={"secure": "v1:AAAA:token-two"}), old)
    # Only the download carries it for vLLM; Infinity downloads its model at its own start, so it needs it
    assert [c.name for c in d.changes] == ["vllm-prefetch", "embeddings-container"]
    assert ops(d)[0] == ("update", "vllm-prefetch"), "a new token alone runs no download again (update: true)"
    assert not [o for o in d.outages if o.startswith("vllm")], "no vLLM server restarts"


def test_rotating_grafanas_password_runs_the_reset_again(tmp_path: Path) -> None:
    old = {"grafana_admin_password": {"secure": "v1:AAAA:pw-one"}}
    d = day_two(tmp_path, "big-chat", lambda v, s: s.update(grafana_admin_password={"secure": "v1:AAAA:pw-two"}), old)
    assert change_of(d, "grafana-password-reset") == "update", "its stdin changes: pulumi-command runs it again"
    assert change_of(d, "grafana-container") == "replace"
    assert index(d, "create", "grafana-container") < index(d, "update", "grafana-password-reset")
    assert not any("vllm" in c.name for c in d.changes)


# --------------------------------------------------------------------------- the fleet


def test_moving_the_embeddings_to_another_host_recreates_all_it_needs_there(tmp_path: Path) -> None:
    d = day_two(tmp_path, "fleet", _set("embeddings.host", "gpu-a"))
    for name in ("embeddings-image", "embeddings-cache", "embeddings-container"):
        assert change_of(d, name) == "replace", f"{name} must be made on gpu-a, not only recorded there"
    assert not [s for s in d.steps if s.startswith("moved")], "a provider change alone recreates nothing"
    # the image is pulled and the volume made on the new host before the container is created there
    assert index(d, "create", "embeddings-image") < index(d, "create", "embeddings-container")
    assert index(d, "create", "embeddings-cache") < index(d, "create", "embeddings-container")
    # the old cache stays on gpu-b: dropped from state, never deleted
    assert ("forgotten", "embeddings-cache") in ops(d)
    # the gateway routes to its new address
    assert change_of(d, "gateway-container") == "replace"


def test_a_server_removed_from_the_fleet_goes_and_its_cache_stays(tmp_path: Path) -> None:
    def remove(values: dict[str, Any], secure: dict[str, Any]) -> None:
        del values["servers"]["coder"]

    d = day_two(tmp_path, "fleet", remove)
    assert ("delete", "coder-container") in ops(d) and ("delete", "coder-image") in ops(d)
    assert ("forgotten", "coder-cache") in ops(d), "never deleted, never refused"
    assert not [s for s in d.steps if s.startswith("refused")]
    assert change_of(d, "gateway-container") == "replace", "the gateway stops routing to it"
    assert not any(c.name.startswith(("chat-a", "chat-b")) for c in d.changes), "the replicas are untouched"


def test_a_server_added_to_the_fleet_is_created_and_nothing_else_restarts_but_the_router(tmp_path: Path) -> None:
    coder: dict[str, Any] = {}

    def remove(values: dict[str, Any], secure: dict[str, Any]) -> None:
        coder.update(values["servers"].pop("coder"))

    sf = stack_file("fleet")
    values = {k: v for k, v in copy.deepcopy(sf.values).items() if k not in sf.secure}
    secrets = {k: v for k, v in copy.deepcopy(sf.values).items() if k in sf.secure}
    remove(values, secrets)
    before = _write(tmp_path, "before", values, secrets)
    values["servers"]["coder"] = coder
    after = _write(tmp_path, "after", values, secrets)
    d = diff(before.as_json(), after, "before")
    for name in ("coder-image", "coder-cache", "coder-prefetch", "coder-container"):
        assert change_of(d, name) == "create"
    assert index(d, "create", "coder-prefetch") < index(d, "create", "coder-container")
    restarted = {c.name for c in d.changes if c.kind == "replace" and c.type.endswith(":Container")}
    # The router learns the new backend, Prometheus its target, and the chat UI its new model (qwen2.5-7b):
    # the UI reads its model list from its environment at start (ENABLE_PERSISTENT_CONFIG=false).
    assert restarted <= {"gateway-container", "prometheus-container", "chat-ui-container"}, restarted
    ui = next(c for c in d.changes if c.name == "chat-ui-container")
    assert any("envs" in setting for setting in ui.settings), ui.settings


@pytest.mark.parametrize("stack", ["small-chat", "big-chat", "fleet"])
def test_no_change_is_no_step(tmp_path: Path, stack: str) -> None:
    d = day_two(tmp_path, stack, lambda v, s: None)
    assert d.changes == [] and d.steps == [] and d.outages == []


# --------------------------------------------------------------------------- what the state holds


@pytest.mark.parametrize("stack", ["big-chat", "fleet"])
def test_a_file_uploaded_with_a_secret_in_it_stays_a_secret_in_state(stack: str) -> None:
    """Upload content is not sensitive in the provider's schema (resource_docker_container.go L994-1000), and
    the engine marks an output secret only when the whole top-level input was (pulumi/pulumi v3.259.0
    step_executor.go L556-566): so a container with a secret file sends its whole `uploads` as a secret and
    lists it in additional_secret_outputs. The node-exporter password file, the gateway key Prometheus reads,
    the bcrypt hash in node-exporter's web config and the Alertmanager webhook are such files."""
    from tests.conftest import shipped_plan

    plan = shipped_plan(stack)
    with_secret = [r for r in plan.of_type(":Container") if "[secret]" in str(r.inputs.get("uploads"))]
    assert {r.name for r in with_secret} >= {"prometheus-container"}
    assert any("node-exporter" in r.name for r in with_secret)
    for r in with_secret:
        assert "uploads" in r.options["secret_inputs"], r.name
        assert "uploads" in r.options["additional_secret_outputs"], r.name
    for r in plan.of_type(":Container"):
        if r not in with_secret and r.inputs.get("uploads"):
            assert "uploads" not in r.options["secret_inputs"], f"{r.name}: no secret, shown as it is"


@pytest.mark.parametrize("stack", ["small-chat", "big-chat", "fleet"])
def test_every_one_shot_run_is_tried_again_by_the_next_up_after_a_failure(stack: str) -> None:
    """A download (or Grafana's reset) that fails must leave nothing in state: a Container that ran once keeps
    its exit code, and every later `pulumi up` would fail on it for ever (a transient Hub error included), or,
    with its wait broken, keep no exit code at all and let the server start on a partial cache."""
    from components.planning.provider_facts import failed_run_keeps_state
    from tests.conftest import shipped_plan

    plan = shipped_plan(stack)
    runs = [r for r in plan.resources if r.name.endswith(("-prefetch", "-password-reset", "-admin-reset"))]
    assert runs
    for r in runs:
        assert not failed_run_keeps_state(r.type), f"{r.name} ({r.type}) keeps a failed run in state"
    # and each server waits for its download, so none starts before it has succeeded
    for r in plan.services:
        fetch = f"{r.parent}-prefetch"
        if any(x.name == fetch for x in runs):
            assert fetch in r.options["dependencies"]


def test_replicas_replaced_in_one_update_are_said_to_go_down_together(tmp_path: Path) -> None:
    """The engine runs independent steps at the same time: both replicas of a model replaced in one update
    leave it unserved, whatever order the steps are listed in."""

    def slower_checks(values: dict[str, Any], secure: dict[str, Any]) -> None:
        for name in ("chat-a", "chat-b"):
            values["servers"][name]["health_interval"] = 30

    both = day_two(tmp_path, "fleet", slower_checks)
    (note,) = [o for o in both.outages if o.startswith("llama-3.3-70b:")]
    assert "every replica (chat-a, chat-b)" in note and "one replica per `pulumi up`" in note
    one = day_two(tmp_path / "one", "fleet", _set("servers.chat-a.health_interval", 30))
    assert not [o for o in one.outages if o.startswith("llama-3.3-70b:")], "chat-b serves while chat-a is replaced"


def test_a_resource_that_changes_type_is_deleted_and_created() -> None:
    """A URN holds the type: the download that became a command is another resource; the old container goes."""
    old = Resource("fetch", "docker:index/container:Container", {"command": ["dl"]}, {"provider": "p"}, True)
    new = Resource("fetch", "command:local:Command", {"create": "docker run dl"}, {}, True)
    steps, verdicts = predict([old], [new])
    assert [(s.op, s.type) for s in steps] == [("create", new.type), ("delete", old.type)]
    assert [(v.change, v.type) for v in verdicts] == [("create", new.type), ("delete", old.type)]


def test_moving_the_monitoring_to_another_host_recreates_its_services_there(tmp_path: Path) -> None:
    """Issue 26 defect 1: without a host trigger, Prometheus's and Grafana's images and volumes were only
    recorded under gpu-b's provider (never pulled or made there), and every later `up` failed to create the
    containers on gpu-b ("unable to pull image")."""
    d = day_two(tmp_path, "fleet", _set("monitoring.host", "gpu-b"))
    for name in ("prometheus", "grafana"):
        for part in ("image", "cache", "container"):
            assert change_of(d, f"{name}-{part}") == "replace", f"{name}-{part} must be made on gpu-b"
        assert index(d, "create", f"{name}-image") < index(d, "create", f"{name}-container")
        assert index(d, "create", f"{name}-cache") < index(d, "create", f"{name}-container")
        assert ("forgotten", f"{name}-cache") in ops(d), "the old data stays on gpu-a"
    assert not [s for s in d.steps if s.startswith("moved")], "a provider change alone recreates nothing"
    # the reset runs against the new Grafana, after it is up
    assert index(d, "create", "grafana-container") < index(d, "create", "grafana-password-reset")


def test_pointing_a_host_at_another_machine_recreates_all_of_it_there(tmp_path: Path) -> None:
    """Issue 26 defect 2: a new `docker` URL only updated the provider; nothing was deployed on the new
    machine and the outputs pointed at a box with no containers. The machine is the provider's replacement
    trigger, and every resource on the host is replaced with the provider (replace_with)."""
    d = day_two(tmp_path, "fleet", _set("hosts.gpu-b.docker", "ssh://ops@gpu-c.lan"))
    assert change_of(d, "gpu-b-docker") == "replace"
    on_b = {c.name for c in d.changes if c.kind == "replace"}
    for name in ("coder-image", "coder-cache", "coder-prefetch", "coder-container", "gpu-b-node-exporter-container"):
        assert name in on_b, f"{name} must be made on the new machine"
    assert not any(c.name.startswith(("gpu-a", "chat-a")) for c in d.changes if c.kind == "replace"), "gpu-a stays"
    # the new provider exists before anything is made through it; the old cache stays on the old machine
    assert index(d, "create", "gpu-b-docker") < index(d, "create", "coder-image")
    assert ("forgotten", "coder-cache") in ops(d)
    assert not [s for s in d.steps if s.startswith("moved")]


def test_a_stack_deployed_before_the_machine_trigger_replaces_nothing_for_it() -> None:
    """The engine replaces on a trigger only when the old one was set (SG v3.259.0 L3626-3640): a provider
    deployed without one is not replaced by gaining one, and so nothing on its host is."""
    provider = "pulumi:providers:docker"
    old = Resource("h-docker", provider, {"host": "unix:///a.sock"}, {}, True)
    new = Resource("h-docker", provider, {"host": "unix:///a.sock"}, {"replacement_trigger": "unix:///a.sock"}, True)
    image = "docker:index/remoteImage:RemoteImage"
    img_old = Resource("i", image, {"name": "x"}, {"provider": "h-docker"}, True)
    img_new = Resource("i", image, {"name": "x"}, {"provider": "h-docker", "replace_with": ["h-docker"]}, True)
    assert predict([old, img_old], [new, img_new]) == ([], [])


@pytest.mark.parametrize(
    ("stack", "key", "resource"), [("small-chat", "vllm", "vllm-cache"), ("big-chat", "embeddings", "embeddings-cache")]
)
def test_a_renamed_container_names_its_cache_as_before_so_destroy_then_up_finds_it(
    tmp_path: Path, stack: str, key: str, resource: str
) -> None:
    """Issue 26 defect 5: the cache's name followed the container's. ignore_changes keeps the old name only
    while Pulumi's state does: after a rename, `destroy` then `up` made `<new name>-hf-cache` beside the 40 GB
    cache. The name now follows the server's key (the embeddings': a fixed name), which a rename leaves."""
    sf = stack_file(stack)
    values = {k: v for k, v in copy.deepcopy(sf.values).items() if k not in sf.secure}
    secrets = {k: v for k, v in copy.deepcopy(sf.values).items() if k in sf.secure}
    before = _write(tmp_path, "before", values, secrets)
    values[key]["container_name"] = "renamed"
    after = _write(tmp_path, "after", values, secrets)
    assert after.by_name(resource).inputs["name"] == before.by_name(resource).inputs["name"]


def test_a_new_cache_volume_name_is_kept_and_the_container_mounts_the_old_one(tmp_path: Path) -> None:
    """Issue 26 defect 12: ignore_changes on the volume's name holds, and the container takes the volume's
    output name, which stays the old one: the plan showed the volume renamed and the download filling an
    empty cache. It now shows the container mounting the kept volume, and what a destroy would cost."""
    d = day_two(tmp_path, "small-chat", _set("vllm.cache_volume", "elsewhere"))
    assert "vllm-cache" not in {c.name for c in d.changes}
    # the download mounts the kept volume: nothing runs again but the preflight (its disk check is from settings)
    assert [c.name for c in d.changes] == ["host-preflight"], d.changes
    (kept,) = d.kept
    assert kept.startswith("vllm-cache: keeps name vllm-hf-cache") and "makes elsewhere" in kept
    assert "set the stack's cache_volume to vllm-hf-cache" in kept


def test_at_the_end_the_engine_deletes_dependents_before_what_they_depend_on(tmp_path: Path) -> None:
    """Issue 26 defect 14: the replaced download (which runs the old image) is deleted before the old image,
    as ScheduleDeletes orders the end of an update; the plan listed them the other way round."""
    d = day_two(tmp_path, "small-chat", _set("vllm.image", "mixa3607/vllm-gfx906:0.11.0-rocm-6.4.4-new"))
    assert change_of(d, "vllm-image") == "replace" and change_of(d, "vllm-prefetch") == "replace"
    assert index(d, "delete", "vllm-prefetch") < index(d, "delete", "vllm-image")

    # and a removed server's container goes before its image, its cache is forgotten before neither matters
    def remove(values: dict[str, Any], secure: dict[str, Any]) -> None:
        del values["servers"]["coder"]

    r = day_two(tmp_path / "r", "fleet", remove)
    assert (
        index(r, "delete", "coder-container") < index(r, "delete", "coder-prefetch") < index(r, "delete", "coder-image")
    )


@pytest.mark.parametrize("stack", ["small-chat", "big-chat", "fleet"])
def test_every_one_shot_command_stops_itself_before_the_engine_gives_up(stack: str) -> None:
    """Issue 26 defect 8: over SSH, pulumi-command never ends a command when its custom timeout passes
    (remote/commandOutputs.go L95 runs it without the context), so a hung `grafana cli` blocked `pulumi up`.
    Each command over SSH runs inside `timeout`, whose deadline (and kill) come before the resource's
    timeout; a local one is ended by the engine's timeout (exec.CommandContext, local/commandOutputs.go L59)."""
    import shlex

    from components.planning.timing import KILL_AFTER_S, parse_go_duration
    from tests.conftest import shipped_plan

    commands = shipped_plan(stack).of_type(":Command")
    assert commands
    for r in commands:
        create = r.options["custom_timeouts"]["create"]
        if r.type == "command:remote:Command":
            words = shlex.split(r.inputs["create"])
            assert words[:3] == ["timeout", "-k", str(KILL_AFTER_S)] and words[4:6] == ["sh", "-c"], r.name
            assert int(words[3]) + KILL_AFTER_S < parse_go_duration(create), r.name
        else:
            assert parse_go_duration(create) > 0, r.name
    if stack == "fleet":
        assert {r.type for r in commands} == {"command:remote:Command"}, "the fleet's hosts pin their keys"


@pytest.mark.parametrize("stack", ["small-chat", "big-chat", "fleet"])
def test_every_command_keeps_its_output_secret_and_logs_one_stream_at_most(stack: str) -> None:
    """Issue 26 defect 9: a command's stdout and stderr were plain text in the state and in the log. They are
    secret outputs; the download logs only stderr (huggingface_hub's progress), the preflight its stdout
    (its verdict line), Grafana's reset nothing."""
    from tests.conftest import shipped_plan

    logs = {}
    for r in shipped_plan(stack).of_type(":Command"):
        assert {"stdout", "stderr"} <= set(r.options["additional_secret_outputs"]), r.name
        logs[r.name.rsplit("-", 1)[-1]] = r.inputs["logging"]
    assert logs["prefetch"] == "stderr" and logs["preflight"] == "stdout"
    if stack != "small-chat":
        assert logs["reset"] == "none"


def test_a_host_renamed_on_the_same_machine_is_refused_with_the_state_renames_that_get_out(tmp_path: Path) -> None:
    """Issue 26 defect 6: renaming a host in `hosts:` makes its new resources before the old go, and they clash
    on the machine (node-exporter's container name, the stack network's). The plan says so, with the
    rename in the exported state of each resource the host's name names (their URNs from the old plan)."""

    def rename(values: dict[str, Any], secure: dict[str, Any]) -> None:
        values["hosts"]["gpu-c"] = values["hosts"].pop("gpu-a")
        for section in (values["servers"]["chat-a"], values["monitoring"], values["chat_ui"], values["gateway"]):
            section["host"] = "gpu-c"

    d = day_two(tmp_path, "fleet", rename)
    (refusal,) = d.refused
    assert refusal.startswith("host gpu-a is renamed gpu-c on the same machine (ssh://ops@gpu-a.lan)")
    stack = "urn:pulumi:day2::rocm-inference::"
    for old, new in [
        ("rocm-inference:host:RocmHost::gpu-a", "gpu-c"),
        ("rocm-inference:host:RocmHost$pulumi:providers:docker::gpu-a-docker", "gpu-c-docker"),
        ("rocm-inference:host:RocmHost$docker:index/network:Network::gpu-a-network", "gpu-c-network"),
        (
            "rocm-inference:monitoring:Monitoring$docker:index/container:Container::gpu-a-node-exporter-container",
            "gpu-c-node-exporter-container",
        ),
    ]:
        assert f"'{stack}{old}={new}'" in refusal
    assert refusal.endswith("&& pulumi stack import --file state.json")
    assert "pulumi stack export --file state.json && python -m components.tools.state_rename state.json " in refusal

    # a host removed and another added on another machine is no rename
    def swap(values: dict[str, Any], secure: dict[str, Any]) -> None:
        rename(values, secure)
        values["hosts"]["gpu-c"]["docker"] = "ssh://ops@gpu-c.lan"

    assert day_two(tmp_path / "other", "fleet", swap).refused == []


def test_a_replaced_volume_takes_the_programs_name_ignore_changes_or_not(tmp_path: Path) -> None:
    """Issue 26 defect 16: ignore_changes counts for a diff and an update, not on a replacement, which is made
    from the program's inputs (SG v3.259.0 L2004-2023): a cache moved to another host is made there under the
    stack's name, so nothing is "kept by the state" for it."""

    def move_and_rename(values: dict[str, Any], secure: dict[str, Any]) -> None:
        values["embeddings"]["host"] = "gpu-a"
        values["embeddings"]["cache_volume"] = "moved-cache"

    d = day_two(tmp_path, "fleet", move_and_rename)
    assert change_of(d, "embeddings-cache") == "replace"
    assert not [k for k in d.kept if k.startswith("embeddings-cache")], d.kept
    kept_only = day_two(tmp_path / "k", "fleet", _set("embeddings.cache_volume", "moved-cache"))
    assert [k.split(":")[0] for k in kept_only.kept] == ["embeddings-cache"]
