"""The catalog (components/planning/catalog.yaml) as frozen models: GPUs, vLLM images, model architectures.

Pure data and lookups, free of Pulumi; nothing is fetched from the network.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, model_validator

CATALOG_FILE = Path(__file__).with_name("catalog.yaml")

Dtype = Literal["float16", "bfloat16", "float32"]
DTYPE_BYTES: dict[str, int] = {"float16": 2, "bfloat16": 2, "float32": 4}  # bytes an element of each
Positive = Annotated[StrictInt, Field(ge=1)]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class _ConfigJson(BaseModel):
    """A part of a Hugging Face config.json: the keys the planner reads are validated, the rest ignored."""

    model_config = ConfigDict(frozen=True, extra="ignore")


class QuantizationConfig(_ConfigJson):
    """config.json's `quantization_config`, the keys that decide memory and tensor-parallel rules.

    compressed-tensors keeps its bits and group size under `config_groups.<group>.weights`
    (`num_bits`, `group_size`); they are read from there when the top-level keys are absent.
    """

    quant_method: StrictStr
    bits: Annotated[StrictInt, Field(ge=1, le=16)] = 4
    group_size: Annotated[StrictInt, Field(ge=-1)] = 128
    desc_act: StrictBool = False
    # GPTQ `sym: true` checkpoints carry no zero points in vLLM's MoE path (moe_wna16.py: has_zp).
    sym: StrictBool | None = None
    zero_point: StrictBool | None = None
    # compressed-tensors: its number formats, by group (`weights` and `input_activations`: `num_bits`, `type`)
    config_groups: dict[StrictStr, Any] | None = None

    @model_validator(mode="before")
    @classmethod
    def _compressed_tensors(cls, data: Any) -> Any:
        if isinstance(data, dict) and "config_groups" in data and "bits" not in data:
            for group in (data.get("config_groups") or {}).values():
                weights = (group or {}).get("weights") or {}
                if "num_bits" in weights:
                    data = {**data, "bits": weights["num_bits"]}
                    if isinstance(weights.get("group_size"), int):
                        data["group_size"] = weights["group_size"]
                    break
        return data

    def _formats(self) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """Each compressed-tensors group's (weights, input_activations) arguments, {} where absent."""
        out = []
        for group in (self.config_groups or {}).values():
            if isinstance(group, dict):
                weights, acts = group.get("weights"), group.get("input_activations")
                out.append((weights if isinstance(weights, dict) else {}, acts if isinstance(acts, dict) else {}))
        return out

    @property
    def scheme(self) -> str:
        """The number format the kernels run: `quant_method`, except for compressed-tensors, a container of many
        formats, whose own is in its groups (compressed-tensors quantization/quant_args.py, QuantizationArgs:
        `num_bits`, `type` int or float): float 8-bit weights are FP8, the same kernels as quant_method fp8
        (vLLM compressed_tensors.py _is_fp8_w8a8 / _is_fp8_w8a16); integer weights with integer activations are
        W8A8 int8; integer weights alone (W4A16, W8A16) the WNA16 kernels the name compressed-tensors stands for."""
        if self.quant_method != "compressed-tensors":
            return self.quant_method
        for weights, acts in self._formats():
            bits, kind = weights.get("num_bits"), weights.get("type", "int")
            if kind == "float":
                return "fp8" if bits == 8 else f"fp{bits}"
            if acts:
                return f"w{bits}a{acts.get('num_bits')}-{acts.get('type', 'int')}"
        return self.quant_method

    @property
    def scheme_text(self) -> str:
        """The scheme as a message names it: `fp8 (compressed-tensors, config_groups weights: float, 8 bits)`."""
        formats = self._formats()
        if self.scheme == self.quant_method or not formats:
            return self.quant_method
        weights, acts = formats[0]
        shown = f"weights: {weights.get('type', 'int')}, {weights.get('num_bits')} bits"
        if acts:
            shown += f"; input_activations: {acts.get('type', 'int')}, {acts.get('num_bits')} bits"
        return f"{self.scheme} (compressed-tensors, config_groups {shown})"


class VisionConfig(_ConfigJson):
    """config.json's `vision_config` (Qwen2/2.5/3-VL, SigLIP as in Gemma 3, and like encoders)."""

    model_type: StrictStr | None = None
    num_hidden_layers: Positive = Field(validation_alias=AliasChoices("depth", "num_hidden_layers"))
    hidden_size: Positive = Field(validation_alias=AliasChoices("hidden_size", "embed_dim"))
    intermediate_size: Positive
    num_attention_heads: Positive = Field(validation_alias=AliasChoices("num_heads", "num_attention_heads"))
    patch_size: Positive = 14
    temporal_patch_size: Positive = 1
    spatial_merge_size: Positive = 1
    in_channels: Positive = Field(3, validation_alias=AliasChoices("in_chans", "in_channels"))
    out_hidden_size: Positive | None = None
    image_size: Positive | None = None
    hidden_act: StrictStr | None = None
    # Qwen3-VL: blocks whose features also go to the language model, each through its own merger.
    deepstack_visual_indexes: tuple[Annotated[StrictInt, Field(ge=0)], ...] = ()


# config.json leaves out what the transformers config class defaults: these are those defaults
# (transformers Gemma2Config / Gemma3TextConfig: tie_word_embeddings=True, sliding_window_pattern=6).
_TIED_BY_DEFAULT = frozenset({"gemma", "gemma2", "gemma3", "gemma3_text"})
_SLIDING_PATTERN_DEFAULT = {"gemma3": 6, "gemma3_text": 6, "gemma2": 2}


class Architecture(_ConfigJson):
    """A model's Hugging Face config.json, as it is: the keys the planner reads are validated, others ignored.

    Nested `text_config` (Gemma 3, Llama 4, Qwen-VL) is read as the text model's keys; `vision_config`
    describes the vision encoder. Experts go by any of their names (`num_experts`, `num_local_experts`,
    `n_routed_experts`).
    """

    model_type: StrictStr | None = None
    architectures: tuple[StrictStr, ...] = ()
    num_hidden_layers: Positive
    hidden_size: Positive
    num_attention_heads: Positive
    num_key_value_heads: Positive | None = None
    head_dim: Positive | None = None
    intermediate_size: Positive | None = None
    vocab_size: Positive
    max_position_embeddings: Positive
    tie_word_embeddings: StrictBool | None = None
    torch_dtype: Dtype = Field("float16", validation_alias=AliasChoices("torch_dtype", "dtype"))
    quantization_config: QuantizationConfig | None = None
    # MLX's own quantization block (mlx-lm writes {group_size, bits} here): kept to tell such a repository
    # apart (components/planning/formats.py), never read as a checkpoint's quantization.
    quantization: dict[StrictStr, Any] | None = None
    # Mixture of experts (vLLM FusedMoE; qwen2_moe.py/qwen3_moe.py/mixtral.py/deepseek_v2.py).
    num_experts: Annotated[StrictInt, Field(ge=0)] | None = Field(
        None, validation_alias=AliasChoices("num_experts", "num_local_experts", "n_routed_experts")
    )
    num_experts_per_tok: Positive | None = None
    moe_intermediate_size: Positive | None = None
    shared_expert_intermediate_size: Annotated[StrictInt, Field(ge=0)] | None = None
    n_shared_experts: Annotated[StrictInt, Field(ge=0)] | None = None
    decoder_sparse_step: Positive = 1
    mlp_only_layers: tuple[StrictInt, ...] = ()
    first_k_dense_replace: Annotated[StrictInt, Field(ge=0)] = 0
    moe_layer_freq: Positive = 1
    # Sliding window and hybrid attention.
    sliding_window: Positive | None = None
    use_sliding_window: StrictBool | None = None
    sliding_window_pattern: Positive | None = None
    layer_types: tuple[StrictStr, ...] | None = None
    # Multi-head latent attention (DeepSeek V2/V3): not modelled, recognised to say so.
    kv_lora_rank: Positive | None = None
    vision_config: VisionConfig | None = None
    mm_tokens_per_image: Positive | None = None
    # Gated DeltaNet linear attention (Qwen3-Next, Qwen3.5): layer_types "linear_attention", or every layer but
    # each full_attention_interval-th where layer_types is absent; the recurrent state's shape and dtype.
    linear_num_key_heads: Positive | None = None
    linear_num_value_heads: Positive | None = None
    linear_key_head_dim: Positive | None = None
    linear_value_head_dim: Positive | None = None
    linear_conv_kernel_dim: Positive | None = None
    full_attention_interval: Positive | None = None
    mamba_ssm_dtype: Dtype | None = None
    # Qwen3-Next/Qwen3.5 full attention: q_proj carries a gate as wide as the queries.
    attn_output_gate: StrictBool = False
    # Multi-token-prediction (MTP) draft layers, under the key each family's config.json uses for them.
    mtp_num_hidden_layers: Annotated[StrictInt, Field(ge=0)] | None = None
    num_nextn_predict_layers: Annotated[StrictInt, Field(ge=0)] | None = None

    @model_validator(mode="before")
    @classmethod
    def _text_config(cls, data: Any) -> Any:
        # Multimodal configs keep the language model's keys under text_config; the top level keeps
        # what describes the whole checkpoint (quantization, vision tower, architectures).
        if isinstance(data, dict) and isinstance(data.get("text_config"), dict):
            text = data["text_config"]
            merged = {k: v for k, v in data.items() if k != "text_config"}
            for key, value in text.items():
                if key == "model_type" and "model_type" in merged:
                    continue
                merged[key] = value
            return merged
        return data

    @property
    def mtp_layers(self) -> int:
        """The MTP draft layers vLLM's `mtp` method runs for this model (its n_predict), 0 where it has none:
        vllm/config/speculative.py at the image line's e12fe369 reads mtp_num_hidden_layers for qwen3_5 and
        qwen3_5_moe (lines 469-480), num_nextn_predict_layers for the DeepSeek-V3 family (312-321), Qwen3-Next
        (447-452), GLM-4 MoE (390-392, by its architecture Glm4MoeForCausalLM) and ERNIE 4.5 MoE (422-427)."""
        kind = self.model_type or ""
        if kind in ("qwen3_5", "qwen3_5_moe"):
            return self.mtp_num_hidden_layers or 0
        nextn = kind in ("deepseek_v3", "deepseek_v32", "glm_moe_dsa", "qwen3_next", "ernie4_5_moe")
        if nextn or "Glm4MoeForCausalLM" in self.architectures[:1]:
            return self.num_nextn_predict_layers or 0
        return 0

    @property
    def kv_heads(self) -> int:
        return self.num_key_value_heads or self.num_attention_heads

    @property
    def head_size(self) -> int:
        # config.json's head_dim when present: it is not always hidden_size / heads.
        return self.head_dim or self.hidden_size // self.num_attention_heads

    @property
    def tied_embeddings(self) -> bool:
        if self.tie_word_embeddings is not None:
            return self.tie_word_embeddings
        return (self.model_type or "") in _TIED_BY_DEFAULT

    @property
    def is_moe(self) -> bool:
        return bool(self.num_experts)

    @property
    def expert_intermediate_size(self) -> int:
        """The FFN width of one expert: `moe_intermediate_size`, or Mixtral's `intermediate_size`."""
        size = self.moe_intermediate_size or self.intermediate_size
        if size is None:
            raise ValueError("a MoE config.json needs moe_intermediate_size or intermediate_size")
        return size

    def is_moe_layer(self, index: int) -> bool:
        """Whether layer `index` has experts, by the model's own rule in vLLM."""
        if not self.is_moe:
            return False
        if self.first_k_dense_replace:  # deepseek_v2.py DeepseekV2DecoderLayer
            return index >= self.first_k_dense_replace and index % self.moe_layer_freq == 0
        # qwen2_moe.py / qwen3_moe.py DecoderLayer: mlp_only_layers and decoder_sparse_step
        return index not in self.mlp_only_layers and (index + 1) % self.decoder_sparse_step == 0

    @property
    def dense_mlp_layers(self) -> int:
        if not self.is_moe:
            return self.num_hidden_layers
        return sum(1 for i in range(self.num_hidden_layers) if not self.is_moe_layer(i))

    @property
    def shared_expert_size(self) -> int:
        """Width of the always-on shared expert MLP (Qwen2-MoE), or DeepSeek's n_shared_experts x expert."""
        if self.shared_expert_intermediate_size:
            return self.shared_expert_intermediate_size
        if self.n_shared_experts:
            return self.n_shared_experts * self.expert_intermediate_size
        return 0

    def layer_windows(self) -> tuple[int | None, ...]:
        """The sliding window of each layer, None for full attention, as vLLM's models set it."""
        n = self.num_hidden_layers
        window = self.sliding_window
        if window is None or self.use_sliding_window is False:
            return (None,) * n
        if self.layer_types is not None:
            # gemma3.py / gemma2.py / llama.py / gpt_oss: config.layer_types[i] == "sliding_attention"
            return tuple(window if t == "sliding_attention" else None for t in self.layer_types[:n])
        pattern = self.sliding_window_pattern or _SLIDING_PATTERN_DEFAULT.get(self.model_type or "")
        if pattern:
            # transformers' layer_types default: sliding unless (i + 1) % pattern == 0
            return tuple(None if (i + 1) % pattern == 0 else window for i in range(n))
        if (self.model_type or "").startswith("gpt_oss"):
            return tuple(window if i % 2 == 0 else None for i in range(n))  # gpt_oss.py: layer_idx % 2 == 0
        # Mistral-style: every layer slides (vLLM's cache_config.sliding_window for all layers).
        return (window,) * n

    def linear_attention_layers(self) -> tuple[bool, ...]:
        """Per layer: a Gated DeltaNet (linear attention) layer. Nothing where the config has no linear heads."""
        n = self.num_hidden_layers
        if self.linear_num_value_heads is None:
            return (False,) * n
        if self.layer_types is not None:
            return tuple(t == "linear_attention" for t in self.layer_types[:n])
        # transformers' Qwen3-Next/Qwen3.5 default: full attention at every full_attention_interval-th layer.
        interval = self.full_attention_interval or 4
        return tuple((i + 1) % interval != 0 for i in range(n))

    @property
    def is_linear_hybrid(self) -> bool:
        return any(self.linear_attention_layers())

    @property
    def is_hybrid(self) -> bool:
        return len(set(self.layer_windows())) > 1

    @property
    def has_sliding_window(self) -> bool:
        return any(w is not None for w in self.layer_windows())

    @property
    def architecture_class(self) -> str:
        """dense, moe, sliding-window or mla: the class the memory model treats it as."""
        if self.kv_lora_rank is not None:
            return "mla"
        if self.is_moe:
            return "moe"
        if self.has_sliding_window:
            return "sliding-window"
        return "dense"

    @model_validator(mode="after")
    def _needs(self) -> Architecture:
        if not self.is_moe and self.intermediate_size is None and self.kv_lora_rank is None:
            raise ValueError("intermediate_size is required (the MLP width of a dense model)")
        return self


class Gpu(_Frozen):
    product: StrictStr
    gfx: StrictStr
    memory_gib: Annotated[float, Field(gt=0)]
    dtypes: tuple[Dtype, ...]
    fp16_tflops: Annotated[float, Field(gt=0)]
    hbm_gbps: Annotated[float, Field(gt=0)]


Share = Annotated[float, Field(gt=0, le=1)]


class DecodeSpeed(_Frozen):
    """A decode step's costs on one GPU family (components/planning/performance.py): shares of the
    board's HBM bandwidth reached reading each kind of bytes, and latencies in seconds."""

    weights: Share  # the dense layers and the LM head
    experts: Share  # a MoE layer's routed experts (the fused-MoE kernels)
    kv: Share  # the running sequences' KV cache (paged attention)
    kv_serial: Annotated[float, Field(ge=0)]  # sequences' worth of KV time a step pays for its walk along one
    allreduce_s: Annotated[float, Field(ge=0)]  # one all-reduce between tensor-parallel ranks
    sequence_s: Annotated[float, Field(ge=0)]  # per running sequence and step, besides its matmuls
    dequant_ops: Annotated[float, Field(ge=0)] = 0.0  # FP16 operations to unpack one quantized weight
    moe_layer_s: Annotated[float, Field(ge=0)] = 0.0  # one MoE layer's routing and fused-kernel launches, per step


class DecodeBand(_Frozen):
    """The spread of measured over estimated decode rates (natural log, one standard deviation): what
    any estimate carries (`sigma`), what a single request on more than one GPU carries besides (`single_sigma`:
    the boxes measured disagree most there), and per unit share of the step the experts' rate takes
    (`experts_sigma`)."""

    sigma: Annotated[float, Field(ge=0)]
    single_sigma: Annotated[float, Field(ge=0)]
    experts_sigma: Annotated[float, Field(ge=0)]
    coverage: Share  # the share of measurements the band is fitted to hold


class PrefillSpeed(_Frozen):
    """A prefill's costs (components/planning/prefill.py): shares of the board's peak FP16 rate, and the
    band's ends as factors on the estimate."""

    matmul: Share
    attention: Share
    fast_end: Annotated[float, Field(ge=1)]
    slow_end: Annotated[float, Field(ge=1)]


class Speed(_Frozen):
    """Serving speed on one GPU family, fitted on published measurements (`source` says which)."""

    source: StrictStr
    decode: DecodeSpeed
    decode_band: DecodeBand
    prefill: PrefillSpeed


class Parsers(_Frozen):
    """The tool-call and reasoning parsers an image's recipes serve one model family with (`vllm serve
    --enable-auto-tool-choice --tool-call-parser TOOL --reasoning-parser REASONING`), by config.json model_type."""

    model_types: tuple[StrictStr, ...] = Field(min_length=1)
    tool_call: StrictStr
    reasoning: StrictStr | None = None
    source: StrictStr


class Image(_Frozen):
    vllm: StrictStr
    engine: StrictStr
    gfx: tuple[StrictStr, ...]
    quantizations: tuple[StrictStr, ...]
    dequantizes_for_large_batches: StrictBool = False
    # The software the image carries and the host it needs (None: not recorded for that image).
    rocm: StrictStr | None = None
    torch: StrictStr | None = None
    host_driver: StrictStr | None = None
    # The model runner its recipes pin (vLLM >= 0.2x picks V2 by default for some models).
    model_runner: Literal["V1", "V2"] | None = None
    # Environment its recipes require in every server; a stack's own `environment` wins over it.
    environment: dict[StrictStr, StrictStr] = Field(default_factory=dict)
    # The dtype its recipes pass (`--dtype`) where the stack leaves `auto`.
    recipe_dtype: Dtype | None = None
    # Trimmed CUDA-graph capture sizes at tensor parallel > 1: a ladder of max_num_seqs steps (of width
    # k+1 with k speculative tokens), passed as --compilation-config cudagraph_capture_sizes.
    trimmed_capture_at_tp: Positive | None = None
    # The speculative-decoding methods (`--speculative-config` method) its recipes run on gfx906.
    speculative: tuple[Literal["mtp", "ngram"], ...] = ()
    # Tool-call and reasoning parsers by model family (its recipes), and where they come from.
    parsers: dict[StrictStr, Parsers] = Field(default_factory=dict)

    def parsers_for(self, model_type: str | None) -> Parsers | None:
        """The parsers its recipes use for a model of this config.json model_type, if any."""
        return next((p for p in self.parsers.values() if model_type in p.model_types), None)


class Tags(_Frozen):
    """The tags of one image repository: the one this project pins, and those that move."""

    pinned: StrictStr | None = None
    moving: tuple[StrictStr, ...]


class CudaImage(_Frozen):
    """An image built for NVIDIA GPUs only: what it is, to name it in the refusal."""

    what: StrictStr


class LlamacppImage(_Frozen):
    """A llama.cpp image for llama-server (components/planning/engines/llamacpp.py); each fact's source is in
    data/llamacpp/images.yaml."""

    gfx: tuple[StrictStr, ...]
    rocm: StrictStr
    host_driver: StrictStr
    # The image's ENTRYPOINT (empty: none), and the words before llama-server's arguments in the command.
    entrypoint: tuple[StrictStr, ...]
    server_prefix: tuple[StrictStr, ...]


class Catalog(_Frozen):
    gpus: dict[StrictStr, Gpu]
    images: dict[StrictStr, Image]
    # llama.cpp's llama-server images, by repository.
    llamacpp_images: dict[StrictStr, LlamacppImage] = Field(default_factory=dict)
    cuda_images: dict[StrictStr, CudaImage] = Field(default_factory=dict)
    tags: dict[StrictStr, Tags] = Field(default_factory=dict)
    # Tags that move in any repository the catalog does not list (see moving_tag).
    moving_words: tuple[StrictStr, ...] = ("latest",)
    models: dict[StrictStr, Architecture]
    # By gfx: the families whose serving speed was measured (components/planning/performance.py).
    speed: dict[StrictStr, Speed] = Field(default_factory=dict)

    def image(self, reference: str) -> Image | None:
        """The catalog entry of an image reference (`repo:tag`, `repo@digest`, with or without a registry)."""
        return self.images.get(parse_reference(reference).repository)

    def llamacpp_image(self, reference: str) -> LlamacppImage | None:
        return self.llamacpp_images.get(parse_reference(reference).repository)

    def cuda_image(self, reference: str) -> CudaImage | None:
        return self.cuda_images.get(parse_reference(reference).repository)

    def image_tags(self, reference: str) -> Tags | None:
        return self.tags.get(parse_reference(reference).repository)

    def pinned_reference(self, reference: str) -> str | None:
        """The reference as written with the catalog's pinned tag in place of its own, or None."""
        tags = self.image_tags(reference)
        if tags is None or not tags.pinned:
            return None
        ref = parse_reference(reference)
        written = reference.strip().partition("@")[0]
        written = written[: len(written) - len(ref.tag) - 1] if ref.tag else written
        return f"{written}:{tags.pinned}"

    def moving_tag(self, reference: str) -> str | None:
        """The tag of a reference that moves under a deployment (`latest` where none is given), or None.

        A digest pins. A repository of the catalog moves on the tags it lists, so that a release tag which
        merely contains such a word (`v1.83.10-stable`, `0.0.77-cpu`) passes; any other repository moves on
        `moving_words`, or on a tag made of them and other words without a digit (`latest-cpu`, `main-latest`).
        """
        ref = parse_reference(reference)
        if ref.digest:
            return None
        tag = ref.tag or "latest"
        known = self.tags.get(ref.repository)
        if known is not None:
            return tag if tag in known.moving or tag == "latest" else None
        if tag in self.moving_words:
            return tag
        words = re.split(r"[-_.]", tag)
        if not any(c.isdigit() for c in tag) and any(w in self.moving_words for w in words):
            return tag
        return None


@dataclass(frozen=True)
class Reference:
    """An image reference as Docker normalises it: `repository` in Docker's familiar form."""

    repository: str  # `nalanzeyu/vllm-gfx906`, `ubuntu`, `ghcr.io/berriai/litellm`
    tag: str | None
    digest: str | None


_DOCKER_HUB = ("docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com")


def parse_reference(reference: str) -> Reference:
    """Split a reference and normalise its name as Docker does (distribution/reference ParseNormalizedNamed):
    a first part without `.` or `:` that is not `localhost` is a Docker Hub path; Docker Hub's names
    (`docker.io`, `index.docker.io`) are dropped, and so is `library/` of its official images."""
    name, _, digest = reference.strip().partition("@")
    last = name.rsplit("/", 1)[-1]
    tag = None
    if ":" in last:
        tag = last.split(":", 1)[1]
        name = name[: len(name) - len(last)] + last.split(":", 1)[0]
    first, slash, rest = name.partition("/")
    if slash and first.lower() in _DOCKER_HUB:
        name = rest
    elif slash and ("." in first or ":" in first or first == "localhost"):
        return Reference(first.lower() + "/" + rest, tag or None, digest or None)  # a host name's case is not
    if name.startswith("library/") and name.count("/") == 1:
        name = name[len("library/") :]  # Docker Hub's official images
    return Reference(name, tag or None, digest or None)


def load_yaml(text: str) -> Any:
    """yaml.safe_load, with libyaml's C loader where PyYAML has it (several times faster)."""
    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def dump_yaml(data: Any, **options: Any) -> str:
    """yaml.safe_dump, with libyaml's C dumper where PyYAML has it (the same text, several times faster)."""
    text: str = yaml.dump(data, Dumper=getattr(yaml, "CSafeDumper", yaml.SafeDumper), **options)
    return text


@cache
def load_catalog(path: Path = CATALOG_FILE) -> Catalog:
    return Catalog.model_validate(load_yaml(path.read_text()))
