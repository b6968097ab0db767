"""The catalog (components/planning/catalog.yaml) as frozen models: GPUs, vLLM images, model architectures.

Pure data and lookups, free of Pulumi; nothing is fetched from the network.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

CATALOG_FILE = Path(__file__).with_name("catalog.yaml")

Dtype = Literal["float16", "bfloat16", "float32"]
Positive = Annotated[StrictInt, Field(ge=1)]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class QuantizationConfig(_Frozen):
    """config.json's `quantization_config`, the keys that decide memory and tensor-parallel rules."""

    quant_method: Literal["awq", "gptq", "compressed-tensors", "fp8"]
    bits: Annotated[StrictInt, Field(ge=2, le=16)] = 4
    group_size: Annotated[StrictInt, Field(ge=-1)] = 128
    desc_act: StrictBool = False


class Architecture(_Frozen):
    """The facts of a model's Hugging Face config.json, under config.json's own key names."""

    num_hidden_layers: Positive
    hidden_size: Positive
    num_attention_heads: Positive
    num_key_value_heads: Positive | None = None
    head_dim: Positive | None = None
    intermediate_size: Positive
    vocab_size: Positive
    max_position_embeddings: Positive
    tie_word_embeddings: StrictBool = False
    torch_dtype: Dtype = "float16"
    quantization_config: QuantizationConfig | None = None

    @property
    def kv_heads(self) -> int:
        return self.num_key_value_heads or self.num_attention_heads

    @property
    def head_size(self) -> int:
        # config.json's head_dim when present: it is not always hidden_size / heads.
        return self.head_dim or self.hidden_size // self.num_attention_heads


class Gpu(_Frozen):
    product: StrictStr
    gfx: StrictStr
    memory_gib: Annotated[float, Field(gt=0)]
    dtypes: tuple[Dtype, ...]


class Image(_Frozen):
    vllm: StrictStr
    engine: StrictStr
    gfx: tuple[StrictStr, ...]
    quantizations: tuple[StrictStr, ...]
    dequantizes_for_large_batches: StrictBool = False


class Catalog(_Frozen):
    gpus: dict[StrictStr, Gpu]
    images: dict[StrictStr, Image]
    models: dict[StrictStr, Architecture]

    def image(self, reference: str) -> Image | None:
        """The catalog entry of an image reference (`repo:tag`, `repo@digest`), by repository."""
        repo = reference.split("@", 1)[0]
        last = repo.rsplit("/", 1)[-1]
        if ":" in last:
            repo = repo[: len(repo) - len(last)] + last.split(":", 1)[0]
        return self.images.get(repo)


def load_yaml(text: str) -> Any:
    """yaml.safe_load, with libyaml's C loader where PyYAML has it (several times faster)."""
    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


@cache
def load_catalog(path: Path = CATALOG_FILE) -> Catalog:
    return Catalog.model_validate(load_yaml(path.read_text()))
