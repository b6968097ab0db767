"""What a real `pulumi up` would hit that the mocks accept: the Docker provider's own behaviour, from its source.

pulumi-docker 5.x bridges kreuzwerker/terraform-provider-docker v4.5.x; line numbers are at v4.5.0
(the files are unchanged from there to the provider's HEAD). pulumi-command's are at v1.2.1.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pulumi
import pytest
import yaml

from components.planning.timing import go_duration, parse_go_duration
from components.program import run
from components.settings import read_stack_file
from components.settings.stackfile import stack_path
from components.tools.compose import to_compose
from components.tools.discover import DirectoryReader, discover
from components.tools.mocks import PlanMocks
from components.tools.planned import Plan, fake_image_id
from tests import stacks
from tests.conftest import ROOT, STACKS, shipped_plan
from tests.stacks import errors, set_key, values_of

HOSTS = Path(__file__).resolve().parent / "fixtures" / "hosts"
BUSYBOX_IMAGES = ("quay.io/prometheus/", "grafana/")
HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"


def plan_of(stack: str) -> Plan:
    return shipped_plan(stack)


def plan_values(values: dict[str, Any], tmp_path: Path, where: str = "variant") -> Plan:
    return stacks.plan_values(values, tmp_path / where)


# --------------------------------------------------------------------------- 1. timeouts


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (10, "10s"),
        (15, "15s"),
        (90, "1m30s"),
        (1200, "20m0s"),
        (1800, "30m0s"),
        (3600, "1h0m0s"),
        (7325, "2h2m5s"),
    ],
)
def test_go_duration_is_what_time_duration_string_prints(seconds: int, text: str) -> None:
    assert go_duration(seconds) == text
    assert parse_go_duration(text) == seconds


@pytest.mark.parametrize("stack", STACKS)
def test_create_timeouts_outlast_the_health_wait_and_the_pull(stack: str) -> None:
    """The health wait (`wait_timeout`) runs inside the container's create step, whose default is 20 minutes
    (resource_docker_container.go L12-14, L30-33; the wait: resource_docker_container_funcs.go L590-621).
    RemoteImage's create step has the same 20 minutes (resource_docker_image.go L10-12, L24-27)."""
    plan = plan_of(stack)
    settings = read_stack_file(stack_path(stack)).values
    containers = plan.services
    assert containers
    for c in containers:
        timeouts = c.options["custom_timeouts"]
        assert parse_go_duration(timeouts["create"]) > c.inputs["waitTimeout"], c.name
        assert parse_go_duration(timeouts["update"]) > c.inputs["waitTimeout"], c.name
        assert parse_go_duration(timeouts["delete"]) > c.inputs["destroyGraceSeconds"], c.name
    hosts = settings.get("hosts") or {"host": settings["host"]}
    for image in plan.of_type(":RemoteImage"):
        host = image.options["provider"].removesuffix("-docker")
        assert parse_go_duration(image.options["custom_timeouts"]["create"]) == hosts[host].get("pull_timeout", 3600)


def test_a_25_minute_load_gets_more_than_20_minutes(tmp_path: Path) -> None:
    values = set_key(values_of("big-chat"), "vllm.startup_timeout", 1500)
    values = set_key(values, "host.pull_timeout", 7200)
    plan = plan_values(values, tmp_path)
    vllm = plan.by_name("vllm-container")
    assert vllm.inputs["waitTimeout"] == 1500
    assert parse_go_duration(vllm.options["custom_timeouts"]["create"]) >= 1500 + 60
    assert plan.by_name("vllm-image").options["custom_timeouts"]["create"] == "2h0m0s"


def test_the_plan_shows_the_timeouts(capsys: pytest.CaptureFixture[str]) -> None:
    from components.tools.plan import main

    assert main(["big-chat"]) == 0
    out = capsys.readouterr().out
    assert "vllm-container (docker:index/container:Container)" in out
    assert "timeouts create 35m0s update 35m0s delete 3m0s" in out
    assert "timeouts create 1h0m0s" in out


# --------------------------------------------------------------------------- 2. kept volumes


PROTECTED_CHANGES = [
    ("vllm.gpus", [0], "vllm.tensor_parallel_size", 1),
    ("vllm.port", 8011, None, None),
    ("vllm.model", "Qwen/Qwen2.5-7B-Instruct-AWQ", None, None),
    ("embeddings.port", 8091, None, None),
    ("embeddings.model", "BAAI/bge-small-en-v1.5", None, None),
]


@pytest.mark.parametrize(("key", "value", "key2", "value2"), PROTECTED_CHANGES)
def test_no_cache_volume_changes_with_gpus_ports_or_model(
    tmp_path: Path, key: str, value: Any, key2: str | None, value2: Any
) -> None:
    """Volume labels force a replacement (resource_docker_volume.go L52), which would start an empty cache
    (the old one is retained, not deleted), and the provider reads the host volume's labels into state
    (L309). A cache volume's inputs must not move with the GPUs, ports or model, and its labels are ignored."""
    base = values_of("small-chat")
    changed = set_key(base, key, value)
    if key2:
        changed = set_key(changed, key2, value2)
    before, after = plan_values(base, tmp_path, "before"), plan_values(changed, tmp_path, "after")
    kept = [r for r in before.resources if r.options.get("retain_on_delete")]
    assert len(kept) == 2
    for r in kept:
        assert after.by_name(r.name).inputs == r.inputs, f"{r.name} would be replaced: an empty cache"
        assert r.options["ignore_changes"] == ["labels", "name"]
    # the guard is not vacuous: the change does reach the containers
    assert any(before.by_name(c.name).inputs != c.inputs for c in after.of_type(":Container"))


# --------------------------------------------------------------------------- 3. durations


@pytest.mark.parametrize("stack", STACKS)
def test_every_duration_the_program_writes_is_in_gos_canonical_form(stack: str) -> None:
    """The provider reads durations back with time.Duration.String() (resource_docker_container_funcs.go
    L960-970): `1800s` returns as `30m0s`, a diff on every run."""
    plan = plan_of(stack)
    written = []
    for r in plan.resources:
        hc = r.inputs.get("healthcheck") or {}
        written += [hc[k] for k in ("interval", "timeout", "startPeriod", "startInterval") if k in hc]
        written += list((r.options.get("custom_timeouts") or {}).values())
    assert len(written) >= 12
    for text in written:
        assert go_duration(parse_go_duration(text)) == text


# --------------------------------------------------------------------------- 4. restart policy


@pytest.mark.parametrize("stack", STACKS)
def test_servers_restart_unless_stopped_without_a_retry_count(stack: str) -> None:
    """vLLM exits 0 on SIGTERM and on engine death (vllm/entrypoints/launcher.py serve_http L84-138 in
    v0.11.2: the handler cancels the server task, `terminate_if_errored` sets should_exit; nothing
    calls sys.exit), and on-failure never restarts an exit 0 (moby restartmanager.go L86-90). Docker
    refuses a retry count beside unless-stopped (api/types/container/hostconfig.go L322-328)."""
    plan = plan_of(stack)
    for c in plan.services:
        assert c.inputs["restart"] == "unless-stopped"
        assert "maxRetryCount" not in c.inputs
    for name, service in to_compose(plan)["services"].items():
        one_shot = name.endswith(("-prefetch", "-password-reset", "-admin-reset"))  # run to completion, never restarted
        assert service["restart"] == ("no" if one_shot else "unless-stopped"), name


# --------------------------------------------------------------------------- 5. the remote preflight


SSH_CASES = [
    ("no user", "ssh://gpu-box", HOST_KEY, "host.docker is 'ssh://gpu-box', which names no user"),
    (
        "no host key",
        "ssh://ops@gpu-box",
        None,
        "host.ssh_host_key is required for an ssh:// host while preflight is on",
    ),
]


@pytest.mark.parametrize(("case", "docker", "key", "expected"), SSH_CASES, ids=[c[0] for c in SSH_CASES])
def test_an_ssh_host_needs_the_user_and_a_pinned_host_key(
    case: str, docker: str, key: str | None, expected: str
) -> None:
    """pulumi-command's SSH client defaults the user to root (connection.go L57), reads no ~/.ssh/config, and
    skips host-key checking without host_key (L88-98)."""
    values = set_key(values_of("big-chat"), "host.docker", docker)
    if key:
        values = set_key(values, "host.ssh_host_key", key)
    found = errors(values)
    assert len(found) == 1 and f"rocm-inference:{expected}" in found[0], found
    assert errors(set_key(values, "host.preflight", False)) == [], "without the preflight, Docker's own ssh decides"


def test_an_ssh_host_without_a_key_or_agent_is_refused_by_the_program(mocks: PlanMocks, tmp_path: Path) -> None:
    """The preflight's SSH client tries private_key, a password, then the agent at SSH_AUTH_SOCK
    (connection.go L106-145), and reads no key files."""
    values = set_key(values_of("big-chat"), "host.docker", "ssh://ops@gpu-box")
    values = set_key(values, "host.ssh_host_key", HOST_KEY)
    path = tmp_path / "Pulumi.remote.yaml"
    path.write_text(yaml.safe_dump({"config": {f"rocm-inference:{k}": v for k, v in values.items()}}))
    pulumi.runtime.set_all_config({f"rocm-inference:{k}": json.dumps(v) for k, v in values.items()})
    with pytest.raises(pulumi.RunError) as err:
        run(path, ssh_agent=None)
    assert "needs rocm-inference:ssh_private_key" in str(err.value) and "SSH_AUTH_SOCK" in str(err.value)
    assert mocks.inputs == {}


def test_discover_over_ssh_records_the_host_key(tmp_path: Path) -> None:
    from components.planning.catalog import load_catalog
    from components.tools.discover import SNAPSHOT_SCRIPT, SnapshotReader, host_block

    root = tmp_path / "host"
    import shutil

    shutil.copytree(HOSTS / "dual-mi60", root, symlinks=True)
    (root / "etc/ssh").mkdir()
    (root / "etc/ssh/ssh_host_ed25519_key.pub").write_text(HOST_KEY + " root@gpu-box\n")
    out = subprocess.run(
        ["sh", "-s"],
        input=SNAPSHOT_SCRIPT,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "ROCM_ROOT": str(root)},
    ).stdout
    host = discover(SnapshotReader(out))
    assert host.ssh_host_key == HOST_KEY
    block = host_block(host, "ssh://ops@gpu-box", "gpu-box", load_catalog())
    assert block["ssh_host_key"] == HOST_KEY
    values = set_key(set_key(values_of("big-chat"), "host.docker", "ssh://ops@gpu-box"), "host.ssh_host_key", HOST_KEY)
    assert errors(values) == []


# --------------------------------------------------------------------------- 6. python in the images


@pytest.mark.parametrize("stack", STACKS)
def test_healthchecks_use_python3(stack: str) -> None:
    """Ubuntu (the ROCm images' base) has /usr/bin/python3, /usr/bin/python only with python-is-python3;
    Infinity's CPU image puts a stdlib venv with both first on PATH (Dockerfile.cpu_auto L98). The
    Prometheus images are busybox-based: wget, no python."""
    for c in plan_of(stack).services:
        busybox = c.inputs["image"] in {
            fake_image_id(r.inputs["name"])
            for r in plan_of(stack).of_type(":RemoteImage")
            if "prometheus/" in r.inputs["name"] or "grafana/" in r.inputs["name"]
        }
        tests = c.inputs["healthcheck"]["tests"]
        assert tests[:2] == (["CMD-SHELL", tests[1]] if busybox else ["CMD", "python3"]), c.name
        if busybox:
            assert tests[1].startswith("wget "), c.name


# --------------------------------------------------------------------------- 7. daemon-wide log options


def _preflight(tmp_path: Path, daemon_json: str) -> subprocess.CompletedProcess[str]:
    from tests.test_preflight import FAKE_DOCKER, check

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "docker").write_text(FAKE_DOCKER)
    (bin_dir / "docker").chmod(0o755)
    (tmp_path / "daemon.json").write_text(daemon_json)
    return check(bin_dir, PREFLIGHT_DAEMON_JSON=str(tmp_path / "daemon.json"))


def test_preflight_reports_daemon_log_opts_that_would_replace_every_container(tmp_path: Path) -> None:
    """log_opts is ForceNew (resource_docker_container.go L894-899) and Read stores the daemon-merged map
    (resource_docker_container_funcs.go L951-952, L983-989; moby daemon/logs.go mergeAndVerifyLogConfig)."""
    bad = _preflight(
        tmp_path,
        '{\n  "log-driver": "json-file",\n  "log-opts": {"max-size": "10m", "compress": "true", "tag": "{{.Name}}"}\n}\n',
    )
    assert bad.returncode == 1
    assert "sets log-opts compress tag, which Docker merges into every json-file container" in bad.stderr
    good = _preflight(tmp_path, '{"log-opts": {"max-size": "10m", "max-file": "3"}, "data-root": "/srv/docker"}')
    assert good.returncode == 0, good.stderr
    other_driver = _preflight(tmp_path, '{"log-driver": "journald", "log-opts": {"tag": "x"}}')
    assert other_driver.returncode == 0, other_driver.stderr


# --------------------------------------------------------------------------- test gaps


def test_discovery_follows_kfd_order_not_card_order() -> None:
    host = discover(DirectoryReader(HOSTS / "dual-mi50-kfd-order"))
    assert [(g.index, g.card, g.render) for g in host.gpus] == [(0, 2, 129), (1, 1, 128)]
    assert [g.pci for g in host.gpus] == ["0000:43:00.0", "0000:0a:00.0"]


def test_stack_files_are_found_from_the_project_root() -> None:
    assert stack_path("big-chat") == ROOT / "Pulumi.big-chat.yaml"


def test_an_agent_that_is_set_but_gone_is_refused_with_what_to_do(mocks: PlanMocks, tmp_path: Path) -> None:
    """Issue 26 defect 7: pulumi-command dials SSH_AUTH_SOCK for every remote command, even with
    ssh_private_key set (connection.go L131-144): a socket whose agent is gone failed every one of them. The
    program asks the agent for its keys first and refuses with what to do; a live agent passes."""
    import socket
    import threading

    from components.program import agent_answers

    values = set_key(values_of("big-chat"), "host.docker", "ssh://ops@gpu-box")
    values = set_key(values, "host.ssh_host_key", HOST_KEY)
    path = tmp_path / "Pulumi.remote.yaml"
    path.write_text(yaml.safe_dump({"config": {f"rocm-inference:{k}": v for k, v in values.items()}}))
    pulumi.runtime.set_all_config({f"rocm-inference:{k}": json.dumps(v) for k, v in values.items()})
    stale = str(tmp_path / "agent.gone")
    assert not agent_answers(stale)
    with pytest.raises(pulumi.RunError) as err:
        run(path, ssh_agent=stale)
    assert f"SSH_AUTH_SOCK is {stale!r}, where no SSH agent answers" in str(err.value)
    assert "env -u SSH_AUTH_SOCK pulumi up" in str(err.value) and mocks.inputs == {}
    # an agent that answers (no keys: SSH_AGENT_IDENTITIES_ANSWER with a count of 0)
    live = str(tmp_path / "agent.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(live)
    server.listen(1)

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            conn.recv(5)
            conn.sendall(b"\x00\x00\x00\x05\x0c\x00\x00\x00\x00")

    threading.Thread(target=serve, daemon=True).start()
    try:
        assert agent_answers(live)
    finally:
        server.close()
