"""llama.cpp's llama-server serving a GGUF model (`engine: llamacpp` in `servers.<name>`, LlamacppServerSettings):
its command with every sizing argument explicit (components/planning/llamacpp_memory.py server_arguments), its
container hardened like vLLM's, the one-shot download of only the chosen GGUF files, its memory plan and speed
bands, and the rules that refuse what llama.cpp would refuse or what does not fit.

The images (catalog.yaml `mixa3607/llama.cpp-gfx906`; data/llamacpp/images.yaml): the entrypoint is /app/tools.sh,
which with `--server` execs ./llama-server with the other arguments (mixa3607/ML-gfx906@1bdfa3f8
llama.cpp/build-image.Dockerfile:110, .devops/tools.sh:30), so the command starts with `--server` and the image's
own entrypoint stays; it runs as root with curl, python3 and the llama.cpp requirements (huggingface_hub) installed
(build-image.Dockerfile:16, 103-107), which the health check and the download use.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from components.planning.catalog import Catalog, load_catalog
from components.planning.engines.base import Engine, ServiceContext
from components.planning.engines.hub import hub_download
from components.planning.engines.llamacpp_monitoring import API_KEY_ENV, progress_check
from components.planning.gguf import GgufError, GgufFacts
from components.planning.health import STALL_MIN_S
from components.planning.llamacpp_memory import (
    LlamaCppArgs,
    LlamaCppMemory,
    LlamaCppPlanError,
    MiB,
    largest_context,
    plan,
    server_arguments,
    warnings,
)
from components.planning.llamacpp_speed import ServerSpeed, server_speed
from components.planning.service import Container, health_check
from components.planning.timing import container_timeouts, image_timeouts
from components.settings import HostSettings, Problem, StackSettings
from components.settings.models import LlamacppServerSettings

# llama-server's default port (`--port`, default 8080), set explicitly on its command line.
LLAMACPP_PORT = 8080
# The image runs as root without HF_HOME: huggingface_hub's cache is /root/.cache/huggingface/hub.
CACHE_PATH = "/root/.cache/huggingface"
STOP_GRACE_S = 30
# The download's entrypoint in an image whose own would take the command as its arguments (tools.sh).
DOWNLOAD_ENTRYPOINT = ("timeout",)
# llama.cpp names ROCm devices ROCm0, ROCm1, ... (ggml-cuda's HIP build), in HIP_VISIBLE_DEVICES order.
DEVICE_NAME = "ROCm{}"
# What the HIP runtime and the driver keep of each board for themselves: not measured here, an allowance.
RUNTIME_RESERVE_MIB = 512


def facts_of(s: LlamacppServerSettings, key: str) -> GgufFacts:
    """The GGUF's facts from the stack's block. Raises GgufError naming the key."""
    if s.gguf is None:
        raise GgufError(f"{key}.gguf is required")
    return GgufFacts.from_block(s.gguf, f"{key}.gguf")


def model_path(s: LlamacppServerSettings, facts: GgufFacts) -> str:
    """The first GGUF file in the cache, where the download put it: huggingface_hub's snapshot folder of the
    pinned commit (models--ORG--NAME/snapshots/COMMIT/FILE); llama.cpp finds the other splits beside it."""
    folder = "models--" + s.model.replace("/", "--")
    return f"{CACHE_PATH}/hub/{folder}/snapshots/{s.model_revision}/{facts.files[0]}"


def device_memory(host: HostSettings, catalog: Catalog) -> int:
    """Bytes llama.cpp may use on each of the host's GPUs."""
    gpu = catalog.gpus.get(host.gpu)
    gib = host.gpu_memory_gib or (gpu.memory_gib if gpu is not None else 0.0)
    return max(int(gib * 1024) - RUNTIME_RESERVE_MIB, 0) * MiB


def arguments(s: LlamacppServerSettings, host: HostSettings, catalog: Catalog) -> LlamaCppArgs:
    """The settings as llama-server's sizing arguments."""
    memory = device_memory(host, catalog)
    return LlamaCppArgs(
        n_ctx=s.ctx_size,
        n_parallel=s.parallel,
        kv_unified=s.kv_unified,
        n_gpu_layers=s.n_gpu_layers,
        devices=tuple(DEVICE_NAME.format(i) for i in range(len(s.gpus))),
        tensor_split=s.tensor_split or (),
        device_memory=(memory,) * len(s.gpus),
        split_mode=s.split_mode,
        main_gpu=s.main_gpu,
        cache_type_k=s.cache_type_k.upper(),
        cache_type_v=s.cache_type_v.upper(),
        flash_attn=s.flash_attn,
        n_batch=s.batch_size,
        n_ubatch=s.ubatch_size,
        cpu_overrides=s.override_tensor,
        n_cpu_moe=s.n_cpu_moe,
        cache_ram_mib=s.cache_ram,
    )


def llamacpp_command(
    s: LlamacppServerSettings, facts: GgufFacts, host: HostSettings, catalog: Catalog
) -> tuple[str, ...]:
    """The image's entrypoint's arguments: --server, then llama-server's: every sizing argument, where it listens,
    its metrics, the served name and the chat template. The key comes from LLAMA_API_KEY (the secret)."""
    image = catalog.llamacpp_image(s.image)
    assert image is not None, "check_llamacpp refuses an image the catalog does not have"
    cmd = [*image.server_prefix, *server_arguments(arguments(s, host, catalog), model_path(s, facts))]
    cmd += ["--host", "0.0.0.0", "--port", str(LLAMACPP_PORT), "--metrics", "--offline", "--no-webui"]
    cmd += ["--alias", s.name_served, "--jinja" if s.jinja else "--no-jinja"]
    if s.chat_template is not None:
        cmd += ["--chat-template", s.chat_template]
    return tuple(cmd)


def stall_seconds(s: LlamacppServerSettings, host: HostSettings, catalog: Catalog) -> int:
    """The stall window: a slot's whole context prefilled at the slow end of the prefill band, with a margin
    (one decode call of a long prompt can hold the main loop that long), never below the vLLM check's floor."""
    p = plan_server(s, host, catalog)
    if p.speed is None:
        return STALL_MIN_S
    return max(STALL_MIN_S, math.ceil(1.2 * p.memory.n_ctx_seq / p.speed.prefill_tokens_per_s.low))


def container(ctx: ServiceContext) -> Container:
    s: LlamacppServerSettings = ctx.settings
    assert ctx.gpus is not None, "a llama.cpp server runs on GPUs"
    facts = facts_of(s, ctx.key)
    host = ctx.stack.hosts[s.host or ""]
    image = ctx.catalog.llamacpp_image(s.image)
    assert image is not None, "check_llamacpp refuses an image the catalog does not have"
    return Container(
        image=s.image,
        container_name=s.container_name or ctx.name,
        command=llamacpp_command(s, facts, host, ctx.catalog),
        internal_port=LLAMACPP_PORT,
        external_port=s.port,
        bind=ctx.bind,
        cache_volume=s.volume_name,
        cache_path=CACHE_PATH,
        startup_timeout=s.startup_timeout,
        # /health answers 503 while the model loads (no stall clock runs) and 200 once it serves; a server holding
        # requests without a decode for the stall window is ended (engines/llamacpp_monitoring.py progress_check).
        health=health_check(
            LLAMACPP_PORT,
            s.health_interval,
            s.startup_timeout,
            test=(
                "CMD",
                "python3",
                "-c",
                progress_check(LLAMACPP_PORT, stall_seconds(s, host, ctx.catalog)),
            ),
        ),
        init=True,
        prefetch=hub_download(
            ctx.stack,
            s.model,
            s.model_revision,
            s.download_timeout,
            s.download,
            files=facts.files,
            environment={"HF_HOME": CACHE_PATH},
            entrypoint=DOWNLOAD_ENTRYPOINT if image.entrypoint else (),
        ),
        environment={**s.environment, **ctx.gpus.environment, "HF_HUB_OFFLINE": "1", "DO_NOT_TRACK": "1"},
        # llama-server reads LLAMA_API_KEY itself (common/arg.cpp --api-key): never on the command line; the
        # healthcheck sends it to /metrics from there too.
        secret_environment={API_KEY_ENV: (ctx.api_key,)} if ctx.api_key is not None else {},
        labels={**ctx.labels, "rocm-inference.gpus": ",".join(map(str, ctx.gpus.host_indices))},
        devices=ctx.gpus.device_paths,
        group_adds=ctx.gpus.group_adds,
        stop_grace_seconds=STOP_GRACE_S,
        host=ctx.host,
        image_timeouts=image_timeouts(ctx.pull_timeout),
        container_timeouts=container_timeouts(s.startup_timeout, STOP_GRACE_S),
    )


@dataclass(frozen=True)
class LlamacppPlan:
    """One llama.cpp server's memory plan and speed bands, for the plan's views."""

    host: str
    gpus: tuple[int, ...]
    gpu_name: str
    memory: LlamaCppMemory
    device_memory: int  # bytes each device may use
    speed: ServerSpeed | None

    def lines(self) -> list[str]:
        """The plan in words: per GPU, the host, the context and slots, the speed bands."""
        m = self.memory

        def mib(n: int) -> str:
            return f"{n / MiB:,.0f} MiB"

        out = [f"llama.cpp memory plan ({self.gpu_name}, {mib(self.device_memory)} usable per GPU)"]
        for index, b in zip(self.gpus, m.devices, strict=True):
            verdict = "fits" if b.total <= self.device_memory else "DOES NOT FIT"
            out.append(
                f"  GPU {index} ({b.name}): model {mib(b.model)}, KV {mib(b.kv)}, compute {mib(b.compute)}: "
                f"{mib(b.total)}, {verdict}"
            )
        ram = "no limit" if m.host_cache_ram is None else mib(m.host_cache_ram)
        out.append(
            f"  Host memory: model {mib(m.host.model)} (mapped), KV {mib(m.host.kv)}, compute {mib(m.host.compute)}, "
            f"prompt cache up to {ram}"
        )
        shared = "one pool shared by the slots" if m.n_stream == 1 else f"{m.n_ctx_seq:,} tokens per slot"
        out.append(f"  Context {m.n_ctx:,} tokens, {shared}")
        if self.speed is not None:
            d, p = self.speed.decode_tokens_per_s, self.speed.prefill_tokens_per_s
            out.append(
                f"  Speed (fitted on published gfx906 llama.cpp runs) at one request of {self.speed.prompt_tokens:,} "
                f"in / {self.speed.output_tokens:,} out: decode {d.estimate:.3g} ({d.low:.3g}-{d.high:.3g}) "
                f"tokens/s, prefill {p.estimate:.3g} ({p.low:.3g}-{p.high:.3g}) tokens/s"
                + (f"; {self.speed.caveat}" if self.speed.caveat else "")
            )
        return out

    def capacity_json(self) -> dict[str, object]:
        def mib(n: int) -> int:
            return round(n / MiB)

        out: dict[str, object] = {
            "engine": "llamacpp",
            "devices": [
                {
                    "device": b.name,
                    "model_mib": mib(b.model),
                    "kv_mib": mib(b.kv),
                    "compute_mib": mib(b.compute),
                    "total_mib": mib(b.total),
                    "memory_mib": mib(self.device_memory),
                }
                for b in self.memory.devices
            ],
            "host": {
                "model_mib": mib(self.memory.host.model),
                "kv_mib": mib(self.memory.host.kv),
                "compute_mib": mib(self.memory.host.compute),
                "cache_ram_mib": None if self.memory.host_cache_ram is None else mib(self.memory.host_cache_ram),
            },
            "context": self.memory.n_ctx,
            "context_per_slot": self.memory.n_ctx_seq,
            "slots": self.memory.n_stream if self.memory.n_stream > 1 else None,
        }
        if self.speed is not None:
            out["speed"] = self.speed.as_json()
        return out


def plan_server(s: LlamacppServerSettings, host: HostSettings, catalog: Catalog) -> LlamacppPlan:
    """The memory plan and speed bands of a valid server (check_llamacpp passed)."""
    facts = facts_of(s, "server")
    args = arguments(s, host, catalog)
    gpu = catalog.gpus.get(host.gpu)
    speed = (
        server_speed(facts, args, gpu, s.workload.prompt_tokens, s.workload.output_tokens) if gpu is not None else None
    )
    return LlamacppPlan(s.host or "", s.gpus, host.gpu, plan(facts, args), device_memory(host, catalog), speed)


def plans(s: StackSettings) -> dict[str, LlamacppPlan]:
    catalog = load_catalog()
    return {name: plan_server(srv, s.hosts[srv.host or ""], catalog) for name, srv in s.llamacpp_servers.items()}


def _file_problem(s: LlamacppServerSettings, facts: GgufFacts) -> str | None:
    first = facts.files[0]
    if s.file.endswith(".gguf"):
        return None if s.file == first else f"is {s.file!r}, but the gguf block was read from {first!r}"
    return None if s.file.lower() in first.lower() else f"is {s.file!r}, which the gguf block's file {first!r} is not"


def check_llamacpp(s: StackSettings, name: str, catalog: Catalog) -> tuple[list[Problem], list[Problem]]:
    """What llama.cpp would refuse or only warn about, and what does not fit, for one llama.cpp server: for
    settings.validate, in fleet keys."""
    errors: list[Problem] = []
    warned: list[Problem] = []
    for srv in (s.llamacpp_servers[name],):
        key = f"servers.{name}"
        host = s.hosts[srv.host or ""]
        if catalog.llamacpp_image(srv.image) is None:
            known = ", ".join(sorted(catalog.llamacpp_images))
            errors.append(
                Problem(
                    f"{key}.image",
                    f"is {srv.image!r}, which the catalog has no llama.cpp facts for (its entrypoint, where "
                    f"llama-server is): use one of {known}",
                )
            )
            continue
        if srv.gguf is None:
            errors.append(
                Problem(
                    f"{key}.gguf",
                    "is required: the GGUF's facts, which the plan reads; python -m components.model "
                    f"{srv.model} --gguf {srv.file} --revision {srv.model_revision} --write STACK --server {name} "
                    "writes it",
                )
            )
            continue
        try:
            facts = facts_of(srv, key)
        except GgufError as exc:
            errors.append(Problem(f"{key}.gguf", f"is not a GGUF facts block: {exc}"))
            continue
        wrong = _file_problem(srv, facts)
        if wrong:
            errors.append(Problem(f"{key}.file", wrong + ": write the block again for this file"))
            continue
        if catalog.gpus.get(host.gpu) is None and host.gpu_memory_gib is None:
            errors.append(Problem(f"hosts.{srv.host}.gpu_memory_gib", f"is required for GPU {host.gpu!r}"))
            continue
        args = arguments(srv, host, catalog)
        try:
            memory = plan(facts, args)
        except LlamaCppPlanError as exc:
            field = "cache_type_v" if "V cache" in str(exc) else "split_mode"
            errors.append(Problem(f"{key}.{field}", f"is refused: {exc}"))
            continue
        budget = device_memory(host, catalog)
        over = memory.over([budget] * len(srv.gpus))
        if over:
            fits = largest_context(facts, args, [budget] * len(srv.gpus))
            worst = max(over, key=lambda i: memory.devices[i].total)
            b = memory.devices[worst]
            errors.append(
                Problem(
                    f"{key}.ctx_size",
                    f"is {srv.ctx_size}, which does not fit: GPU {worst} needs {b.total / MiB:.0f} MiB (model "
                    f"{b.model / MiB:.0f}, KV {b.kv / MiB:.0f}, compute {b.compute / MiB:.0f}) of "
                    f"{budget / MiB:.0f} MiB; "
                    + (
                        f"the largest context that fits is {fits}"
                        if fits
                        else "no context fits: keep more on the host (n_cpu_moe, override_tensor), use more GPUs or "
                        "a smaller quantization"
                    ),
                )
            )
        for line in warnings(facts, args):
            field = "cache_ram" if "--cache-ram" in line else "ctx_size"
            warned.append(Problem(f"{key}.{field}", line))
    return errors, warned


def check(s: StackSettings, name: str, catalog: Catalog) -> tuple[list[Problem], list[Problem]]:
    """The engine's rules for one server (the registry's check_stack runs them)."""
    return check_llamacpp(s, name, catalog)


ENGINE = Engine(
    name="llamacpp",
    component_type="rocm-inference:llamacpp:LlamacppServer",
    port=LLAMACPP_PORT,
    path="/v1",
    settings=LlamacppServerSettings,
    container=container,
    label="llama.cpp",
    # LiteLLM's provider for any OpenAI-compatible server; the rest of the model name is the served name.
    litellm_provider="openai",
    scrape_job="llamacpp",  # engines/llamacpp_monitoring.py JOB_LLAMACPP, which its alert rules select
    check=check,
)
