"""The CrossGuard policy pack: each rule as a plain function, then the pack over every shipped stack's
mocked resources (which must pass) and over a deliberately broken program (which must not)."""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_docker as docker
import pytest
from pulumi_policy import PolicyResourceOptions, ResourceValidationArgs

from components.settings import read_stack_file
from components.tools.mocks import run_program
from components.tools.plan import plan_stack
from components.tools.planned import PlannedResource
from pack import POLICIES
from rules import CONTAINER, REMOTE_IMAGE, Options, violations
from tests.conftest import ROOT, STACKS, shipped_plan

GOOD_CONTAINER: dict[str, Any] = {
    "name": "vllm",
    "devices": [{"hostPath": p, "containerPath": p, "permissions": "rwm"} for p in ("/dev/kfd", "/dev/dri/renderD128")],
    "healthcheck": {"tests": ["CMD", "python", "-c", "..."]},
    "ports": [{"internal": 8000, "external": 8000, "ip": "127.0.0.1"}],
    "command": ["python", "-m", "vllm.entrypoints.openai.api_server", "--model", "m"],
    "envs": ["HIP_VISIBLE_DEVICES=0", "VLLM_API_KEY=[secret]"],
}
GOOD_OPTS = Options(delete_before_replace=True, additional_secret_outputs=("envs",))

CASES: list[tuple[str, str, dict[str, Any], Options, str | None]] = [
    ("compliant container", CONTAINER, GOOD_CONTAINER, GOOD_OPTS, None),
    ("privileged", CONTAINER, {**GOOD_CONTAINER, "privileged": True}, GOOD_OPTS, "no-privileged-containers"),
    ("all of /dev/dri", CONTAINER, {**GOOD_CONTAINER, "devices": [{"hostPath": "/dev/dri", "containerPath": "/dev/dri"}]}, GOOD_OPTS, "gpu-devices-only"),
    ("a device that is no GPU node", CONTAINER, {**GOOD_CONTAINER, "devices": [*GOOD_CONTAINER["devices"], {"hostPath": "/dev/mem"}]}, GOOD_OPTS, "gpu-devices-only"),
    ("render node moved", CONTAINER, {**GOOD_CONTAINER, "devices": [{"hostPath": "/dev/dri/renderD129", "containerPath": "/dev/dri/renderD128"}]}, GOOD_OPTS, "gpu-devices-only"),
    ("no healthcheck", CONTAINER, {k: v for k, v in GOOD_CONTAINER.items() if k != "healthcheck"}, GOOD_OPTS, "healthcheck-required"),
    ("latest tag", REMOTE_IMAGE, {"name": "michaelf34/infinity:latest"}, GOOD_OPTS, "pinned-image-tags"),
    ("no tag", REMOTE_IMAGE, {"name": "nalanzeyu/vllm-gfx906"}, GOOD_OPTS, "pinned-image-tags"),
    ("pinned tag", REMOTE_IMAGE, {"name": "nalanzeyu/vllm-gfx906:v0.11.2-rocm6.3"}, GOOD_OPTS, None),
    ("the catalog's moving tag of LiteLLM", REMOTE_IMAGE, {"name": "ghcr.io/berriai/litellm:main-stable"}, GOOD_OPTS, "pinned-image-tags"),
    ("the catalog's moving tag of Infinity", REMOTE_IMAGE, {"name": "michaelf34/infinity:latest-cpu"}, GOOD_OPTS, "pinned-image-tags"),
    ("a branch build of the gfx906 image", REMOTE_IMAGE, {"name": "docker.io/nalanzeyu/vllm-gfx906:nightly"}, GOOD_OPTS, "pinned-image-tags"),
    ("a moving word in a repository the catalog lacks", REMOTE_IMAGE, {"name": "example/embedder:edge"}, GOOD_OPTS, "pinned-image-tags"),
    ("a release that merely contains a moving word", REMOTE_IMAGE, {"name": "ghcr.io/berriai/litellm:v1.83.10-stable"}, GOOD_OPTS, None),
    ("a dated nightly release", REMOTE_IMAGE, {"name": "example/embedder:2024.05.01-nightly"}, GOOD_OPTS, None),
    ("digest on a registry with a port", REMOTE_IMAGE, {"name": "reg:5000/vllm@sha256:" + "a" * 64}, GOOD_OPTS, None),
    ("wide port without key", CONTAINER, {**GOOD_CONTAINER, "ports": [{"internal": 8000, "external": 8000, "ip": "0.0.0.0"}], "envs": []}, GOOD_OPTS, "wide-ports-need-api-key"),
    ("wide port with key", CONTAINER, {**GOOD_CONTAINER, "ports": [{"internal": 8000, "external": 8000, "ip": "0.0.0.0"}]}, GOOD_OPTS, None),
    ("api key on the command line", CONTAINER, {**GOOD_CONTAINER, "command": ["vllm", "serve", "m", "--api-key", "k"]}, GOOD_OPTS, "no-plain-secrets"),
    ("token value on the command line", CONTAINER, {**GOOD_CONTAINER, "command": ["x", "hf_abcdefghijklmnopqrstuvwxyz"]}, GOOD_OPTS, "no-plain-secrets"),
    ("secret env not a secret output", CONTAINER, GOOD_CONTAINER, Options(delete_before_replace=True), "no-plain-secrets"),
    ("GPU container replaced create-first", CONTAINER, GOOD_CONTAINER, Options(additional_secret_outputs=("envs",)), "gpu-delete-before-replace"),
    ("CPU container replaced create-first", CONTAINER, {**GOOD_CONTAINER, "devices": []}, Options(additional_secret_outputs=("envs",)), None),
    ("a one-shot download needs no healthcheck", CONTAINER, {k: v for k, v in GOOD_CONTAINER.items() if k != "healthcheck"} | {"mustRun": False, "restart": "no"}, GOOD_OPTS, None),
    ("a long-running one does", CONTAINER, {k: v for k, v in GOOD_CONTAINER.items() if k != "healthcheck"} | {"mustRun": False, "restart": "unless-stopped"}, GOOD_OPTS, "healthcheck-required"),
    ("the gateway's master key guards its port", CONTAINER, {**GOOD_CONTAINER, "devices": [], "ports": [{"internal": 4000, "external": 4000, "ip": "10.0.0.5"}], "envs": ["LITELLM_MASTER_KEY=sk-x"]}, GOOD_OPTS, None),
    ("basic auth by label guards a port", CONTAINER, {**GOOD_CONTAINER, "devices": [], "envs": [], "ports": [{"internal": 9100, "external": 9100, "ip": "10.0.0.5"}], "labels": [{"label": "rocm-inference.auth", "value": "basic-auth"}]}, GOOD_OPTS, None),
    ("a secret under a harmless name", CONTAINER, {**GOOD_CONTAINER, "envs": [*GOOD_CONTAINER["envs"], "HUB_AUTH=hf_abcdefghijklmnopqrstuvwxyz"]}, GOOD_OPTS, "no-plain-secrets"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "typ", "props", "opts", "policy"), CASES, ids=[c[0] for c in CASES])
def test_each_rule(case: str, typ: str, props: dict[str, Any], opts: Options, policy: str | None) -> None:
    found = violations(typ, props, opts)
    assert list(found) == ([policy] if policy else []), found


WIDE = ["no ip key", "ip None", "ip empty", "0.0.0.0", "::", "10.0.0.5", "a host name"]
LOOPBACK = ["127.0.0.1", "127.0.0.2", "::1", "[::1]"]


def _port(case: str) -> dict[str, Any]:
    port: dict[str, Any] = {"internal": 8000, "external": 8000}
    if case != "no ip key":
        port["ip"] = {"ip None": None, "ip empty": "", "a host name": "localhost"}.get(case, case)
    return port


@pytest.mark.parametrize("case", WIDE)
def test_a_port_without_a_loopback_ip_is_wide(case: str) -> None:
    """Docker publishes a port with no ip on every interface: without a key, that is the open server."""
    props = {**GOOD_CONTAINER, "ports": [_port(case)], "envs": []}
    found = violations(CONTAINER, props, GOOD_OPTS)
    assert list(found) == ["wide-ports-need-api-key"], found
    where = "all interfaces (no ip given)" if case in ("no ip key", "ip None", "ip empty") else str(_port(case)["ip"])
    assert found["wide-ports-need-api-key"] == [
        f"port 8000 is published on {where} without an API key (VLLM_API_KEY or INFINITY_API_KEY or LITELLM_MASTER_KEY)"
    ]
    keyed = {**GOOD_CONTAINER, "ports": [_port(case)]}
    assert violations(CONTAINER, keyed, GOOD_OPTS) == {}, "a key guards a wide port"


@pytest.mark.parametrize("case", LOOPBACK)
def test_a_loopback_port_needs_no_key(case: str) -> None:
    props = {**GOOD_CONTAINER, "ports": [_port(case)], "envs": []}
    assert violations(CONTAINER, props, GOOD_OPTS) == {}


def _open_program() -> dict[str, Any]:
    provider = docker.Provider("box", host="unix:///var/run/docker.sock")
    opts = pulumi.ResourceOptions(provider=provider)
    docker.Container(
        "open",
        name="open",
        image="sha256:" + "a" * 64,
        ports=[docker.ContainerPortArgs(internal=8000, external=8000)],  # no ip
        healthcheck=docker.ContainerHealthcheckArgs(tests=["CMD", "true"]),
        opts=opts,
    )
    return {}


def test_the_pack_reports_a_port_published_without_an_ip() -> None:
    resources, _ = run_program("open", {}, [], _open_program)
    reported = run_pack(resources)
    assert [(p, n) for p, n, _ in reported] == [("wide-ports-need-api-key", "open")], reported
    assert "all interfaces" in reported[0][2]


def run_pack(resources: list[PlannedResource]) -> list[tuple[str, str, str]]:
    """Every policy of the pack, called the way CrossGuard calls it, over these resources."""
    reported: list[tuple[str, str, str]] = []
    for r in resources:
        opts = PolicyResourceOptions(
            protect=bool(r.options.get("protect")),
            ignore_changes=[],
            delete_before_replace=r.options.get("delete_before_replace"),
            aliases=[],
            custom_timeouts=None,  # type: ignore[arg-type]
            additional_secret_outputs=list(r.options.get("additional_secret_outputs", [])),
            parent=r.parent,
        )
        args = ResourceValidationArgs(r.type, r.inputs, f"urn:{r.name}", r.name, opts, None)
        for policy in POLICIES:

            def report(message: str, urn: str | None = None, p: str = policy.name, n: str = r.name) -> None:
                reported.append((p, n, message))

            policy.validate(args, report)
    return reported


@pytest.mark.parametrize("stack", STACKS)
def test_every_shipped_stack_passes_the_pack(stack: str) -> None:
    plan = shipped_plan(stack)
    assert run_pack(plan.resources) == []
    assert len(POLICIES) == 7


def test_a_keyed_stack_published_wide_passes(tmp_path: Any) -> None:
    text = (
        (ROOT / "Pulumi.big-chat.yaml")
        .read_text()
        .replace("    address: localhost", "    address: gpu-box\n    bind: 10.0.0.5")
    )
    for key in ("vllm_api_key", "embeddings_api_key"):
        text += f"  rocm-inference:{key}:\n    secure: v1:AAAA:BBBB\n"
    path = tmp_path / "Pulumi.wide.yaml"
    path.write_text(text)
    assert run_pack(plan_stack(read_stack_file(path)).resources) == []


def broken_program() -> dict[str, Any]:
    """What the pack exists to stop: a hand-rolled container with every mistake at once."""
    provider = docker.Provider("box", host="unix:///var/run/docker.sock")
    opts = pulumi.ResourceOptions(provider=provider)
    image = docker.RemoteImage("bad-image", name="vllm/vllm-openai:latest", opts=opts)
    docker.Container(
        "bad",
        name="bad",
        image=image.image_id,
        privileged=True,
        devices=[
            docker.ContainerDeviceArgs(host_path="/dev/kfd", container_path="/dev/kfd"),
            docker.ContainerDeviceArgs(host_path="/dev/dri", container_path="/dev/dri"),
        ],
        ports=[docker.ContainerPortArgs(internal=8000, external=8000, ip="0.0.0.0")],
        command=["vllm", "serve", "m", "--api-key", "hunter2"],
        envs=["HF_TOKEN=hf_abcdefghijklmnopqrstuvwxyz"],
        opts=opts,
    )
    return {}


def test_a_deliberately_broken_program_fails_every_policy() -> None:
    resources, _ = run_program("broken", {}, [], broken_program)
    reported = run_pack(resources)
    assert {p for p, _, _ in reported} == {policy.name for policy in POLICIES}
    assert ("pinned-image-tags", "bad-image") in {(p, n) for p, n, _ in reported}


@pytest.mark.parametrize(
    "image",
    [
        "ghcr.io/berriai/litellm:main-latest",
        "ghcr.io/berriai/litellm:lts",
        "ghcr.io/berriai/litellm:v1.108.5",
        "michaelf34/infinity",
        "michaelf34/infinity:0.0.77-cpu",
        "grafana/grafana:main-ubuntu",
        "quay.io/prometheus/node-exporter:master",
        "example/embedder:stable",
        "example/embedder:1.2-stable",
        "example/embedder@sha256:" + "e" * 64,
    ],
)
def test_the_pack_and_the_stack_check_judge_image_tags_alike(image: str) -> None:
    from components.planning.catalog import load_catalog
    from rules import image_pinned

    found = image_pinned(REMOTE_IMAGE, {"name": image}, GOOD_OPTS)
    assert bool(found) is (load_catalog().moving_tag(image) is not None), found
    if found:
        pinned = load_catalog().pinned_reference(image)
        assert found == [
            f"image {image} is not pinned: "
            + (f"its tag {load_catalog().moving_tag(image)!r}" if ":" in image else "no tag means 'latest', which")
            + " moves under a running deployment; pin a released tag or a digest"
            + (f" ({pinned} is the catalog's)" if pinned else "")
        ]


def _one_container(envs: list[str]) -> tuple[dict[str, Any], PolicyResourceOptions]:
    props = {**GOOD_CONTAINER, "envs": envs}
    opts = PolicyResourceOptions(
        protect=False,
        ignore_changes=[],
        delete_before_replace=True,
        aliases=[],
        custom_timeouts=None,  # type: ignore[arg-type]
        additional_secret_outputs=["envs"],
        parent=None,
    )
    return props, opts


def _pack_over(props: dict[str, Any], opts: PolicyResourceOptions) -> list[tuple[str, str]]:
    from pulumi_policy.proxy import unknown_checking_proxy

    # As CrossGuard hands them over: an unknown value is a sentinel that raises when a rule reads it.
    args = ResourceValidationArgs(CONTAINER, unknown_checking_proxy(props), "urn:c", "c", opts, None)
    reported: list[tuple[str, str]] = []
    for policy in POLICIES:

        def report(message: str, urn: str | None = None, p: str = policy.name) -> None:
            reported.append((p, message))

        policy.validate(args, report)
    return reported


def test_a_value_unknown_at_the_first_preview_is_skipped_then_checked_at_up() -> None:
    """Issue 26 defect 11: at the first preview the chat page's and Grafana's environment hold generated
    passwords nobody knows yet, and reading them failed the pack ("can't be known during preview"). A rule
    that meets an unknown is skipped at preview; at `pulumi up` every value is known and the rule runs."""
    from pulumi_policy.proxy import UNKNOWN_STRING_VALUE

    leaked = "HUB_AUTH=hf_abcdefghijklmnopqrstuvwxyz"
    preview = _pack_over(*_one_container(["HIP_VISIBLE_DEVICES=0", UNKNOWN_STRING_VALUE, leaked]))
    assert [p for p, _ in preview if p == "no-plain-secrets"] == [], "skipped while a value is unknown"
    up = _pack_over(*_one_container(["HIP_VISIBLE_DEVICES=0", "WEBUI_SECRET_KEY=[secret]", leaked]))
    assert [p for p, _ in up] == ["no-plain-secrets"], up
    assert "HUB_AUTH" in up[0][1]
