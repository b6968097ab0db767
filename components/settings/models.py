"""The stack file, modelled: frozen pydantic models of every key, with their defaults.

Data flows one way: `Pulumi.<stack>.yaml` -> these frozen models (validated once, all
errors at once) -> component args -> resources. Components never read configuration.
Defaults live here and nowhere else.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from components.planning.catalog import Architecture
from components.planning.secrets import (
    PROJECT_SECRET_ENV,
    credential_in_url,
    credential_in_value,
    credential_in_words,
    secret_in_environment,
)
from components.settings.errors import THIS_KEY, shown
from components.settings.errors import invalid as _invalid


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


Port = Annotated[StrictInt, Field(ge=1, le=65535)]
# Seconds between two healthchecks; tests shorten it through the stack files they deploy.
HealthInterval = Annotated[StrictInt, Field(ge=1, le=300)]
NonNegative = Annotated[StrictInt, Field(ge=0)]

_SIZE = re.compile(r"^(\d+)\s*(b|k|kb|m|mb|g|gb)?$", re.IGNORECASE)
_SIZE_FACTORS = {"b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


def size_bytes(text: str) -> int:
    """Docker's byte-size notation (`16g`, `512m`, `1gb`, `1048576`) in bytes."""
    match = _SIZE.match(text.strip())
    if not match:
        raise ValueError(text)
    unit = (match.group(2) or "b")[0].lower()
    return int(match.group(1)) * _SIZE_FACTORS[unit]


def _check_image(value: str) -> str:
    # A reference with neither tag nor digest means `latest`: a warning, not an error (see _warnings).
    if any(c.isspace() for c in value):
        raise _invalid(f"must be an image reference like repo/name:tag, got {shown(value)}")
    return value


Image = Annotated[StrictStr, Field(min_length=1), AfterValidator(_check_image)]


_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9_.-]+)?$")


# A Hub page's address: huggingface.co/ORG/NAME[/tree|blob|resolve|commit/REVISION/...] (the model tool's too).
HUB_PAGE = re.compile(
    r"^(?:https?://)?(?:www\.)?(?:huggingface\.co|hf\.co)/(?P<path>[^?#]*)(?:[?#].*)?$", re.IGNORECASE
)
# The page kinds whose third part is a revision: a commit's page, a branch's or tag's tree, a file at a revision.
HUB_REVISION_PAGES = ("tree", "blob", "resolve", "commit")
COMMIT = re.compile(r"^[0-9a-f]{40}$")


def hub_page(value: str) -> tuple[str, str | None] | None:
    """(ORG/NAME, the revision it names or None) of a Hub page address; None for any other text."""
    page = HUB_PAGE.match(value.strip())
    if page is None:
        return None
    parts = [p for p in page.group("path").split("/") if p]
    revision = parts[3] if len(parts) >= 4 and parts[2] in HUB_REVISION_PAGES else None
    return "/".join(parts[:2]), revision


def pinned_pip_style(value: str) -> tuple[str, str] | None:
    """(ORG/NAME, REVISION) of a model written pip's way, `org/name@rev`; None otherwise."""
    match = re.fullmatch(r"([^@\s:]+)@([^@\s]+)", value.strip())
    return (match.group(1), match.group(2)) if match and "://" not in value else None


def revision_advice(repo: str, revision: str, key: str = "model_revision") -> str:
    """How to write a revision: its own key, and a commit as its 40 hex digits."""
    if COMMIT.match(revision):
        return f"write {key}: {revision}"
    if re.fullmatch(r"[0-9a-f]{4,39}", revision):
        return (
            f"write {key}: the commit's full 40 hex digits ({revision} is shortened: the Hub takes a branch, a tag "
            f"or a whole commit id; huggingface.co/{repo}/commits lists them)"
        )
    return f"write {key}: {revision} (a branch or tag), or a commit's 40 hex digits"


def read_revision(value: str, model: str | None, key: str = "model_revision", model_key: str = "model") -> str:
    """A revision as written under `key` -> the revision: the commit (or branch) of a Hub page's address that
    names `model` is taken. ValueError, with what the value is and what to write instead (the words after
    `VALUE is `), for a model and revision written pip's way, an address naming no revision, or one of another
    model. The stack's model_revision and the model tool's --revision both read a revision with it."""
    pip = pinned_pip_style(value)
    if pip is not None:
        repo, revision = pip
        raise ValueError(
            f"a model and revision written pip's way (NAME@REVISION): the model goes in {model_key} ({repo}), and "
            f"here only the revision: {revision_advice(repo, revision, key)}"
        )
    page = hub_page(value)
    if page is None:
        return value
    repo, named = page
    if named is None:
        raise ValueError(
            "a Hub address that names no revision: give a branch, a tag or a commit's 40 hex digits (or the "
            "address of the commit's page, huggingface.co/ORG/NAME/commit/<40 hex digits>)"
        )
    if model is not None and repo.lower() != model.lower():
        raise ValueError(
            f"a revision of {repo}, not of {model} ({model_key} is {model}): give a revision of "
            f"{model} (a branch, a tag or a commit's 40 hex digits), or make {model_key} {repo}"
        )
    return named  # unambiguous: the commit (or branch) of this model's page


def _not_a_secret(value: str) -> str:
    """A name that goes on a command line and into the outputs (a model's id, its served name): never a secret,
    and never shown when it looks like one."""
    found = credential_in_value(value)
    if found:
        raise _invalid(
            f"holds {found}, which would show in clear in the plan, on the server's command line and in the outputs: "
            "this key takes a name, never a secret; if what is written here is one, replace it wherever it was used"
        )
    return value


def _hub_id(value: str) -> str:
    # The server downloads the model inside its container, where no host path is mounted.
    pip = pinned_pip_style(value)
    if pip is not None:
        repo, revision = pip
        raise _invalid(
            f"is {shown(value)}, a revision written pip's way (NAME@REVISION), which the Hub does not read: write "
            f"model: {repo} and give the revision its own key: {revision_advice(repo, revision)}"
        )
    page = hub_page(value)
    if page is not None and page[1] is not None:
        raise _invalid(
            f"is {shown(value)}, the Hub page of a revision: write model: {page[0]} and give the revision its own key: "
            f"{revision_advice(page[0], page[1])}"
        )
    if "://" in value:
        raise _invalid(
            f"is {shown(value)}, a URL: give the model's Hugging Face Hub id, the org/name part of its huggingface.co "
            "address (e.g. Qwen/Qwen2.5-7B-Instruct-AWQ)"
        )
    if value.startswith(("/", ".", "~")) or "\\" in value or value.count("/") > 1:
        raise _invalid(
            f"is {shown(value)}, a local path: the server looks for it inside its container, where nothing mounts it; "
            "give the model's Hugging Face Hub id (org/name, e.g. Qwen/Qwen2.5-7B-Instruct-AWQ): the model is "
            "downloaded into the cache volume"
        )
    if not _HUB_ID.match(value) or ".." in value or value.endswith((".", "-")):
        raise _invalid(
            f"must be a Hugging Face Hub id like org/name (e.g. Qwen/Qwen2.5-7B-Instruct-AWQ), got {shown(value)}"
        )
    return value


HubId = Annotated[StrictStr, Field(min_length=1), AfterValidator(_not_a_secret), AfterValidator(_hub_id)]


class GpuNode(_Model):
    """One GPU of the host: its ROCm index, its DRM nodes (`/dev/dri/cardN`, `/dev/dri/renderDN`) and
    its PCI address (how the host's hwmon sensors name it; `discover` writes it)."""

    index: NonNegative
    card: NonNegative
    render: Annotated[StrictInt, Field(ge=128, le=255)]
    pci: Annotated[StrictStr, Field(pattern=r"^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$")] | None = None

    @field_validator("pci", mode="before")
    @classmethod
    def _quoted_pci(cls, value: Any) -> Any:
        if isinstance(value, int | float) and not isinstance(value, bool):
            raise _invalid(
                f'must be a PCI address such as "0000:03:00.0" (domain:bus:device.function), got the number '
                f"{shown(value)}; a YAML 1.1 tool reads an unquoted address as a base-60 number, so quote it"
            )
        return value


class Groups(_Model):
    """Numeric ids of the host's `video` and `render` groups (names fail when the image lacks them)."""

    video: NonNegative
    render: NonNegative


_HOST_NAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$"
)  # a fully qualified name may end in the root's dot (gpu-a.lan.)


class HostSettings(_Model):
    docker: StrictStr
    ssh_opts: tuple[StrictStr, ...] = ()
    address: Annotated[StrictStr, Field(min_length=1)] = "localhost"
    bind: StrictStr = "127.0.0.1"
    gpu: Annotated[StrictStr, Field(min_length=1)]
    gpu_memory_gib: Annotated[float, Field(gt=0, le=1024)] | None = None
    gpus: tuple[GpuNode, ...]
    groups: Groups
    # Check the host (devices, groups, Docker, disk, GPUs held by others) before anything is pulled.
    preflight: StrictBool = True
    # The ssh:// host's public key (`ssh-ed25519 AAAA...`), pinned for the preflight's SSH client,
    # which reads no known_hosts file; `python -m components.discover --ssh` records it.
    ssh_host_key: (
        Annotated[
            StrictStr, Field(pattern=r"^(ssh-(ed25519|rsa|dss)|ecdsa-sha2-nistp(256|384|521)) [A-Za-z0-9+/=]+( .*)?$")
        ]
        | None
    ) = None
    # Seconds `pulumi up` lets one image pull take (the gfx906 vLLM image is about 10 GB).
    pull_timeout: Annotated[StrictInt, Field(ge=60, le=86400)] = 3600
    # How / is mounted where Docker runs (`findmnt -no PROPAGATION /`). "private" (some containers and VMs,
    # a Proxmox LXC): Docker refuses a bind of / with `rslave`, so node-exporter binds it without propagation
    # and sees only the filesystems mounted before it started. The preflight checks it.
    root_mount: Literal["shared", "private"] = "shared"

    @field_validator("docker")
    @classmethod
    def _docker_url(cls, value: str) -> str:
        if credential_in_url(value):
            # Never echoed: the URL holds the password. Docker refuses it too ("plain-text password is not supported").
            raise _invalid(
                "has a password in its URL (user:password@), which would show in clear in the plan and in state, "
                "and which Docker's ssh:// refuses: write ssh://USER@HOST and log in with a key "
                "(pulumi config set --secret rocm-inference:ssh_private_key < KEYFILE) or your SSH agent"
            )
        if value.startswith("unix:///") or re.match(r"^ssh://([^@/\s]+@)?[^@/\s:]+(:\d+)?$", value):
            return value
        raise _invalid(f"must be unix:///path/to/docker.sock or ssh://user@host[:port], got {shown(value)}")

    @field_validator("ssh_host_key", mode="before")
    @classmethod
    def _public_host_key(cls, value: Any) -> Any:
        found = credential_in_value(value) if isinstance(value, str) else None
        if found and not re.match(r"^(ssh-|ecdsa-)", value):
            # Never echoed. A known_hosts entry holds the server's public key; what was pasted is a secret.
            raise _invalid(
                f"holds {found}, not a host's public key: the host key is the server's public key as known_hosts "
                "holds it (`ssh-ed25519 AAAA...`, which python -m components.discover --ssh records, or "
                "`ssh-keyscan HOST`); the key you log in with goes into the secret rocm-inference:ssh_private_key "
                "(pulumi config set --secret rocm-inference:ssh_private_key < KEYFILE). What was pasted here is in "
                "plain text in the stack file: remove it, and replace that key if the file was shared or committed"
            )
        return value

    @field_validator("ssh_opts")
    @classmethod
    def _no_password(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        found = credential_in_words(value)
        if found:
            raise _invalid(
                f"carries {found}, which would show in clear in the plan, in state and in `ps`: log in with a key "
                "(pulumi config set --secret rocm-inference:ssh_private_key < KEYFILE) or your SSH agent, or let "
                "sshpass read the password from your environment (sshpass -e, with SSHPASS set where pulumi runs)"
            )
        return value

    @field_validator("address")
    @classmethod
    def _host_name_or_ip(cls, value: str) -> str:
        try:
            ipaddress.ip_address(value)
            return value
        except ValueError:
            pass
        if _HOST_NAME.match(value):
            return value
        raise _invalid(
            f"must be a host name or an IP address, without scheme, port or path (the URLs add those), got {shown(value)}"
        )

    @field_validator("bind")
    @classmethod
    def _bind_ip(cls, value: str) -> str:
        try:
            address = ipaddress.ip_address(value)
        except ValueError:
            raise _invalid(f"must be an IP address such as 127.0.0.1, got {shown(value)}") from None
        if address.is_unspecified:
            # vLLM's /metrics (and /health, /tokenize...) are open by design, whatever its API key.
            raise _invalid(
                f"is {value}, every interface: vLLM's /metrics is open by design, so publish on loopback or on "
                "the host's private address (e.g. 10.0.0.5), never on all interfaces"
            )
        return value

    @field_validator("gpus", mode="before")
    @classmethod
    def _inventory_form(cls, value: Any) -> Any:
        if isinstance(value, list | tuple) and value and all(isinstance(v, int) for v in value):
            raise _invalid(
                f"is {list(value)}, a list of GPU indexes, the form of a server's gpus: a host lists its GPUs as "
                "{index, card, render, pci} each, the form `python -m components.discover --write STACK` writes"
            )
        return value

    @field_validator("gpus")
    @classmethod
    def _unique_nodes(cls, value: tuple[GpuNode, ...]) -> tuple[GpuNode, ...]:
        # Checked here, not with min_length, which also fires when an item is invalid (one error per mistake).
        if not value:
            raise _invalid("must list at least one GPU")
        for attr in ("index", "card", "render"):
            seen = [getattr(g, attr) for g in value]
            dupes = sorted({v for v in seen if seen.count(v) > 1})
            if dupes:
                raise _invalid(f"lists {attr} {dupes} more than once")
        return value

    @property
    def is_remote(self) -> bool:
        return self.docker.startswith("ssh://")

    @property
    def ssh_target(self) -> tuple[str | None, str, int]:
        """(user, host, port) of an ssh:// Docker host: no user where the URL has none, port 22 by default."""
        match = re.match(r"^ssh://(?:([^@/\s]+)@)?([^@/\s:]+)(?::(\d+))?$", self.docker)
        if not match:
            raise ValueError(f"not an ssh:// Docker host: {self.docker}")
        return match.group(1), match.group(2), int(match.group(3) or 22)

    @property
    def bind_is_loopback(self) -> bool:
        return ipaddress.ip_address(self.bind).is_loopback

    def nodes(self, indices: Iterable[int]) -> tuple[GpuNode, ...]:
        """The inventory entries of these ROCm indices, in the order given."""
        by_index = {g.index: g for g in self.gpus}
        return tuple(by_index[i] for i in indices)


def _utilization(value: float) -> float:
    if not 0 < value <= 1:
        raise _invalid(f"must be in (0, 1], got {value}")
    return value


def _shm(value: str) -> str:
    try:
        size = size_bytes(value)
    except ValueError:
        raise _invalid(f"must be a size like 16g, 512m or 1gb, got {shown(value)}") from None
    if size % (1 << 20) or size < 64 << 20:
        raise _invalid(f"must be a whole number of MiB and at least 64m, got {shown(value)}")
    return value


EnvName = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


MANAGED_ENV = frozenset({"HIP_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES", "CUDA_VISIBLE_DEVICES", "HF_HOME"})


def environment_name_problem(key: str, secret: bool = False) -> str | None:
    """What is wrong with an environment variable's name given in a stack (a secret entry's too), or None."""
    if not EnvName.match(key):
        return f"has {key!r}, which is not an environment variable name"
    if key in MANAGED_ENV or (secret and PROJECT_SECRET_ENV.match(key)):
        return f"has {key!r}, which this project sets itself (from the GPUs and secrets of the stack)"
    return None


def _environment(value: Mapping[str, str]) -> Mapping[str, str]:
    for key, text in value.items():
        problem = environment_name_problem(key)
        if problem:
            raise _invalid(problem)
        reason = secret_in_environment(key, text)
        if reason:
            # The value is never echoed; the way out keeps it a secret end to end.
            raise _invalid(
                f"has {key!r} {reason}: in plain text it would show in the plan, the compose export and "
                f"`docker inspect`; make it a secret entry: pulumi config set --secret --path '{THIS_KEY}.{key}' "
                "VALUE (see README, Secrets)"
            )
    return value


Environment = Annotated[dict[StrictStr, StrictStr], Field(default_factory=dict), AfterValidator(_environment)]
Utilization = Annotated[float, AfterValidator(_utilization)]
ShmSize = Annotated[StrictStr, AfterValidator(_shm)]
DockerName = Annotated[StrictStr, Field(pattern=r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")]


def _volume_name(value: Any) -> Any:
    """A named volume, deliberately never a bind mount of a host folder: the project creates the volume with its
    labels and keeps it across replacements and destroys (components/container.py); a host folder would have to
    exist on a remote host beforehand, with the owner the image runs as, and nothing would check either."""
    if isinstance(value, str) and (value.startswith(("/", ".", "~")) or "/" in value or "\\" in value):
        raise _invalid(
            f"is {shown(value)}, a host path: this key names a Docker volume, which the project creates and keeps (a "
            "bind mount of a host folder is not supported): give a volume name such as open-webui-data; to have "
            "the data in a folder, copy it out of the volume (docker run --rm -v VOLUME:/from -v FOLDER:/to "
            "busybox cp -a /from/. /to)"
        )
    return value


VolumeName = Annotated[DockerName, BeforeValidator(_volume_name)]
# Host and server names become resource and container names: lower case, digits and dashes.
Name = Annotated[StrictStr, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,40}$")]
MAX_STARTUP_S = 7200
StartupTimeout = Annotated[StrictInt, Field(ge=60, le=MAX_STARTUP_S)]
HostRef = Annotated[StrictStr, Field(min_length=1)]


# The validation context's key for the folder of the stack file: `architecture_file` is read from there.
STACK_FOLDER = "stack_folder"


def stack_folder(info: ValidationInfo) -> Path:
    """The folder of the stack file being validated (the current directory when the caller gives none)."""
    context = info.context if isinstance(info.context, dict) else {}
    folder = context.get(STACK_FOLDER)
    return Path(folder) if folder is not None else Path()


def _architecture_json(value: str, info: ValidationInfo) -> Any:
    """The JSON of an architecture_file, read beside the stack file. Raises the error that names it."""
    path = stack_folder(info) / value
    try:
        return json.loads(path.read_text())
    except OSError as exc:
        raise _invalid(
            f"is {shown(value)}, which cannot be read beside the stack file ({path}): {exc.strerror}; the path is "
            "relative to the stack file's folder"
        ) from None
    except ValueError as exc:
        raise _invalid(f"is {shown(value)}, which is not a JSON config.json: {exc}") from None


# Keys only a model's config.json has (a multimodal one keeps the language model's under text_config).
_CONFIG_KEYS = frozenset({"hidden_size", "num_hidden_layers", "text_config", "model_type", "architectures"})
# What the other JSON files of a Hub repository hold, to name the file that was given instead.
_LOOKALIKES = (
    (
        "tokenizer_config.json",
        (
            "tokenizer_class",
            "added_tokens_decoder",
            "chat_template",
            "model_max_length",
            "clean_up_tokenization_spaces",
        ),
    ),
    (
        "generation_config.json",
        ("do_sample", "eos_token_id", "bos_token_id", "temperature", "top_p", "top_k", "_from_model_config"),
    ),
    ("tokenizer.json", ("model", "added_tokens", "normalizer", "pre_tokenizer", "decoder")),
    ("preprocessor_config.json", ("image_processor_type", "processor_class", "image_mean", "feature_extractor_type")),
)


def _not_a_config(content: Any) -> str:
    """What an architecture_file holds when it is not a config.json object (`holds a JSON list`,
    `looks like a tokenizer_config.json (...)`), or ''."""
    if not isinstance(content, dict):
        kind = {list: "list", str: "string", bool: "boolean", type(None): "null"}.get(type(content), "number")
        return f"holds a JSON {kind}"
    if _CONFIG_KEYS & content.keys():
        return ""
    for name, keys in _LOOKALIKES:
        found = [k for k in keys if k in content]
        if found:
            return f"looks like a {name} (it has {', '.join(found[:3])})"
    return ""


class WorkloadSettings(_Model):
    """What the plan's speed bands assume of a server's traffic: `concurrency` requests at once, each
    `prompt_tokens` in and `output_tokens` out, the first `cached_prompt_tokens` of each prompt already in
    vLLM's prefix cache (a system prompt or a conversation's earlier turns; prefix caching is on in vLLM V1).
    The defaults suit a chat box of a few users."""

    prompt_tokens: Annotated[StrictInt, Field(ge=1)] = 1000
    output_tokens: Annotated[StrictInt, Field(ge=1)] = 300
    concurrency: Annotated[StrictInt, Field(ge=1, le=4096)] = 4
    cached_prompt_tokens: Annotated[StrictInt, Field(ge=0)] = 0


Positive = Annotated[float, Field(gt=0, le=1e6)]


class CalibrationSettings(_Model):
    """The server's speed measured on its own box (`python -m components.verify STACK --calibrate --write`):
    the performance model's efficiencies as the box showed them, and what they were measured with. The plan
    uses them while the model, tensor parallel size and image are the same (components/planning/calibration.py)."""

    measured: Annotated[StrictStr, Field(pattern=r"^\d{4}-\d{2}-\d{2}")]
    model: StrictStr
    tensor_parallel_size: Annotated[StrictInt, Field(ge=1)]
    image: StrictStr
    # components/planning/performance.py's Efficiency, as measured:
    weights_efficiency: Annotated[float, Field(gt=0, le=1)]  # share of HBM bandwidth reading the dense weights
    experts_efficiency: Annotated[float, Field(gt=0, le=1)]  # ... reading a MoE layer's experts
    kv_efficiency: Annotated[float, Field(gt=0, le=1)]  # ... reading the KV cache
    kv_serial: Annotated[float, Field(ge=0, le=100)]  # sequences' worth of KV time a step pays walking one
    matmul_efficiency: Annotated[float, Field(gt=0, le=1)]  # share of peak FP16 a decode's matmuls reach
    dequant_ops: Annotated[float, Field(ge=0, le=1000)]  # FP16 operations to unpack one quantized weight
    allreduce_us: Positive  # one all-reduce between TP ranks
    sequence_ms: Positive  # per running sequence and step
    prefill_factor: Positive  # a prefill's time over the fitted estimate
    # per MoE layer and step, besides its experts' bytes (absent in a block written before it was modelled)
    moe_layer_us: Annotated[float, Field(ge=0, le=1e6)] | None = None


# The variables that steer a download through a mirror or a proxy (huggingface_hub reads HF_ENDPOINT, httpx and
# requests the proxies, in either case): on an offline server they reach nothing that downloads.
DOWNLOAD_VARIABLES = frozenset({"HF_ENDPOINT", "HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY"})


def _download_url(value: str) -> str:
    found = credential_in_value(value)
    if found:
        # Never echoed: the URL holds the credential.
        raise _invalid(
            f"carries {found}, which would show in clear in the plan and in `docker inspect`: give the proxy with its "
            "credentials as the secret rocm-inference:download_proxy (pulumi config set --secret "
            "rocm-inference:download_proxy http://USER:PASSWORD@HOST:PORT), which reaches the download on its stdin"
        )
    if not re.fullmatch(r"(https?|socks5h?)://[^\s/?#]+(/[^\s]*)?", value):
        raise _invalid(f"must be a URL such as http://proxy.lan:3128 or https://hf-mirror.example, got {value!r}")
    return value


DownloadUrl = Annotated[StrictStr, AfterValidator(_download_url)]


class DownloadSettings(_Model):
    """How the model download (the one-shot run before a vLLM server starts, the only process that reaches the
    Hub: the server runs offline) gets out: a Hub mirror, a proxy, and what bypasses it. A proxy that needs a
    login is the secret rocm-inference:download_proxy instead of `proxy`."""

    endpoint: DownloadUrl | None = None  # HF_ENDPOINT: a Hub mirror
    proxy: DownloadUrl | None = None  # HTTPS_PROXY and HTTP_PROXY, without credentials
    no_proxy: Annotated[StrictStr, Field(pattern=r"^[^\s]+$")] | None = None  # NO_PROXY: hosts reached directly


class SpeculativeSettings(_Model):
    """Speculative decoding, as vLLM's `--speculative-config` takes it: `mtp`, the model's own draft layers, or
    `ngram`, drafts looked up in the prompt; k draft tokens a step (num_speculative_tokens)."""

    method: Literal["mtp", "ngram"]
    num_speculative_tokens: Annotated[StrictInt, Field(ge=1, le=16)]
    # ngram: the longest and shortest prompt n-gram matched (vLLM's defaults where absent).
    prompt_lookup_max: Annotated[StrictInt, Field(ge=1, le=64)] | None = None
    prompt_lookup_min: Annotated[StrictInt, Field(ge=1, le=64)] | None = None

    @model_validator(mode="after")
    def _ngram_only(self) -> SpeculativeSettings:
        if self.method != "ngram" and (self.prompt_lookup_max is not None or self.prompt_lookup_min is not None):
            raise _invalid("prompt_lookup_max and prompt_lookup_min are ngram's: remove them with method mtp")
        if (self.prompt_lookup_min or 1) > (self.prompt_lookup_max or 64):
            raise _invalid(
                f"prompt_lookup_min {self.prompt_lookup_min} must be at most prompt_lookup_max {self.prompt_lookup_max}"
            )
        return self


class ServerSettings(_Model):
    """One vLLM server: `rocm-inference:vllm` in the single-host form, `rocm-inference:servers.<name>` in a fleet."""

    host: HostRef | None = None  # the only host when the stack has one
    # The serving engine, by its name in components/planning/engines/ (the stack's rules check that it is one).
    # `llamacpp` makes the server a LlamacppServerSettings (StackSettings.llamacpp_servers).
    engine: Name = "vllm"
    image: Image
    model: HubId
    # A Hub revision (commit or tag) of the model: the download and the server both use it.
    model_revision: Annotated[StrictStr, Field(pattern=r"^[A-Za-z0-9._/-]+$")] | None = None
    served_model_name: Annotated[StrictStr, AfterValidator(_not_a_secret)] | None = None
    gpus: tuple[NonNegative, ...]
    tensor_parallel_size: Annotated[StrictInt, Field(ge=1)]
    max_model_len: Annotated[StrictInt, Field(ge=16, le=10_485_760)]
    gpu_memory_utilization: Utilization
    max_num_seqs: Annotated[StrictInt, Field(ge=1)] | None = None
    max_num_batched_tokens: Annotated[StrictInt, Field(ge=16)] | None = None
    dtype: Literal["auto", "float16", "bfloat16", "float32"] = "auto"
    shm_size: ShmSize = "16g"
    port: Port = 8000
    container_name: DockerName | None = None  # the server's name
    cache_volume: VolumeName | None = None
    startup_timeout: StartupTimeout = 1800
    # Seconds the download before a (re)start may take: weights come in before the old server stops.
    download_timeout: Annotated[StrictInt, Field(ge=300, le=86400)] = 7200
    # The download's way out: a mirror, a proxy (the server itself runs offline and never uses them).
    download: DownloadSettings = DownloadSettings()
    # Seconds a server may hold requests without a token or a KV cache usage change before it is restarted;
    # by default longer than the slowest measured prefill at max_model_len (components/planning/prefill.py).
    stall_timeout: Annotated[StrictInt, Field(ge=1, le=7200)] | None = None
    health_interval: HealthInterval = 15
    environment: Environment
    # The traffic the plan's speed bands are computed for (components/planning/performance.py).
    workload: WorkloadSettings = WorkloadSettings()
    # Its speed measured on the box, which the plan's speed bands then use (verify --calibrate --write).
    calibration: CalibrationSettings | None = None
    # Speculative decoding (`--speculative-config`), where the image and the model support it (planning/rules.py).
    speculative: SpeculativeSettings | None = None
    # The model's config.json, as it is, for a model that is not in the catalog (or to override it);
    # or the path of that config.json, relative to the stack file's folder.
    architecture: Architecture | None = None
    architecture_file: StrictStr | None = None

    @model_validator(mode="before")
    @classmethod
    def _read_architecture_file(cls, data: Any, info: ValidationInfo) -> Any:
        # The file's content is validated as `architecture`, so a bad key is named there.
        if isinstance(data, dict) and isinstance(data.get("architecture_file"), str) and "architecture" not in data:
            try:
                content = _architecture_json(data["architecture_file"], info)
            except ValueError:
                return data  # _architecture_file names the problem
            if isinstance(content, dict) and not _not_a_config(content):
                return {**data, "architecture": content}
        return data

    @field_validator("architecture_file")
    @classmethod
    def _architecture_file(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return value
        content = _architecture_json(value, info)
        wrong = _not_a_config(content)
        if wrong:
            raise _invalid(
                f"is {shown(value)}, which {wrong}, not the model's config.json: give the path of its config.json, a "
                "JSON object with hidden_size, num_hidden_layers, ... from the model's Hub repository (or let "
                "python -m components.model ORG/NAME --write STACK write its architecture)"
            )
        return value

    @field_validator("model_revision", mode="before")
    @classmethod
    def _revision(cls, value: Any, info: ValidationInfo) -> Any:
        """A revision is a branch, a tag or a commit; its Hub page's address is taken where it names this model."""
        if not isinstance(value, str):
            return value
        try:
            return read_revision(value, info.data.get("model"))
        except ValueError as e:
            raise _invalid(f"is {shown(value)}, {e}") from None

    @field_validator("gpus")
    @classmethod
    def _unique_gpus(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value:
            raise _invalid("must list at least one host GPU index")
        if len(set(value)) != len(value):
            raise _invalid(f"lists a GPU more than once: {list(value)}")
        return value

    @property
    def shm_size_mb(self) -> int:
        return size_bytes(self.shm_size) >> 20

    @property
    def volume_name(self) -> str:
        # In a stack, cache_volume is filled from the server's name (StackSettings._defaults_from_names), never
        # from the container's: a rename would change it, and after a destroy (which forgets the name Pulumi kept
        # under ignore_changes) the next `up` would start an empty cache beside the old one.
        return self.cache_volume or f"{self.container_name}-hf-cache"

    @property
    def name_served(self) -> str:
        return self.served_model_name or self.model


# llama.cpp's KV cache types (common/arg.cpp kv_cache_types at the commit llamacpp_memory.py cites).
CacheType = Literal["f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "iq4_nl", "q5_0", "q5_1"]
# A GGUF file in the repository (the first split, `...-00001-of-0000N.gguf`) or a quantization (Q4_K_M).
GgufFile = Annotated[StrictStr, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._/-]*$")]


class LlamacppServerSettings(_Model):
    """One llama.cpp llama-server serving a GGUF model (`engine: llamacpp` in `servers.<name>`): every sizing
    argument is a key here, and its command sets each explicitly (components/planning/engines/llamacpp.py)."""

    engine: Literal["llamacpp"]
    host: HostRef | None = None
    image: Image
    model: HubId  # the Hub repository holding the GGUF files
    # The commit the download fetches, 40 hex digits: the facts block below was read at it.
    model_revision: Annotated[StrictStr, Field(pattern=r"^[0-9a-f]{40}$")]
    file: GgufFile  # a .gguf path in the repository (a split model's first file) or a quantization: Q4_K_M
    # The GGUF's facts (metadata and every tensor's type and shape): python -m components.model REPO --gguf FILE
    # --write STACK --server NAME writes it; the plan then needs no network (components/planning/gguf.py).
    gguf: dict[StrictStr, Any] | None = None
    served_model_name: Annotated[StrictStr, AfterValidator(_not_a_secret)] | None = None
    gpus: tuple[NonNegative, ...]
    ctx_size: Annotated[StrictInt, Field(ge=256, le=10_485_760)]  # -c: all slots' tokens together
    parallel: Annotated[StrictInt, Field(ge=1, le=256)] = 1  # -np: the slots
    kv_unified: StrictBool = False  # -kvu: the slots share one KV pool, else each has ctx_size / parallel
    cache_type_k: CacheType = "f16"  # -ctk
    cache_type_v: CacheType = "f16"  # -ctv
    flash_attn: StrictBool = True  # -fa on | off
    n_gpu_layers: Annotated[StrictInt, Field(ge=-1)] = -1  # -ngl; -1: all
    split_mode: Literal["layer", "none"] = "layer"  # -sm
    main_gpu: NonNegative = 0  # -mg: with split_mode none, the index among `gpus`
    tensor_split: tuple[Annotated[float, Field(gt=0)], ...] | None = None  # -ts: one share per GPU
    n_cpu_moe: NonNegative = 0  # --n-cpu-moe: the first N layers' experts stay in host memory
    override_tensor: tuple[Annotated[StrictStr, Field(min_length=1)], ...] = ()  # -ot PATTERN=CPU: kept on the host
    jinja: StrictBool = True  # --jinja: the GGUF's own chat template
    # --chat-template NAME: one of llama.cpp's built-in templates instead of the GGUF's
    chat_template: Annotated[StrictStr, Field(pattern=r"^[a-z0-9][a-z0-9._-]*$")] | None = None
    cache_ram: Annotated[StrictInt, Field(ge=-1)] = 8192  # --cache-ram MiB: the prompt cache in host memory
    batch_size: Annotated[StrictInt, Field(ge=1, le=65536)] = 2048  # -b
    ubatch_size: Annotated[StrictInt, Field(ge=1, le=65536)] = 512  # -ub
    port: Port = 8080
    container_name: DockerName | None = None  # the server's name
    cache_volume: VolumeName | None = None
    startup_timeout: StartupTimeout = 1800
    download_timeout: Annotated[StrictInt, Field(ge=300, le=86400)] = 7200
    download: DownloadSettings = DownloadSettings()
    health_interval: HealthInterval = 15
    environment: Environment
    # The request the plan's speed bands are computed for (prompt and output tokens).
    workload: WorkloadSettings = WorkloadSettings()

    @field_validator("gpus")
    @classmethod
    def _unique_gpus(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        return ServerSettings._unique_gpus(value)

    @field_validator("tensor_split")
    @classmethod
    def _one_share_per_gpu(cls, value: tuple[float, ...] | None, info: ValidationInfo) -> tuple[float, ...] | None:
        gpus = info.data.get("gpus")
        if value is not None and gpus is not None and len(value) != len(gpus):
            # llama.cpp reads one share per device (common/arg.cpp --tensor-split)
            raise _invalid(
                f"has {len(value)} shares for the server's {len(gpus)} GPUs: give one share per GPU, or leave it "
                "out to split by the GPUs' memory"
            )
        return value

    @field_validator("main_gpu")
    @classmethod
    def _among_gpus(cls, value: int, info: ValidationInfo) -> int:
        gpus = info.data.get("gpus")
        if gpus is not None and value >= len(gpus):
            raise _invalid(f"is {value}, not an index among the server's {len(gpus)} GPUs (0 to {len(gpus) - 1})")
        return value

    @field_validator("ubatch_size")
    @classmethod
    def _within_batch(cls, value: int, info: ValidationInfo) -> int:
        batch = info.data.get("batch_size")
        if batch is not None and value > batch:
            raise _invalid(f"is {value}, larger than batch_size {batch}: a micro-batch is part of a batch")
        return value

    @property
    def volume_name(self) -> str:
        return self.cache_volume or f"{self.container_name}-hf-cache"

    @property
    def name_served(self) -> str:
        return self.served_model_name or self.model


# The embeddings cache's name unless `cache_volume` says otherwise: the default container's, fixed.
EMBEDDINGS_CACHE = "infinity-embeddings-cache"


class EmbeddingsSettings(_Model):
    host: HostRef | None = None
    image: Image
    model: HubId
    device: Literal["cpu"] = "cpu"
    engine: Literal["torch", "optimum"] = "torch"
    batch_size: Annotated[StrictInt, Field(ge=1, le=4096)] | None = None
    port: Port = 7997
    container_name: DockerName = "infinity-embeddings"
    cache_volume: VolumeName | None = None
    startup_timeout: StartupTimeout = 1200
    health_interval: HealthInterval = 15
    environment: Environment

    @property
    def volume_name(self) -> str:
        # Not from container_name: a rename would start an empty cache after a destroy (see volume_name above).
        return self.cache_volume or EMBEDDINGS_CACHE


class GatewaySettings(_Model):
    """The LiteLLM proxy: one OpenAI endpoint and one key in front of every server of the stack."""

    host: HostRef | None = None
    image: Image
    port: Port = 4000
    container_name: DockerName = "litellm-gateway"
    startup_timeout: StartupTimeout = 300
    health_interval: HealthInterval = 15
    environment: Environment
    # LiteLLM's router: how replicas of one model share requests and how a failed one is skipped.
    routing_strategy: Literal["simple-shuffle", "least-busy", "latency-based-routing", "usage-based-routing"] = (
        "simple-shuffle"
    )
    num_retries: Annotated[StrictInt, Field(ge=0, le=10)] = 2
    allowed_fails: Annotated[StrictInt, Field(ge=0, le=100)] = 0
    cooldown_time: Annotated[StrictInt, Field(ge=1, le=3600)] = 30
    request_timeout: Annotated[StrictInt, Field(ge=10, le=7200)] = 600


Retention = Annotated[StrictStr, Field(pattern=r"^[0-9]+(h|d|w|y)$")]


def _retention(value: Any) -> Any:
    text = str(value).strip() if isinstance(value, int | str) and not isinstance(value, bool) else ""
    if re.fullmatch(r"0+[a-z]*", text):
        # cmd/prometheus/main.go L621-627 at v2.55.1: a zero retention.time is taken as unset, and with no
        # size limit the default of 15d applies.
        raise _invalid(
            f"is {shown(value)}: Prometheus takes a zero retention as unset and keeps its default of 15d, not nothing "
            "and not forever: give the time to keep, e.g. 15d or 30d"
        )
    return value


class AlertmanagerSettings(_Model):
    """Where alerts go. The webhook URL is a nested secret (it carries a token):
    `pulumi config set --secret --path 'rocm-inference:monitoring.alertmanager.webhook_url' https://...`."""

    image: Image = "quay.io/prometheus/alertmanager:v0.28.1"
    port: Port = 9093
    repeat_interval: Retention = "4h"


class MonitoringSettings(_Model):
    """Prometheus, Grafana and node-exporter: metrics, dashboards and alerts for the whole stack."""

    host: HostRef | None = None  # where Prometheus, Grafana and Alertmanager run
    prometheus_image: Image = "quay.io/prometheus/prometheus:v2.55.1"  # 2.x, the major version promtool tests
    grafana_image: Image = "grafana/grafana:12.4.0"
    node_exporter_image: Image = "quay.io/prometheus/node-exporter:v1.9.1"
    prometheus_port: Port = 9090
    grafana_port: Port = 3000
    node_exporter_port: Port = 9100
    scrape_interval: Annotated[StrictInt, Field(ge=5, le=300)] = 15
    # Between two healthchecks of the monitoring containers (node-exporter, Prometheus, Grafana, Alertmanager).
    health_interval: HealthInterval = 15
    retention: Annotated[Retention, BeforeValidator(_retention)] = "30d"
    alertmanager: AlertmanagerSettings | None = None


def _email(value: str) -> str:
    """Open WebUI's own rule for an account's email (open-webui 0.12.4 utils/misc.py L888-892,
    validate_email_format), and lower case, as it stores them (utils/auth.py L648)."""
    if re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+|[^@\s]+@localhost", value) is None:
        raise _invalid(
            f"is {shown(value)}, not an email address Open WebUI accepts: name@domain.tld, or name@localhost"
        )
    if value != value.lower():
        raise _invalid(f"is {shown(value)}: Open WebUI keeps emails in lower case; write {shown(value.lower())}")
    return value


Email = Annotated[StrictStr, AfterValidator(_email)]


class ChatUiSettings(_Model):
    """Open WebUI: the chat and document (RAG) page in front of the stack's endpoint and embeddings.

    The first admin account is `admin_email` with the secret rocm-inference:chat_ui_admin_password
    (generated when unset, and exported as a secret output); Open WebUI creates it only while it has no
    user, so a later password change reaches nothing (change it on the page instead)."""

    host: HostRef | None = None
    image: Image = "ghcr.io/open-webui/open-webui:v0.12.4"
    # The image listens on 8080 (big-chat's embeddings publish there); 3000 is Grafana's.
    port: Port = 3080
    container_name: DockerName = "open-webui"
    # Users, chats, uploaded documents and their vectors: kept across upgrades and replacements.
    data_volume: VolumeName = "open-webui-data"
    # Accounts: off only for a page on loopback (Open WebUI's single-user mode, WEBUI_AUTH=false).
    login: StrictBool = True
    admin_email: Email = "admin@localhost"
    admin_name: Annotated[StrictStr, Field(min_length=1, max_length=100)] = "Admin"
    # The embedding model's task prefixes, when the catalog of components/planning/chat_ui.py has none.
    query_prefix: StrictStr | None = None
    document_prefix: StrictStr | None = None
    # Its first start creates the database (migrations): about a minute on a small CPU.
    startup_timeout: StartupTimeout = 600
    health_interval: HealthInterval = 15
    environment: Environment


# The single-host form's names for its one host and one server, in the fleet underneath.
SINGLE_HOST = "host"
SINGLE_SERVER = "vllm"
# The optional services, each on one host of the stack.
SECTIONS: tuple[str, ...] = ("embeddings", "gateway", "monitoring", "chat_ui")
RESERVED_NAMES = frozenset(SECTIONS)


class StackSettings(_Model):
    """Everything a stack deploys, in the fleet form (the single-host form is its shorthand).

    `secrets` names the secret keys that are set, nested ones by path (`servers.chat-a.api_key`);
    their values stay Outputs. `single` says which form the file is written in, for its key names.
    """

    hosts: dict[Name, HostSettings]
    servers: dict[Name, ServerSettings]
    # The servers whose `engine` is llamacpp, by name: the stack file writes them under `servers` too (moved
    # here on reading; errors name them `servers.NAME...`).
    llamacpp_servers: dict[Name, LlamacppServerSettings] = {}
    embeddings: EmbeddingsSettings | None = None
    gateway: GatewaySettings | None = None
    monitoring: MonitoringSettings | None = None
    chat_ui: ChatUiSettings | None = None
    secrets: frozenset[str] = frozenset()
    single: bool = False

    @model_validator(mode="before")
    @classmethod
    def _defaults_from_names(cls, data: Any) -> Any:
        """A server's container is named after it; with one host, everything runs on it."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        hosts = data.get("hosts")
        only = next(iter(hosts)) if isinstance(hosts, dict) and len(hosts) == 1 else None
        servers = data.get("servers")
        if isinstance(servers, dict):
            filled = {}
            for name, server in servers.items():
                if isinstance(server, dict):
                    server = {
                        "container_name": name,
                        # the cache is named after the server, which survives a container rename and a destroy
                        "cache_volume": f"{name}-hf-cache",
                        **({"host": only} if only else {}),
                        **server,
                    }
                filled[name] = server
            data["servers"] = {n: v for n, v in filled.items() if not _llamacpp(v)}
            data["llamacpp_servers"] = {n: v for n, v in filled.items() if _llamacpp(v)}
        for key in SECTIONS:
            if only and isinstance(data.get(key), dict) and "host" not in data[key]:
                data[key] = {"host": only, **data[key]}
        return data

    def has_secret(self, key: str) -> bool:
        return key in self.secrets

    def key(self, fleet_key: str) -> str:
        """A key as the stack file writes it: `servers.vllm.gpus` is `vllm.gpus` in the single-host form."""
        if not self.single:
            return fleet_key
        return written_key(fleet_key)

    def on_host(self, host: str) -> dict[str, ServerSettings]:
        return {name: s for name, s in self.servers.items() if s.host == host}

    @property
    def every_server(self) -> dict[str, ServerSettings | LlamacppServerSettings]:
        """Every server, whichever engine serves it: vLLM's first."""
        return {**self.servers, **self.llamacpp_servers}


def _llamacpp(server: Any) -> bool:
    return isinstance(server, dict) and server.get("engine") == "llamacpp"


def written_key(fleet_key: str) -> str:
    """The single-host form's key for a fleet key (`hosts.host.gpus` -> `host.gpus`)."""
    for prefix, short in ((f"hosts.{SINGLE_HOST}", SINGLE_HOST), (f"servers.{SINGLE_SERVER}", SINGLE_SERVER)):
        if fleet_key == prefix or fleet_key.startswith((prefix + ".", prefix + "[")):
            return short + fleet_key[len(prefix) :]
    return fleet_key


# Keys whose values must be set with `pulumi config set --secret`; they are read with
# `get_secret` and stay Outputs end to end, so they are not part of the models above.
SECRET_KEYS: tuple[str, ...] = (
    "hf_token",
    "vllm_api_key",
    "embeddings_api_key",
    "gateway_api_key",
    "grafana_admin_password",
    "chat_ui_admin_password",
    "ssh_private_key",
    # The model downloads' proxy with its login (http://USER:PASSWORD@HOST:PORT), on their stdin.
    "download_proxy",
)
# Nested secrets: a server's own backend key (`pulumi config set --secret --path 'rocm-inference:servers.NAME.api_key'`).
NESTED_SECRET_FIELDS: tuple[str, ...] = ("api_key",)
SINGLE_KEYS: tuple[str, ...] = ("host", "vllm")
FLEET_KEYS: tuple[str, ...] = ("hosts", "servers")
CONFIG_KEYS: tuple[str, ...] = (*SINGLE_KEYS, *FLEET_KEYS, *SECTIONS, *SECRET_KEYS)
