"""The stack file as frozen pydantic models: the one place where configuration is read and validated.

Data flows one way: `Pulumi.<stack>.yaml` -> these models (validated once, all errors at once)
-> component args -> resources. Components never read configuration.

- models: every key and its default;
- errors: messages that name the file and the full key;
- validate: structure, cross-key rules and extra checks, all problems at once;
- stackfile: reading stack files, and where stacks live;
- pulumi_config: the config as the Pulumi engine hands it over (the package's only pulumi import,
  not imported here, so the pure tools stay free of pulumi).
"""

from components.settings.errors import NAMESPACE, Problem, StackConfigError, suggestion, unknown_key_message
from components.settings.models import (
    CONFIG_KEYS,
    SECRET_KEYS,
    ChatUiSettings,
    EmbeddingsSettings,
    GatewaySettings,
    GpuNode,
    Groups,
    HostSettings,
    LlamacppServerSettings,
    MonitoringSettings,
    ServerSettings,
    StackSettings,
    size_bytes,
)
from components.settings.stackfile import StackFile, plain_secret_problems, read_stack_file, stack_name
from components.settings.validate import Check, LoadedStack, validate

__all__ = [
    "CONFIG_KEYS",
    "NAMESPACE",
    "SECRET_KEYS",
    "ChatUiSettings",
    "Check",
    "EmbeddingsSettings",
    "GatewaySettings",
    "GpuNode",
    "Groups",
    "HostSettings",
    "LlamacppServerSettings",
    "LoadedStack",
    "MonitoringSettings",
    "Problem",
    "ServerSettings",
    "StackConfigError",
    "StackFile",
    "StackSettings",
    "plain_secret_problems",
    "read_stack_file",
    "size_bytes",
    "stack_name",
    "suggestion",
    "unknown_key_message",
    "validate",
]
