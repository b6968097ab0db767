"""The host check script (components/planning/preflight.sh), run for real against recorded host trees.

Docker is a stand-in script on PATH that answers `version`, `ps`, `inspect`, `volume inspect` and
`info` the way the Docker CLI formats them; everything else is the real script under ROCM_ROOT.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pulumi
import pytest
from pulumi.runtime import rpc

from components.planning.catalog import load_catalog
from components.planning.preflight import SCRIPT, preflight_spec
from components.program import deploy
from components.settings.pulumi_config import load_from_pulumi
from components.tools.mocks import PlanMocks
from tests.conftest import ROOT, inputs_of, use_stack
from tests.stacks import load, set_key, values_of

HOSTS = Path(__file__).resolve().parent / "fixtures" / "hosts"

FAKE_DOCKER = r"""#!/bin/sh
[ -n "${FAKE_DOCKER_DOWN:-}" ] && { echo "Cannot connect to the Docker daemon at unix:///var/run/docker.sock" >&2; exit 1; }
case "$1" in
  version) echo 28.2.2 ;;
  ps) echo "${FAKE_DOCKER_PS:-}" ;;
  inspect) for id; do :; done; eval "echo \"\${FAKE_DOCKER_INSPECT_$id:-}\"" ;;
  volume) case " ${FAKE_DOCKER_VOLUMES:-} " in *" $3 "*) echo "/var/lib/docker/volumes/$3/_data" ;; *) exit 1 ;; esac ;;
  info) echo "${FAKE_DOCKER_ROOT:-/}" ;;
  *) exit 2 ;;
esac
"""


HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"


@pytest.fixture
def fake_docker(tmp_path: Path) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text(FAKE_DOCKER)
    (bin_dir / "docker").chmod(0o755)
    return bin_dir


def big_chat_env(**changes: Any) -> dict[str, str]:
    values = values_of("big-chat")
    for key, value in changes.items():
        values = set_key(values, key, value)
    spec = preflight_spec(load(values).settings, "host", load_catalog(), "rocm-inference", "big-chat")
    return spec.environment()


def check(
    fake_docker: Path, tree: str = "dual-mi60", env: dict[str, str] | None = None, **extra: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", "-s"],
        input=SCRIPT.read_text(),
        capture_output=True,
        text=True,
        env={
            "PATH": f"{fake_docker}:{os.environ['PATH']}",
            "ROCM_ROOT": str(HOSTS / tree),
            # warm caches unless a test says otherwise: this machine's free disk is not the point
            **(env if env is not None else {**big_chat_env(), "PREFLIGHT_VOLUMES": "vllm-hf-cache:0:"}),
            **extra,
        },
    )


def test_passes_on_the_seed_host_with_big_chats_config(fake_docker: Path) -> None:
    result = check(fake_docker)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("preflight: ok (0:1:128 1:2:129 gfx906, groups 44/992, docker 28.2.2)")


def test_missing_render_node(fake_docker: Path) -> None:
    result = check(fake_docker, env=big_chat_env(**{"host.gpus[1].render": 130}))
    assert result.returncode == 1
    assert (
        "preflight: configured render node renderD130 of GPU 1 does not exist; run python -m components.discover"
        in result.stderr
    )


def test_wrong_gfx_target(fake_docker: Path) -> None:
    env = big_chat_env()
    result = check(fake_docker, env={**env, "PREFLIGHT_GFX": "90008", "PREFLIGHT_GFX_NAME": "gfx908"})
    assert result.returncode == 1
    assert "GPU 0 (renderD128) has gfx_target_version 90006, the stack expects 90008 (gfx908)" in result.stderr
    assert "GPU 1 (renderD129) has gfx_target_version 90006" in result.stderr


def test_less_vram_than_planned(fake_docker: Path) -> None:
    result = check(fake_docker, env=big_chat_env(**{"host.gpu_memory_gib": 64}))
    assert result.returncode == 1
    assert "GPU 0 (renderD128) has 32752 MiB of VRAM, the stack plans for 65535 MiB" in result.stderr


def test_wrong_group_id(fake_docker: Path) -> None:
    result = check(fake_docker, env=big_chat_env(**{"host.groups.video": 45}))
    assert result.returncode == 1
    assert (
        "preflight: group video is 44 on this host, the stack says 45; set rocm-inference:host.groups.video: 44"
        in result.stderr
    )
    assert "render" not in result.stderr.split("group video")[0]


def test_gpu_already_held_by_another_stack(fake_docker: Path) -> None:
    result = check(
        fake_docker,
        FAKE_DOCKER_PS="c1 c2",
        FAKE_DOCKER_INSPECT_c1="/vllm-small|rocm-inference|small-chat|/dev/kfd /dev/dri/card2 /dev/dri/renderD129 ",
        # our own stack's container is about to be replaced: not a conflict
        FAKE_DOCKER_INSPECT_c2="/vllm|rocm-inference|big-chat|/dev/kfd /dev/dri/renderD128 ",
    )
    assert result.returncode == 1
    assert result.stderr.splitlines()[0] == (
        "preflight: GPU 1 (renderD129) is held by running container vllm-small (stack rocm-inference/small-chat); "
        "stop it (docker stop vllm-small) or give this stack other GPUs"
    )
    assert "renderD128" not in result.stderr


def test_gpu_held_by_a_hand_written_compose_deployment(fake_docker: Path) -> None:
    result = check(
        fake_docker,
        FAKE_DOCKER_PS="c9",
        FAKE_DOCKER_INSPECT_c9="/vllm|||/dev/kfd /dev/dri/renderD128 /dev/dri/renderD129 ",
    )
    assert result.returncode == 1
    assert "GPU 0 (renderD128) is held by running container vllm (not deployed by rocm-inference)" in result.stderr


def test_docker_does_not_answer(fake_docker: Path) -> None:
    result = check(fake_docker, FAKE_DOCKER_DOWN="1")
    assert result.returncode == 1
    assert "preflight: Docker does not answer: Cannot connect to the Docker daemon" in result.stderr


def test_not_enough_disk_for_a_cold_cache(fake_docker: Path, tmp_path: Path) -> None:
    env = {**big_chat_env(), "PREFLIGHT_VOLUMES": "vllm-hf-cache:100000000: infinity-embeddings-cache:3:"}
    result = check(fake_docker, env=env)
    assert result.returncode == 1 and "the model cache needs about 100000008 GiB" in result.stderr
    warm = check(fake_docker, env=env, FAKE_DOCKER_VOLUMES="vllm-hf-cache infinity-embeddings-cache")
    assert warm.returncode == 0, warm.stderr


def test_a_model_change_counts_the_download_into_a_warm_cache(fake_docker: Path, tmp_path: Path) -> None:
    """The new model is downloaded beside the old one before the server is replaced: its size counts unless
    the cache already holds it."""
    import shutil

    root = tmp_path / "host"
    shutil.copytree(HOSTS / "dual-mi60", root, symlinks=True)
    volumes = "vllm-hf-cache:100000000:models--Org--New infinity-embeddings-cache:3:"
    env = {**big_chat_env(), "PREFLIGHT_VOLUMES": volumes, "ROCM_ROOT": str(root)}
    warm = {"FAKE_DOCKER_VOLUMES": "vllm-hf-cache infinity-embeddings-cache"}
    other_model = check(fake_docker, env=env, **warm)
    assert other_model.returncode == 1 and "the model cache needs about 100000005 GiB" in other_model.stderr
    (root / "var/lib/docker/volumes/vllm-hf-cache/_data/hub/models--Org--New/snapshots").mkdir(parents=True)
    same_model = check(fake_docker, env=env, **warm)
    assert same_model.returncode == 0, same_model.stderr


# The / line of /proc/self/mountinfo: its optional fields (before " - ") say how it propagates.
PRIVATE_ROOT = "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n"
SHARED_ROOT = "27 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw\n"


@pytest.mark.parametrize(("line", "fails"), [(PRIVATE_ROOT, True), (SHARED_ROOT, False)])
def test_a_private_root_mount_is_found_where_node_exporter_binds_it_with_rslave(
    fake_docker: Path, tmp_path: Path, line: str, fails: bool
) -> None:
    """Issue 26 defect 10: Docker refuses node-exporter's rslave bind of a private / ("path / is mounted on /
    but it is not a shared or slave mount"), as on a Proxmox LXC and on this machine. The preflight says so,
    and what to do, before anything is pulled."""
    import shutil

    root = tmp_path / "host"
    shutil.copytree(HOSTS / "dual-mi60", root, symlinks=True)
    (root / "proc/self").mkdir(parents=True)
    (root / "proc/self/mountinfo").write_text(line)
    env = {**big_chat_env(), "PREFLIGHT_VOLUMES": "vllm-hf-cache:0:", "ROCM_ROOT": str(root)}
    result = check(fake_docker, env=env)
    assert (result.returncode == 1) == fails, result.stderr
    if fails:
        assert "preflight: / is a private mount where Docker runs" in result.stderr
        assert "mount --make-rshared /" in result.stderr and "rocm-inference:host.root_mount: private" in result.stderr
    # a host that says its / is private is not checked: node-exporter binds it without propagation there
    private = {**big_chat_env(**{"host.root_mount": "private"}), "PREFLIGHT_VOLUMES": "vllm-hf-cache:0:"}
    private["ROCM_ROOT"] = str(root)
    assert "PREFLIGHT_ROOT_SHARED" not in private
    assert check(fake_docker, env=private).returncode == 0


def test_node_exporter_binds_a_private_root_without_propagation(tmp_path: Path) -> None:
    from tests.conftest import shipped_plan, stack_file
    from tests.stacks import plan_values

    (mount,) = shipped_plan("big-chat").by_name("host-node-exporter-container").inputs["mounts"]
    assert mount["bindOptions"] == {"propagation": "rslave"} and mount["source"] == "/"
    sf = stack_file("big-chat")
    secure = {k: v for k, v in sf.values.items() if k in sf.secure}
    plan = plan_values(set_key(values_of("big-chat"), "host.root_mount", "private"), tmp_path, secure, "x")
    (mount,) = plan.by_name("host-node-exporter-container").inputs["mounts"]
    assert "bindOptions" not in mount and mount["source"] == "/" and mount["readOnly"] is True


def test_a_host_without_rocm_fails_every_gpu_check(fake_docker: Path) -> None:
    result = check(fake_docker, tree="no-rocm")
    assert result.returncode == 1
    assert "preflight: /dev/kfd does not exist" in result.stderr
    assert "configured card node card1 of GPU 0 does not exist" in result.stderr


def test_spec_for_big_chat() -> None:
    env = big_chat_env()
    assert env["PREFLIGHT_GPUS"] == "0:1:128 1:2:129"
    assert (env["PREFLIGHT_GFX"], env["PREFLIGHT_VIDEO_GID"], env["PREFLIGHT_RENDER_GID"]) == ("90006", "44", "992")
    vllm_volume, embeddings_volume = env["PREFLIGHT_VOLUMES"].split()
    assert (
        vllm_volume.startswith("vllm-hf-cache:")
        and 36 <= int(vllm_volume.split(":")[1]) <= 42
        and vllm_volume.endswith(":models--casperhansen--llama-3.3-70b-instruct-awq")
    )  # the 70B AWQ download
    assert embeddings_volume == "infinity-embeddings-cache:3:"
    small = preflight_spec(
        load(values_of("small-chat")).settings, "host", load_catalog(), "rocm-inference", "small-chat"
    )
    assert small.environment()["PREFLIGHT_GPUS"] == "1:2:129"


# --------------------------------------------------------------------------- in the Pulumi program


@pulumi.runtime.test
def test_preflight_runs_locally_and_everything_pulled_or_started_waits_for_it(mocks: PlanMocks) -> pulumi.Output[Any]:
    use_stack("big-chat")
    loaded, secrets = load_from_pulumi(ROOT / "Pulumi.big-chat.yaml")
    outputs = deploy(loaded, secrets, "rocm-inference", "big-chat")

    def verify(_: Any) -> None:
        cmd = inputs_of(mocks, "command:local:Command", "host-preflight")
        assert cmd["create"].endswith(" sh -s") and "PREFLIGHT_GPUS='0:1:128 1:2:129'" in cmd["create"]
        assert cmd["stdin"] == SCRIPT.read_text()
        assert cmd["environment"] == {"DOCKER_HOST": "unix:///var/run/docker.sock"}
        assert len(cmd["triggers"]) == 2

    return pulumi.Output.all(*outputs.values()).apply(verify)


def test_every_image_and_container_depends_on_the_preflight() -> None:
    from components.settings import read_stack_file
    from components.tools.plan import plan_stack

    plan = plan_stack(read_stack_file(ROOT / "Pulumi.big-chat.yaml"))
    dependents = [r for r in plan.resources if r.type.endswith((":Container", ":RemoteImage"))]
    assert len(dependents) >= 5
    assert all("host-preflight" in r.options["depends_on"] for r in dependents)


@pulumi.runtime.test
def test_an_ssh_host_runs_the_preflight_over_ssh(mocks: PlanMocks) -> pulumi.Output[Any]:
    sf = use_stack("big-chat")
    values = set_key(sf.values, "host.docker", "ssh://ops@gpu-box:2222")
    values = set_key(values, "host.ssh_host_key", HOST_KEY)
    pulumi.runtime.set_all_config(
        {
            **{f"rocm-inference:{k}": json.dumps(v) for k, v in values.items()},
            "rocm-inference:ssh_private_key": "-----BEGIN OPENSSH PRIVATE KEY-----test",
        },
        ["rocm-inference:ssh_private_key"],
    )
    loaded, secrets = load_from_pulumi(ROOT / "Pulumi.big-chat.yaml")
    outputs = deploy(loaded, secrets, "rocm-inference", "big-chat")

    def verify(_: Any) -> None:
        cmd = inputs_of(mocks, "command:remote:Command", "host-preflight")
        # The private key makes the whole connection a secret.
        assert rpc.is_rpc_secret(cmd["connection"])
        connection = cmd["connection"]["value"]
        assert (connection["host"], connection["user"], connection["port"]) == ("gpu-box", "ops", 2222)
        assert connection["hostKey"] == HOST_KEY, "the host key is pinned: without one the SSH client accepts any"
        assert connection["privateKey"].startswith("-----BEGIN")
        assert inputs_of(mocks, "providers:docker", "host-docker")["host"] == "ssh://ops@gpu-box:2222"

    return pulumi.Output.all(*outputs.values()).apply(verify)
