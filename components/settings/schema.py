"""The JSON schema of a `Pulumi.<stack>.yaml`, generated from the settings models, for editors.

The shipped stack files name it in a yaml-language-server modeline, so VS Code (with the YAML
extension) and other editors check keys and values as people type. `make schema` writes it;
tests/test_schema.py fails when the committed file and the models disagree.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from components.settings.errors import NAMESPACE
from components.settings.models import (
    NESTED_SECRET_FIELDS,
    SECRET_KEYS,
    ChatUiSettings,
    EmbeddingsSettings,
    GatewaySettings,
    HostSettings,
    LlamacppServerSettings,
    MonitoringSettings,
    ServerSettings,
)
from components.settings.stackfile import PROJECT_ROOT

SCHEMA_FILE = PROJECT_ROOT / "stack.schema.json"


class Secure(BaseModel):
    """A value `pulumi config set --secret` wrote: ciphertext, never the secret itself."""

    model_config = ConfigDict(extra="forbid")
    secure: str


class _Config(BaseModel):
    """The keys of `config:` in this project's namespace; other namespaces (providers') are allowed."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)
    host: HostSettings | None = Field(None, alias="rocm-inference:host", description="single-host form: the host")
    vllm: ServerSettings | LlamacppServerSettings | None = Field(
        None, alias="rocm-inference:vllm", description="single-host form: the server"
    )
    hosts: dict[str, HostSettings] | None = Field(
        None, alias="rocm-inference:hosts", description="fleet form: hosts by name"
    )
    servers: dict[str, ServerSettings | LlamacppServerSettings] | None = Field(
        None, alias="rocm-inference:servers", description="fleet form: servers by name (engine: vllm or llamacpp)"
    )
    embeddings: EmbeddingsSettings | None = Field(None, alias="rocm-inference:embeddings")
    gateway: GatewaySettings | None = Field(None, alias="rocm-inference:gateway")
    monitoring: MonitoringSettings | None = Field(None, alias="rocm-inference:monitoring")
    chat_ui: ChatUiSettings | None = Field(None, alias="rocm-inference:chat_ui")


class _StackFile(BaseModel):
    model_config = ConfigDict(extra="allow")
    config: _Config


def stack_schema() -> dict[str, Any]:
    schema = _StackFile.model_json_schema(by_alias=True)
    defs = schema["$defs"]
    defs["Secure"] = Secure.model_json_schema()
    config = defs["_Config"]
    for key in SECRET_KEYS:
        config["properties"][f"{NAMESPACE}:{key}"] = {"$ref": "#/$defs/Secure"}
    defs["AlertmanagerSettings"]["properties"]["webhook_url"] = {
        "$ref": "#/$defs/Secure",
        "description": "pulumi config set --secret --path 'rocm-inference:monitoring.alertmanager.webhook_url' https://...",
    }
    for field in NESTED_SECRET_FIELDS:
        for server in ("ServerSettings", "LlamacppServerSettings"):
            defs[server]["properties"][field] = {
                "$ref": "#/$defs/Secure",
                "description": "the server's own key: pulumi config set --secret --path 'rocm-inference:servers.NAME.api_key'",
            }
    for model in (
        "ServerSettings",
        "LlamacppServerSettings",
        "EmbeddingsSettings",
        "GatewaySettings",
        "ChatUiSettings",
    ):
        environment = defs[model]["properties"]["environment"]
        environment["additionalProperties"] = {"anyOf": [{"type": "string"}, {"$ref": "#/$defs/Secure"}]}
        environment["description"] = (
            "extra environment; a secret entry: pulumi config set --secret --path 'rocm-inference:...environment.NAME'"
        )
    # A key in this project's namespace that the models do not know is a typo.
    known = "|".join(k.split(":", 1)[1] for k in config["properties"])
    config["patternProperties"] = {f"^{NAMESPACE}:(?!({known})$)": False}
    schema["title"] = "Pulumi.<stack>.yaml of rocm-inference"
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema


def render() -> str:
    return json.dumps(stack_schema(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
