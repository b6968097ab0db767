"""Mistakes a new user makes on day one, round 2: each refused or warned with the file, the full key,
what was found, what is allowed and the way out; their legitimate neighbours pass."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.planning import catalog as catalog_module
from components.tools.plan import main
from tests.conftest import ROOT
from tests.stacks import errors, load, set_key, values_of, vllm_context

BIG = (ROOT / "Pulumi.big-chat.yaml").read_text()
FLEET_SECRETS = ("gateway_api_key",)
SOURCE = "Pulumi.test.yaml: "


def big(changes: dict[str, Any] | None = None) -> dict[str, Any]:
    values = values_of("big-chat")
    for key, value in (changes or {}).items():
        values = set_key(values, key, value)
    return values


def fleet(changes: dict[str, Any] | None = None) -> dict[str, Any]:
    values = values_of("fleet")
    for key, value in (changes or {}).items():
        values = set_key(values, key, value)
    return values


def copied_host() -> dict[str, Any]:
    """gpu-b's block replaced by a copy of gpu-a's, only its name changed."""
    values = fleet()
    values["hosts"]["gpu-b"] = copy.deepcopy(values["hosts"]["gpu-a"]) | {"gpus": values["hosts"]["gpu-b"]["gpus"]}
    return values


def two_local_hosts(second: dict[str, Any]) -> dict[str, Any]:
    values = fleet()
    for name in ("gpu-a", "gpu-b"):
        host = values["hosts"][name]
        for key in ("ssh_host_key", "bind"):
            host.pop(key, None)
        host["docker"] = "unix:///var/run/docker.sock"
        host["address"] = "localhost"
    values["hosts"]["gpu-b"] |= second
    values["gateway"]["host"] = values["monitoring"]["host"] = "gpu-a"
    return values


def plan(tmp_path: Path, text: str, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    path = tmp_path / "Pulumi.mine.yaml"
    path.write_text(text)
    code = main(["--file", str(path), *args])
    out = capsys.readouterr()
    return code, out.out, out.err


# --------------------------------------------------------------------------- refused: one line each

# (case, values, secrets, the line after "Pulumi.test.yaml: rocm-inference:" starts with, and it names the way out)
REFUSED: list[tuple[str, dict[str, Any], tuple[str, ...], str, str]] = [
    # 4. one machine configured as two hosts
    (
        "4 a host block copied and only renamed",
        copied_host(),
        FLEET_SECRETS,
        "hosts.gpu-b.docker is 'ssh://ops@gpu-a.lan', which is the machine of rocm-inference:hosts.gpu-a "
        "(its docker 'ssh://ops@gpu-a.lan'): one machine configured as two hosts would have its GPUs given out twice",
        "give each host its own docker and address",
    ),
    (
        "4 the same SSH host as another user and its default port",
        fleet({"hosts.gpu-b.docker": "ssh://root@gpu-a.lan:22"}),
        FLEET_SECRETS,
        "hosts.gpu-b.docker is 'ssh://root@gpu-a.lan:22', which is the machine of rocm-inference:hosts.gpu-a",
        "make them one host",
    ),
    (
        "4 the same address",
        fleet({"hosts.gpu-b.address": "gpu-a.lan"}),
        FLEET_SECRETS,
        "hosts.gpu-b.address is 'gpu-a.lan', which is the machine of rocm-inference:hosts.gpu-a "
        "(its docker 'ssh://ops@gpu-a.lan')",
        "GPUs given out twice",
    ),
    (
        "4 the same address in another case",
        fleet({"hosts.gpu-b.address": "GPU-A.lan"}),
        FLEET_SECRETS,
        "hosts.gpu-b.address is 'GPU-A.lan', which is the machine of rocm-inference:hosts.gpu-a",
        "GPUs given out twice",
    ),
    (
        "4 the same local Docker socket",
        two_local_hosts({}),
        FLEET_SECRETS,
        "hosts.gpu-b.docker is 'unix:///var/run/docker.sock', which is the machine of rocm-inference:hosts.gpu-a",
        "GPUs given out twice",
    ),
    # 6. a local path given as the model
    *(
        (
            f"6 a local path {path!r}",
            big({"vllm.model": path}),
            (),
            f"vllm.model is {path!r}, a local path: the server looks for it inside its container, where nothing "
            "mounts it",
            "give the model's Hugging Face Hub id (org/name",
        )
        for path in ("/models/llama-3.3-70b-awq", "./llama", "../models/llama", "~/models/llama", "models/meta/llama")
    ),
    (
        "6 a local path for the embeddings model",
        big({"embeddings.model": "/srv/models/nomic"}),
        (),
        "embeddings.model is '/srv/models/nomic', a local path",
        "Hugging Face Hub id",
    ),
    (
        "6 a Hub URL",
        big({"vllm.model": "https://huggingface.co/casperhansen/llama-3.3-70b-instruct-awq"}),
        (),
        "vllm.model is 'https://huggingface.co/casperhansen/llama-3.3-70b-instruct-awq', a URL",
        "the org/name part of its huggingface.co address",
    ),
    # 19. vLLM's CUDA image on a ROCm host
    *(
        (
            f"19 the CUDA image {image}",
            big({"vllm.image": image}),
            (),
            f"vllm.image is {image!r}, vLLM's CUDA image (NVIDIA GPUs only): it cannot run on "
            "rocm-inference:host.gpu 'mi60' (AMD Instinct MI60, gfx906, ROCm)",
            "use a ROCm image the catalog has for gfx906: nalanzeyu/vllm-gfx906:v0.11.2-rocm6.3",
        )
        for image in ("vllm/vllm-openai:v0.11.0", "vllm/vllm-openai:latest", "docker.io/vllm/vllm-openai:v0.10.2")
    ),
    (
        "19 the CUDA image on an MI100 names the ROCm image for gfx908",
        big({"vllm.image": "vllm/vllm-openai:v0.11.0", "host.gpu": "mi100"}),
        (),
        "vllm.image is 'vllm/vllm-openai:v0.11.0', vLLM's CUDA image (NVIDIA GPUs only)",
        "for gfx908: rocm/vllm",
    ),
    # 12. a registry written out: the catalog still refuses what it refuses
    *(
        (
            f"12 {image} is rocm/vllm, built for gfx908 and up",
            big({"vllm.image": image}),
            (),
            "vllm.image is built for gfx908, gfx90a, gfx942, but rocm-inference:host.gpu 'mi60' is gfx906",
            "",
        )
        for image in (
            "rocm/vllm:rocm6.4.1_vllm_0.10.1",
            "docker.io/rocm/vllm:rocm6.4.1_vllm_0.10.1",
            "index.docker.io/rocm/vllm:rocm6.4.1_vllm_0.10.1",
            "registry-1.docker.io/rocm/vllm@sha256:" + "a" * 64,
        )
    ),
    # 13. monitoring without a value at all (YAML's null): `{}` turns it on
    (
        "13 an empty monitoring key",
        big({"monitoring": None}),
        (),
        "monitoring is empty: write `{}` to turn monitoring on with its defaults, or remove the key",
        "`{}`",
    ),
    # 20. a port taken twice: the holder and its key, whichever side the clash is written on
    (
        "20 the embeddings server on vLLM's default port",
        big({"embeddings.port": 8000}),
        (),
        "embeddings.port is host port 8000, which vLLM server vllm already uses (rocm-inference:vllm.port)",
        "give the embeddings server or vLLM server vllm another host port",
    ),
    (
        "20 Grafana on the embeddings server's port",
        big({"monitoring.grafana_port": 8080}),
        (),
        "monitoring.grafana_port is host port 8080, which the embeddings server already uses "
        "(rocm-inference:embeddings.port)",
        "give Grafana or the embeddings server another host port",
    ),
    (
        "20 the embeddings server on Grafana's default port",
        big({"embeddings.port": 3000}),
        (),
        "monitoring.grafana_port is host port 3000, which the embeddings server already uses "
        "(rocm-inference:embeddings.port)",
        "give Grafana or the embeddings server another host port",
    ),
    (
        "20 a server on node-exporter's default port",
        big({"vllm.port": 9100}),
        (),
        "monitoring.node_exporter_port is host port 9100, which vLLM server vllm already uses "
        "(rocm-inference:vllm.port)",
        "another host port",
    ),
    (
        "20 node-exporter on a fleet server's port, on the other host",
        fleet({"monitoring.node_exporter_port": 8001}),
        FLEET_SECRETS,
        "monitoring.node_exporter_port is host port 8001 on host gpu-b, which vLLM server coder already uses "
        "(rocm-inference:servers.coder.port)",
        "another host port",
    ),
    (
        "20 Prometheus on the gateway's port",
        fleet({"monitoring.prometheus_port": 4000}),
        FLEET_SECRETS,
        "monitoring.prometheus_port is host port 4000 on host gpu-a, which the gateway already uses "
        "(rocm-inference:gateway.port)",
        "give Prometheus or the gateway another host port",
    ),
    (
        "20 a server named like a monitoring container",
        big({"vllm.container_name": "grafana"}),
        (),
        "vllm.container_name is container name 'grafana', which Grafana already uses (a fixed name)",
        "give vLLM server vllm another container name",
    ),
]


@pytest.mark.parametrize(("case", "values", "secrets", "start", "way_out"), REFUSED, ids=[c[0] for c in REFUSED])
def test_refused_with_one_line_naming_the_key_and_the_way_out(
    case: str, values: dict[str, Any], secrets: tuple[str, ...], start: str, way_out: str
) -> None:
    found = errors(values, secrets)
    assert len(found) == 1, found
    assert found[0].startswith(SOURCE + "rocm-inference:" + start), found[0]
    assert way_out in found[0]


# --------------------------------------------------------------------------- warned

# (case, values, secrets, the warning after "Pulumi.test.yaml: rocm-inference:" starts with)
WARNED: list[tuple[str, dict[str, Any], tuple[str, ...], str]] = [
    # 2. moving tags that are not literally `latest`, on every image the stack runs
    *(
        (
            f"2 {key} {image}",
            (fleet if key.startswith(("gateway", "servers")) else big)({key: image}),
            FLEET_SECRETS if key.startswith(("gateway", "servers")) else (),
            f"{key} is {image!r}, an unpinned tag that moves under you ({image.rsplit(':', 1)[1]!r} is re-pointed "
            f"at each new build): pin a released tag or a digest{pinned}",
        )
        for key, image, pinned in (
            (
                "gateway.image",
                "ghcr.io/berriai/litellm:main-latest",
                " (the catalog pins ghcr.io/berriai/litellm:v1.108.5)",
            ),
            (
                "gateway.image",
                "ghcr.io/berriai/litellm:main-stable",
                " (the catalog pins ghcr.io/berriai/litellm:v1.108.5)",
            ),
            ("gateway.image", "ghcr.io/berriai/litellm:lts", " (the catalog pins ghcr.io/berriai/litellm:v1.108.5)"),
            (
                "embeddings.image",
                "michaelf34/infinity:latest-cpu",
                " (the catalog pins michaelf34/infinity:0.0.77-cpu)",
            ),
            ("vllm.image", "nalanzeyu/vllm-gfx906:main", " (the catalog pins nalanzeyu/vllm-gfx906:v0.11.2-rocm6.3)"),
            (
                "vllm.image",
                "nalanzeyu/vllm-gfx906:nightly",
                " (the catalog pins nalanzeyu/vllm-gfx906:v0.11.2-rocm6.3)",
            ),
            (
                "vllm.image",
                "docker.io/nalanzeyu/vllm-gfx906:dev",
                " (the catalog pins docker.io/nalanzeyu/vllm-gfx906:v0.11.2-rocm6.3)",
            ),
            ("monitoring.grafana_image", "grafana/grafana:main", " (the catalog pins grafana/grafana:12.4.0)"),
            (
                "monitoring.node_exporter_image",
                "quay.io/prometheus/node-exporter:master",
                " (the catalog pins quay.io/prometheus/node-exporter:v1.9.1)",
            ),
            ("embeddings.image", "example/embedder:edge", ""),
            ("embeddings.image", "example/embedder:stable", ""),
            ("embeddings.image", "example/embedder:latest-cpu", ""),
            ("embeddings.image", "example/embedder:nightly", ""),
        )
    ),
    (
        "2 the Alertmanager image is checked like every other",
        big({"monitoring.alertmanager": {"image": "quay.io/prometheus/alertmanager:main"}}),
        ("monitoring.alertmanager.webhook_url",),
        "monitoring.alertmanager.image is 'quay.io/prometheus/alertmanager:main', an unpinned tag that moves under "
        "you ('main' is re-pointed at each new build): pin a released tag or a digest (the catalog pins "
        "quay.io/prometheus/alertmanager:v0.28.1)",
    ),
    (
        "2 no tag at all",
        big({"embeddings.image": "michaelf34/infinity"}),
        (),
        "embeddings.image is 'michaelf34/infinity', an unpinned tag that moves under you (no tag means 'latest')",
    ),
]


@pytest.mark.parametrize(("case", "values", "secrets", "start"), WARNED, ids=[c[0] for c in WARNED])
def test_warned_naming_the_key_and_the_way_out(
    case: str, values: dict[str, Any], secrets: tuple[str, ...], start: str
) -> None:
    warnings = load(values, secrets).warnings
    assert [w for w in warnings if w.startswith(SOURCE + "rocm-inference:" + start)], warnings


# --------------------------------------------------------------------------- the legitimate neighbours pass

PASSING: list[tuple[str, dict[str, Any], tuple[str, ...]]] = [
    ("4 two hosts, two machines (the shipped fleet)", fleet(), FLEET_SECRETS),
    (
        "4 two local engines on their own sockets",
        two_local_hosts({"docker": "unix:///run/user/1000/docker.sock"}),
        FLEET_SECRETS,
    ),
    ("6 a Hub id", big({"embeddings.model": "BAAI/bge-small-en-v1.5"}), ()),
    ("6 a Hub id without an org", big({"embeddings.model": "gpt2"}), ()),
    ("12 the gfx906 image with docker.io", big({"vllm.image": "docker.io/nalanzeyu/vllm-gfx906:v0.11.2-rocm6.3"}), ()),
    (
        "12 rocm/vllm on an MI100",
        big({"vllm.image": "docker.io/rocm/vllm:rocm6.4.1_vllm_0.10.1", "host.gpu": "mi100"}),
        (),
    ),
    ("13 monitoring with its defaults", big({"monitoring": {}}), ()),
    ("20 distinct ports", big({"embeddings.port": 8081, "monitoring.grafana_port": 3001}), ()),
]


@pytest.mark.parametrize(("case", "values", "secrets"), PASSING, ids=[c[0] for c in PASSING])
def test_legitimate_neighbours_pass(case: str, values: dict[str, Any], secrets: tuple[str, ...]) -> None:
    assert errors(values, secrets) == []


def _two_ports_one_name() -> dict[str, Any]:
    values = fleet(
        {"hosts.gpu-a.docker": "ssh://ops@nat.example:2201", "hosts.gpu-b.docker": "ssh://ops@nat.example:2202"}
    )
    return values


def test_4_two_machines_behind_one_name_on_two_ssh_ports_pass() -> None:
    # Two ports of one gateway name forward to two machines; their addresses tell them apart.
    assert errors(_two_ports_one_name(), FLEET_SECRETS) == []


@pytest.mark.parametrize(
    "image",
    [
        "ghcr.io/berriai/litellm:v1.83.10-stable",  # a release that merely contains "stable"
        "ghcr.io/berriai/litellm:v1.83.10-nightly",
        "michaelf34/infinity:0.0.77-cpu",
        "example/embedder:1.2-stable",
        "example/embedder:2024.05.01-nightly",
        "michaelf34/infinity@sha256:" + "b" * 64,
        "docker.io/michaelf34/infinity:0.0.77-cpu",
    ],
)
def test_2_pinned_tags_that_contain_a_moving_word_pass(image: str) -> None:
    key = "gateway.image" if "litellm" in image else "embeddings.image"
    values = (fleet if key == "gateway.image" else big)({key: image})
    warnings = load(values, FLEET_SECRETS if key == "gateway.image" else ()).warnings
    assert not [w for w in warnings if "unpinned" in w], warnings


def test_12_the_gfx906_image_with_its_registry_written_out_is_the_catalogs() -> None:
    for image in (
        "docker.io/nalanzeyu/vllm-gfx906:v0.11.2-rocm6.3",
        "index.docker.io/nalanzeyu/vllm-gfx906:v0.11.2-rocm6.3",
        "registry-1.docker.io/nalanzeyu/vllm-gfx906:v0.11.2-rocm6.3",
    ):
        warnings = load(big({"vllm.image": image})).warnings
        assert not [w for w in warnings if "not in the image catalog" in w], warnings
    # another registry is another image: its support stays unchecked
    warnings = load(big({"vllm.image": "ghcr.io/nalanzeyu/vllm-gfx906:v0.11.2-rocm6.3"})).warnings
    assert [w for w in warnings if "not in the image catalog" in w]


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        ("nalanzeyu/vllm-gfx906:v0.11.2-rocm6.3", ("nalanzeyu/vllm-gfx906", "v0.11.2-rocm6.3", None)),
        ("docker.io/nalanzeyu/vllm-gfx906:v1", ("nalanzeyu/vllm-gfx906", "v1", None)),
        ("index.docker.io/nalanzeyu/vllm-gfx906", ("nalanzeyu/vllm-gfx906", None, None)),
        ("docker.io/library/ubuntu:22.04", ("ubuntu", "22.04", None)),
        ("docker.io/ubuntu", ("ubuntu", None, None)),
        ("library/ubuntu", ("ubuntu", None, None)),
        ("index.docker.io/library/library/x", ("library/library/x", None, None)),
        ("localhost:5000/team/vllm:v1", ("localhost:5000/team/vllm", "v1", None)),
        ("GHCR.io/berriai/litellm:v1.108.5", ("ghcr.io/berriai/litellm", "v1.108.5", None)),
        ("rocm/vllm@sha256:" + "c" * 64, ("rocm/vllm", None, "sha256:" + "c" * 64)),
        (
            "quay.io/prometheus/prometheus:v2.55.1@sha256:" + "d" * 64,
            ("quay.io/prometheus/prometheus", "v2.55.1", "sha256:" + "d" * 64),
        ),
    ],
)
def test_12_references_are_normalised_as_docker_does(
    reference: str, expected: tuple[str, str | None, str | None]
) -> None:
    parsed = catalog_module.parse_reference(reference)  # type: ignore[attr-defined, unused-ignore]
    assert (parsed.repository, parsed.tag, parsed.digest) == expected


def test_2_every_catalog_pin_is_not_itself_a_moving_tag() -> None:
    catalog = catalog_module.load_catalog()
    for repo, tags in catalog.tags.items():
        if tags.pinned:
            assert catalog.moving_tag(f"{repo}:{tags.pinned}") is None, repo


# --------------------------------------------------------------------------- 10: config keys without the namespace


def test_10_a_bare_key_is_the_projects_as_pulumi_reads_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # sdk/go/common/workspace/loaders.go stackConfigNamespacedWithProject: `vllm:` is `rocm-inference:vllm:`
    text = BIG.replace("  rocm-inference:vllm:", "  vllm:").replace("  rocm-inference:host:", "  host:")
    code, out, err = plan(tmp_path, text, capsys)
    assert code == 0, err
    assert "vllm-container (docker:index/container:Container)" in out


def test_10_a_plain_text_token_under_a_bare_key_is_seen(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = plan(tmp_path, BIG + "  hf_token: hf_AbCdEfGhIjKlMnOpQrStUv\n", capsys)
    assert code == 1
    assert (
        "Pulumi.mine.yaml: rocm-inference:hf_token is written in plain text: set it with "
        "`pulumi config set --secret rocm-inference:hf_token ...`"
    ) in err.splitlines()
    assert "hf_AbCdEf" not in err


def test_10_the_old_config_form_is_read_too(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # sdk/go/common/resource/config/key.go ParseKey: `<ns>:config:<name>` is `<ns>:<name>`
    text = BIG.replace("  rocm-inference:embeddings:", "  rocm-inference:config:embeddings:")
    code, out, err = plan(tmp_path, text, capsys)
    assert code == 0, err
    assert "embeddings-container" in out


def test_10_a_key_written_bare_and_namespaced_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = plan(tmp_path, BIG + "  embeddings:\n    image: michaelf34/infinity:0.0.77-cpu\n", capsys)
    assert code == 1
    assert (
        "Pulumi.mine.yaml: embeddings is rocm-inference:embeddings, which the file also writes as "
        "'rocm-inference:embeddings': Pulumi keeps one of the two, whichever it reads last; keep one"
    ) in err.splitlines()


# --------------------------------------------------------------------------- 13: monitoring with its defaults


def test_13_monitoring_with_its_defaults_is_planned(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = BIG[: BIG.index("  rocm-inference:monitoring:")] + "  rocm-inference:monitoring: {}\n"
    code, out, err = plan(tmp_path, text, capsys)
    assert code == 0, err
    assert "prometheus-container" in out and "grafana-container" in out


def test_13_an_empty_embeddings_key_is_still_refused() -> None:
    assert errors(big({"embeddings": {}})) == [
        SOURCE + "rocm-inference:embeddings is empty: give its settings (image, model, ...), or remove the key for "
        "no embeddings server",
        # big-chat's chat UI files documents with the stack's embeddings
        SOURCE + "rocm-inference:chat_ui needs the stack's embeddings server (rocm-inference:embeddings) for the "
        "documents users upload (RAG): without it Open WebUI would embed them with a model of its own; add an "
        "embeddings section",
    ]


# --------------------------------------------------------------------------- 25: the TP rule for KV heads


def _arch(heads: int, kv_heads: int) -> dict[str, Any]:
    return {
        "num_hidden_layers": 4,
        "hidden_size": 4096,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "head_dim": 128,
        "intermediate_size": 30720,  # divisible by every TP below
        "vocab_size": 32000,
        "max_position_embeddings": 32768,
        "torch_dtype": "float16",
    }


def _tp(heads: int, kv_heads: int, tp: int) -> dict[str, Any]:
    return big(
        {
            "host.gpus": [{"index": i, "card": i + 1, "render": 128 + i} for i in range(tp)],
            "vllm.gpus": list(range(tp)),
            "vllm.tensor_parallel_size": tp,
            "vllm.model": "example/tp-probe",
            "vllm.max_model_len": 4096,
            "vllm.architecture": _arch(heads, kv_heads),
        }
    )


@pytest.mark.parametrize(
    ("heads", "kv_heads", "tp", "refused"),
    [
        # vLLM's QKVParallelLinear: TP >= KV heads needs TP % KV heads == 0 (replicas), else KV heads % TP == 0
        (24, 8, 12, True),  # 24 % 12 == 0 for the heads, but 12 KV ranks cannot share 8 KV heads
        (40, 8, 10, True),
        (48, 6, 4, True),  # 6 KV heads do not split in 4
        (32, 8, 16, False),  # each KV head replicated on 2 GPUs
        (32, 8, 8, False),
        (32, 8, 4, False),
        (28, 4, 2, False),
        (32, 1, 8, False),  # multi-query attention: one KV head on every GPU
    ],
)
def test_25_tp_and_kv_heads_follow_vllms_rule(heads: int, kv_heads: int, tp: int, refused: bool) -> None:
    found = errors(_tp(heads, kv_heads, tp))
    kv_lines = [f for f in found if "KV heads" in f]
    assert bool(kv_lines) is refused, found
    if refused:
        assert kv_lines == [
            f"{SOURCE}rocm-inference:vllm.tensor_parallel_size must divide the model's {kv_heads} KV heads, or be a "
            f"multiple of them (vLLM replicates KV heads only when TP exceeds them), got {tp}"
        ]
    else:
        assert found == [], found


def test_stack_files_written_by_yaml_round_trip_still_plan(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = yaml.safe_load(BIG)
    code, _, err = plan(tmp_path, yaml.safe_dump(doc, sort_keys=False), capsys)
    assert code == 0, err


# --------------------------------------------------------------------------- 7, 16, 17, 18, 21: more refusals

ZERO = (
    "is {shown}: Prometheus takes a zero retention as unset and keeps its default of 15d, not nothing and not "
    "forever: give the time to keep, e.g. 15d or 30d"
)
MORE_REFUSED: list[tuple[str, dict[str, Any], tuple[str, ...], str]] = [
    # 7. cmd/prometheus/main.go L621-627 at v2.55.1: zero is "unset", which is the default 15d
    *(
        (
            f"7 retention {v!r}",
            big({"monitoring.retention": v}),
            (),
            "monitoring.retention " + ZERO.format(shown=repr(v)),
        )
        for v in ("0d", "0", 0, "00h", "0y")
    ),
    # 16. did-you-means that point the right way
    (
        "16 a GPU family",
        big({"host.gpu": "mi50"}),
        (),
        "host.gpu is 'mi50': not a GPU of the catalog (did you mean 'mi50-16gb' or 'mi50-32gb'?)",
    ),
    (
        "16 a GPU in capitals",
        big({"host.gpu": "MI60"}),
        (),
        "host.gpu is 'MI60': not a GPU of the catalog (did you mean 'mi60'?)",
    ),
    (
        "16 a GPU typo still",
        big({"host.gpu": "mi61"}),
        (),
        "host.gpu is 'mi61': not a GPU of the catalog (did you mean 'mi60'?)",
    ),
    (
        "16 a model id in another case",
        big({"vllm.model": "Casperhansen/Llama-3.3-70B-Instruct-AWQ"}),
        (),
        "vllm.model is 'Casperhansen/Llama-3.3-70B-Instruct-AWQ', which differs from the catalog's "
        "'casperhansen/llama-3.3-70b-instruct-awq' only in case: model ids are case-sensitive here",
    ),
    # 17. an unquoted PCI address, read by YAML 1.1 as a base-60 number
    (
        "17 an unquoted PCI address",
        big({"host.gpus[0].pci": 180.0}),
        (),
        'host.gpus[0].pci must be a PCI address such as "0000:03:00.0" (domain:bus:device.function), got the '
        "number 180.0; a YAML 1.1 tool reads an unquoted address as a base-60 number, so quote it",
    ),
    # 18. shapes from elsewhere
    (
        "18 the host's gpus as a server's list of indexes",
        big({"host.gpus": [0, 1]}),
        (),
        "host.gpus is [0, 1], a list of GPU indexes, the form of a server's gpus: a host lists its GPUs as "
        "{index, card, render, pci} each, the form `python -m components.discover --write STACK` writes",
    ),
    (
        "18 a fleet host's gpus as indexes",
        fleet({"hosts.gpu-b.gpus": [0, 1, 2]}),
        FLEET_SECRETS,
        "hosts.gpu-b.gpus is [0, 1, 2], a list of GPU indexes",
    ),
    (
        "18 a dotted key set without --path",
        big() | {"vllm.max_model_len": "8192"},
        (),
        "vllm.max_model_len is one key with a dot in its name, as `pulumi config set` writes it without --path: "
        "Pulumi does not put it into rocm-inference:vllm; run `pulumi config rm 'rocm-inference:vllm.max_model_len'` "
        "and `pulumi config set --path 'rocm-inference:vllm.max_model_len' VALUE`",
    ),
    (
        "18 a dotted key with an index",
        big() | {"host.gpus[0].pci": "0000:03:00.0"},
        (),
        "host.gpus[0].pci is one key with a dot in its name",
    ),
    # 21. a gateway without a server
    (
        "21 a fleet with a gateway and no server",
        {k: v for k, v in fleet().items() if k != "servers"},
        FLEET_SECRETS,
        "servers is required: the gateway (rocm-inference:gateway) has nothing to route without a vLLM server",
    ),
]


@pytest.mark.parametrize(("case", "values", "secrets", "line"), MORE_REFUSED, ids=[c[0] for c in MORE_REFUSED])
def test_more_refused_with_one_line(case: str, values: dict[str, Any], secrets: tuple[str, ...], line: str) -> None:
    found = errors(values, secrets)
    assert len(found) == 1, found
    assert found[0].startswith(SOURCE + "rocm-inference:" + line), found[0]


MORE_PASSING: list[tuple[str, dict[str, Any], tuple[str, ...]]] = [
    ("7 a retention of hours", big({"monitoring.retention": "12h"}), ()),
    ("7 a retention of ten days", big({"monitoring.retention": "10d"}), ()),
    ("16 the 32 GB MI50", big({"host.gpu": "mi50-32gb", "vllm.max_model_len": 8192}), ()),
    ("17 a quoted PCI address", big({"host.gpus[0].pci": "0000:03:00.0"}), ()),
    (
        "17 no PCI address",
        big({"host.gpus": [{"index": 0, "card": 1, "render": 128}, {"index": 1, "card": 2, "render": 129}]}),
        (),
    ),
]


@pytest.mark.parametrize(("case", "values", "secrets"), MORE_PASSING, ids=[c[0] for c in MORE_PASSING])
def test_more_neighbours_pass(case: str, values: dict[str, Any], secrets: tuple[str, ...]) -> None:
    assert errors(values, secrets) == []


def test_18_keys_outside_config_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = BIG + "rocm-inference:gateway_api_key: sk-x\nconfg:\n  a: b\n"
    code, _, err = plan(tmp_path, text, capsys)
    assert code == 1
    lines = err.splitlines()
    assert (
        "Pulumi.mine.yaml: rocm-inference:gateway_api_key is at the top of the file, outside `config:`: Pulumi "
        "ignores it without a word; indent it under `config:`"
    ) in lines
    assert any(
        line.startswith("Pulumi.mine.yaml: confg is not a key of a stack file (did you mean 'config'?)")
        for line in lines
    ), lines


def test_18_a_stack_file_with_its_own_keys_passes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = plan(tmp_path, "secretsprovider: passphrase\nencryptionsalt: v1:abc\n" + BIG, capsys)
    assert code == 0, err


def test_21_format_gateway_on_a_fleet_without_servers_says_nothing_is_routed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = (ROOT / "Pulumi.fleet.yaml").read_text()
    start = text.index("  rocm-inference:servers:")
    text = text[:start] + text[text.index("  rocm-inference:embeddings:") :]
    code, out, err = plan(tmp_path, text, capsys, "--format", "gateway")
    assert code == 1 and out == ""
    assert err.strip() == (
        "Pulumi.mine.yaml: rocm-inference:servers is required: the gateway (rocm-inference:gateway) has nothing to "
        "route without a vLLM server"
    )


# --------------------------------------------------------------------------- 5: a startup_timeout below the load

SLOW: list[tuple[str, dict[str, Any], tuple[str, ...], str]] = [
    (
        "5 the 70B under a 5-minute wait",
        big({"vllm.startup_timeout": 300}),
        (),
        "vllm.startup_timeout is 300 s, below the plan's own estimate of this server's load: about 367 s (120 s "
        "engine start + 37 GiB of weights at 0.15 GiB/s): `pulumi up` would fail waiting for /health, or the "
        "healthcheck restart a server that was only loading; raise startup_timeout to 600 (the estimate and half "
        "again)",
    ),
    (
        "5 the 70B at the least allowed",
        big({"vllm.startup_timeout": 60}),
        (),
        "vllm.startup_timeout is 60 s, below the plan's own estimate of this server's load: about 367 s",
    ),
    (
        "5 the small stack's model",
        values_of("small-chat") | {"vllm": values_of("small-chat")["vllm"] | {"startup_timeout": 120}},
        (),
        "vllm.startup_timeout is 120 s, below the plan's own estimate of this server's load: about 182 s (120 s "
        "engine start + 9 GiB of weights at 0.15 GiB/s)",
    ),
    (
        "5 a fleet server",
        fleet({"servers.coder.startup_timeout": 150}),
        FLEET_SECRETS,
        "servers.coder.startup_timeout is 150 s, below the plan's own estimate of this server's load: about 155 s "
        "(120 s engine start + 5 GiB of weights at 0.15 GiB/s)",
    ),
]


@pytest.mark.parametrize(("case", "values", "secrets", "start"), SLOW, ids=[c[0] for c in SLOW])
def test_5_a_startup_timeout_below_the_load_estimate_is_warned(
    case: str, values: dict[str, Any], secrets: tuple[str, ...], start: str
) -> None:
    warnings = load(values, secrets).warnings
    found = [w for w in warnings if "startup_timeout" in w]
    assert len(found) == 1, warnings
    assert found[0].startswith(SOURCE + "rocm-inference:" + start), found[0]


@pytest.mark.parametrize(
    ("case", "values", "secrets"),
    [
        ("5 the default", big(), ()),
        ("5 just above the estimate", big({"vllm.startup_timeout": 400}), ()),
        ("5 a fleet server above its estimate", fleet({"servers.coder.startup_timeout": 160}), FLEET_SECRETS),
        ("5 the embeddings server's short wait (no GPU weights)", big({"embeddings.startup_timeout": 60}), ()),
    ],
)
def test_5_a_startup_timeout_that_covers_the_load_passes(
    case: str, values: dict[str, Any], secrets: tuple[str, ...]
) -> None:
    assert not [w for w in load(values, secrets).warnings if "startup_timeout" in w]


def test_5_the_warning_and_the_downtime_note_share_one_estimate() -> None:
    from components.planning.rules import assess
    from components.planning.timing import load_estimate
    from components.tools.review import downtime

    capacity = assess(vllm_context(load(big()).settings), catalog_module.load_catalog()).capacity
    assert capacity is not None
    estimate = load_estimate(capacity.weights_gib_per_gpu, capacity.tensor_parallel_size)
    note = downtime(True, capacity.as_json())
    assert note.startswith(f"the OpenAI endpoint is down about {round(estimate.seconds / 60)} min while 37 GiB")
    [warning] = [w for w in load(big({"vllm.startup_timeout": 300})).warnings if "startup_timeout" in w]
    assert f"about {round(estimate.seconds)} s ({estimate.basis})" in warning


# --------------------------------------------------------------------------- 3: an address nothing answers at

ADDRESS = "which other machines reach, but rocm-inference:"


def _no_gateway(changes: dict[str, Any]) -> dict[str, Any]:
    values = fleet(changes)
    del values["gateway"]
    return values


# (case, values, secrets, the warning after "Pulumi.test.yaml: rocm-inference:" starts with, its way out)
UNREACHED: list[tuple[str, dict[str, Any], tuple[str, ...], str, str]] = [
    (
        "3 a single host named on the LAN, bound to loopback by default",
        big({"host.address": "gpu-a.lan"}),
        (),
        f"host.address is 'gpu-a.lan', {ADDRESS}host.bind is 127.0.0.1 (the default), loopback: the outputs "
        "advertise vLLM server vllm at http://gpu-a.lan:8000, where nothing answers",
        "bind to the host's LAN address (bind: its private IP, which then needs the API keys), or write "
        "address: localhost and reach it through an SSH tunnel (ssh -L 8000:localhost:8000 gpu-a.lan)",
    ),
    (
        "3 a single host at a LAN IP, bound to loopback in writing",
        big({"host.address": "10.0.0.5", "host.bind": "127.0.0.1"}),
        (),
        f"host.address is '10.0.0.5', {ADDRESS}host.bind is 127.0.0.1, loopback: the outputs advertise vLLM "
        "server vllm at http://10.0.0.5:8000",
        "ssh -L 8000:localhost:8000 10.0.0.5",
    ),
    (
        "3 the gateway's own host bound to loopback",
        fleet({"hosts.gpu-a.bind": "127.0.0.1"}),
        FLEET_SECRETS,
        f"hosts.gpu-a.address is 'gpu-a.lan', {ADDRESS}hosts.gpu-a.bind is 127.0.0.1, loopback: the outputs "
        "advertise the gateway at http://gpu-a.lan:4000, where nothing answers",
        "ssh -L 4000:localhost:4000 gpu-a.lan",
    ),
    (
        "3 the monitoring host (no gateway) bound to loopback",
        _no_gateway({"hosts.gpu-a.bind": "127.0.0.1"}),
        ("vllm_api_key", "embeddings_api_key"),
        f"hosts.gpu-a.address is 'gpu-a.lan', {ADDRESS}hosts.gpu-a.bind is 127.0.0.1, loopback: the outputs "
        "advertise vLLM server chat-a at http://gpu-a.lan:8000",
        "or write address: localhost",
    ),
    (
        "3 a fleet host without gateway or monitoring, its servers' URLs in the outputs",
        {k: v for k, v in _no_gateway({"hosts.gpu-b.bind": "127.0.0.1"}).items() if k not in ("monitoring", "chat_ui")},
        ("vllm_api_key", "embeddings_api_key"),
        f"hosts.gpu-b.address is 'gpu-b.lan', {ADDRESS}hosts.gpu-b.bind is 127.0.0.1, loopback: the outputs "
        "advertise vLLM server chat-b at http://gpu-b.lan:8000",
        "bind to the host's LAN address",
    ),
]


@pytest.mark.parametrize(("case", "values", "secrets", "start", "way_out"), UNREACHED, ids=[c[0] for c in UNREACHED])
def test_3_an_address_that_reaches_nothing_is_warned(
    case: str, values: dict[str, Any], secrets: tuple[str, ...], start: str, way_out: str
) -> None:
    warnings = load(values, secrets).warnings
    found = [w for w in warnings if ADDRESS in w]
    assert len(found) == 1, warnings
    assert found[0].startswith(SOURCE + "rocm-inference:" + start), found[0]
    assert way_out in found[0]


REACHED: list[tuple[str, dict[str, Any], tuple[str, ...]]] = [
    ("3 localhost and loopback (the shipped single host)", big(), ()),
    ("3 a loopback address and bind", big({"host.address": "127.0.0.1", "host.bind": "127.0.0.1"}), ()),
    ("3 another loopback address", big({"host.address": "127.0.0.2", "host.bind": "127.0.0.2"}), ()),
    ("3 IPv6 loopback", big({"host.address": "::1", "host.bind": "::1"}), ()),
    ("3 LAN address and LAN bind (the shipped fleet)", fleet(), FLEET_SECRETS),
    (
        "3 a LAN single host with its keys",
        big({"host.address": "gpu-a.lan", "host.bind": "10.0.0.5"}),
        ("vllm_api_key", "embeddings_api_key"),
    ),
]


@pytest.mark.parametrize(("case", "values", "secrets"), REACHED, ids=[c[0] for c in REACHED])
def test_3_addresses_that_reach_their_services_pass(
    case: str, values: dict[str, Any], secrets: tuple[str, ...]
) -> None:
    warnings = load(values, secrets).warnings
    assert not [w for w in warnings if ADDRESS in w], warnings


def test_3_a_gateway_target_on_loopback_is_not_warned_twice() -> None:
    # The gateway and Prometheus on gpu-a reach gpu-b: the warnings on its bind say it, with the same way out.
    warnings = load(fleet({"hosts.gpu-b.bind": "127.0.0.1"}), FLEET_SECRETS).warnings
    about_b = [w for w in warnings if w.startswith(SOURCE + "rocm-inference:hosts.gpu-b.")]
    assert about_b and all("hosts.gpu-b.bind is 127.0.0.1 with address 'gpu-b.lan'" in w for w in about_b), warnings


# --------------------------------------------------------------------------- 11, 18: architecture_file


def _stack_with_file(folder: Path, architecture_file: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    doc = yaml.safe_load(BIG)
    doc["config"]["rocm-inference:vllm"] |= {"model": "Qwen/Qwen3-14B", "architecture_file": architecture_file}
    path = folder / "Pulumi.mine.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


QWEN = (ROOT / "tests" / "data" / "configs" / "Qwen--Qwen3-14B.json").read_text()


@pytest.mark.parametrize(
    ("written", "where"),
    [
        ("qwen3-14b.json", "qwen3-14b.json"),  # beside the stack file
        ("models/qwen3-14b.json", "models/qwen3-14b.json"),  # below it
        ("../models/qwen3-14b.json", "../models/qwen3-14b.json"),  # beside its folder
    ],
)
def test_11_an_architecture_file_is_read_from_the_stack_files_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], written: str, where: str
) -> None:
    stack = _stack_with_file(tmp_path / "some" / "dir", written)
    (stack.parent / where).parent.mkdir(parents=True, exist_ok=True)
    (stack.parent / where).write_text(QWEN)
    monkeypatch.chdir(tmp_path)  # elsewhere than the stack file's folder
    code = main(["--file", str(stack)])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "Qwen/Qwen3-14B" in out.out


def test_11_an_absolute_architecture_file_is_read_as_it_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "abs.json").write_text(QWEN)
    stack = _stack_with_file(tmp_path / "some" / "dir", str(tmp_path / "abs.json"))
    monkeypatch.chdir(tmp_path / "some")
    assert main(["--file", str(stack)]) == 0, capsys.readouterr().err


def test_11_a_file_in_the_current_directory_only_is_not_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    stack = _stack_with_file(tmp_path / "some" / "dir", "qwen3-14b.json")
    (tmp_path / "qwen3-14b.json").write_text(QWEN)
    monkeypatch.chdir(tmp_path)
    assert main(["--file", str(stack)]) == 1
    err = capsys.readouterr().err
    assert err.strip() == (
        "Pulumi.mine.yaml: rocm-inference:vllm.architecture_file is 'qwen3-14b.json', which cannot be read beside "
        f"the stack file ({stack.parent / 'qwen3-14b.json'}): No such file or directory; the path is relative to "
        "the stack file's folder"
    )


NOT_CONFIG = (
    "not the model's config.json: give the path of its config.json, a JSON object with hidden_size, "
    "num_hidden_layers, ... from the model's Hub repository (or let python -m components.model ORG/NAME --write "
    "STACK write its architecture)"
)


@pytest.mark.parametrize(
    ("content", "holds"),
    [
        ([{"hidden_size": 5120}], "holds a JSON list"),
        ([], "holds a JSON list"),
        ("config.json", "holds a JSON string"),
        (40, "holds a JSON number"),
        (
            {
                "tokenizer_class": "Qwen2Tokenizer",
                "added_tokens_decoder": {"151643": {"content": "<|endoftext|>"}},
                "chat_template": "{% for m in messages %}...",
                "eos_token": "<|im_end|>",
            },
            "looks like a tokenizer_config.json (it has tokenizer_class, added_tokens_decoder, chat_template)",
        ),
        (
            {"chat_template": "{{ messages }}", "model_max_length": 131072},
            "looks like a tokenizer_config.json (it has chat_template, model_max_length)",
        ),
        (
            {"bos_token_id": 151643, "do_sample": True, "eos_token_id": [151645, 151643], "temperature": 0.6},
            "looks like a generation_config.json (it has do_sample, eos_token_id, bos_token_id)",
        ),
        (
            {"_from_model_config": True, "eos_token_id": 2, "transformers_version": "4.51.0"},
            "looks like a generation_config.json (it has eos_token_id, _from_model_config)",
        ),
    ],
)
def test_18_an_architecture_file_of_another_shape_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: Any, holds: str
) -> None:
    (tmp_path / "given.json").write_text(json.dumps(content))
    monkeypatch.chdir(tmp_path)
    values = big({"vllm.model": "Qwen/Qwen3-14B", "vllm.architecture_file": "given.json"})
    assert errors(values) == [
        f"{SOURCE}rocm-inference:vllm.architecture_file is 'given.json', which {holds}, {NOT_CONFIG}"
    ]


@pytest.mark.parametrize(
    "content",
    [
        json.loads(QWEN),
        json.loads(QWEN) | {"eos_token_id": 151645, "bos_token_id": 151643},  # config.json carries these too
        {"model_type": "qwen3", "text_config": json.loads(QWEN)},  # a multimodal config's language model
    ],
)
def test_18_a_config_json_passes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: Any) -> None:
    (tmp_path / "config.json").write_text(json.dumps(content))
    monkeypatch.chdir(tmp_path)
    assert errors(big({"vllm.model": "Qwen/Qwen3-14B", "vllm.architecture_file": "config.json"})) == []
