"""The Pulumi SDK's mocks, set up the way the engine runs a program: shared by the plan and the tests.

The real program runs under `pulumi.runtime.set_mocks` with the stack file's config fed through
`set_all_config`; every resource it registers is recorded with its inputs (secrets masked) and its
resource options. Resource state is the inputs, plus the ids real providers compute, so nothing
stays unknown (preview=False) and every check on an Output runs.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Sequence
from typing import Any

import pulumi
from pulumi.runtime import rpc
from pulumi.runtime.mocks import MockMonitor

from components.planning.urns import qualified_type, urn
from components.settings import NAMESPACE, StackFile
from components.tools.planned import SECRET_MASK, PlannedResource, fake_image_id

PROJECT = NAMESPACE


PLACEHOLDER = "plan-placeholder-"
_PLACEHOLDERS = re.compile(re.escape(PLACEHOLDER) + r"[A-Za-z0-9_.-]+")


def mask_secrets(value: Any) -> Any:
    """What a reviewer may see of registered inputs.

    The plan never holds a real secret: secure config values and generated keys become placeholders
    (config_map, PlanMocks). So a property the SDK marked secret as a whole (an env list with one
    secret entry, a container's uploaded files with one secret file) is shown with only the
    placeholders masked; a secret value without a placeholder in it is masked entirely.
    Numbers cross the mock monitor as protobuf doubles; whole ones are shown as integers again.
    """
    if rpc.is_rpc_secret(value):
        inner = rpc.unwrap_rpc_secret(value)
        return mask_secrets(inner) if PLACEHOLDER in json.dumps(inner, default=str) else SECRET_MASK
    if isinstance(value, dict):
        return {k: mask_secrets(v) for k, v in value.items()}
    if isinstance(value, list):
        return [mask_secrets(v) for v in value]
    if isinstance(value, str) and PLACEHOLDER in value:
        return _PLACEHOLDERS.sub(SECRET_MASK, value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def secret_inputs(inputs: dict[str, Any]) -> list[str]:
    """The top-level inputs the SDK sends as secrets (they are encrypted in state)."""
    return sorted(k for k, v in inputs.items() if rpc.is_rpc_secret(v))


class PlanMocks(pulumi.runtime.Mocks):
    """Resource state = its inputs (so nothing stays unknown), plus the ids real providers compute."""

    def __init__(self) -> None:
        self.inputs: dict[tuple[str, str], dict[str, Any]] = {}

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[Any, Any]]:
        self.inputs[(args.typ, args.name)] = args.inputs
        state = dict(args.inputs)
        if args.typ == "random:index/randomPassword:RandomPassword":
            # The key a real provider generates: a placeholder, masked wherever it shows.
            state["result"] = f"{PLACEHOLDER}generated-{args.name}"
            state["bcryptHash"] = f"$2a$10${PLACEHOLDER}hash-{args.name}"
        if args.typ == "docker:index/remoteImage:RemoteImage":
            state["imageId"] = fake_image_id(args.inputs["name"])
            state["repoDigest"] = f"{args.inputs['name']}@{fake_image_id(args.inputs['name'])}"
        return f"{args.name}-id", state

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[Any, Any], list[tuple[str, str]] | None]:
        return {}, None


class DependencyMonitor(MockMonitor):
    """The SDK's mock monitor, which also keeps what each registration depends on, as the engine is told:
    `dependencies` (depends_on, with components expanded to their children) and `propertyDependencies`
    (each input's resources). The engine's replacement rules follow these (components/planning/steps.py)."""

    def __init__(self, mocks: pulumi.runtime.Mocks) -> None:
        super().__init__(mocks)
        self.by_urn: dict[str, str] = {}
        self.requests: dict[tuple[str, str], tuple[list[str], dict[str, list[str]]]] = {}

    def RegisterResource(self, request: Any) -> Any:  # the gRPC method's name
        response = super().RegisterResource(request)  # type: ignore[no-untyped-call]  # untyped in the SDK
        self.by_urn[response.urn] = request.name
        self.requests[(request.type, request.name)] = (
            list(request.dependencies),
            {k: list(v.urns) for k, v in request.propertyDependencies.items()},
        )
        return response

    def dependencies(self, typ: str, name: str) -> dict[str, Any]:
        """The names a resource depends on: all of them, and by input (only inputs that depend on any)."""
        plain, by_key = self.requests.get((typ, name), ([], {}))

        def names(urns: list[str]) -> list[str]:
            return sorted({self.by_urn[u] for u in urns if u in self.by_urn})

        return {
            "dependencies": names(plain),
            "property_dependencies": {k: names(v) for k, v in sorted(by_key.items()) if names(v)},
        }


class OptionsRecorder:
    """Sees each resource's options as the program set them (the mock monitor is not told them)."""

    def __init__(self) -> None:
        self.names: dict[int, str] = {}
        # Each resource's qualified type, as the engine puts it in the URN (components/planning/urns.py).
        self.qualified: dict[int, str] = {}
        self.seen: list[tuple[str, str, pulumi.ResourceOptions, str]] = []

    def __call__(self, args: pulumi.ResourceTransformationArgs) -> None:
        self.names[id(args.resource)] = args.name
        parent = args.opts.parent
        qualified = qualified_type(self.qualified.get(id(parent)) if parent is not None else None, args.type_)
        self.qualified[id(args.resource)] = qualified
        self.seen.append((args.type_, args.name, args.opts, qualified))
        return None

    def name_of(self, resource: Any) -> str | None:
        return None if resource is None else self.names.get(id(resource))

    def options(self, opts: pulumi.ResourceOptions) -> dict[str, Any]:
        depends = opts.depends_on if isinstance(opts.depends_on, list) else [opts.depends_on] if opts.depends_on else []
        out: dict[str, Any] = {
            "protect": bool(opts.protect),
            "retain_on_delete": bool(opts.retain_on_delete),
            "delete_before_replace": bool(opts.delete_before_replace),
            "depends_on": sorted(n for n in (self.name_of(d) for d in depends) if n),
            "additional_secret_outputs": list(opts.additional_secret_outputs or []),
        }
        if opts.ignore_changes:
            out["ignore_changes"] = list(opts.ignore_changes)
        if opts.replace_on_changes:
            out["replace_on_changes"] = list(opts.replace_on_changes)
        if isinstance(opts.replacement_trigger, str):
            out["replacement_trigger"] = opts.replacement_trigger
        if opts.replace_with:
            out["replace_with"] = sorted(n for n in (self.name_of(r) for r in opts.replace_with) if n)
        t = opts.custom_timeouts
        if t is not None:
            out["custom_timeouts"] = {
                k: v for k, v in (("create", t.create), ("update", t.update), ("delete", t.delete)) if v
            }
        provider = self.name_of(opts.provider)
        if provider:
            out["provider"] = provider
        return out


def _digest(value: Any) -> str:
    """A short digest of a secure value's ciphertext: a rotated secret changes it, and nothing of it shows."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:12]


def secret_digests(inputs: dict[str, Any]) -> dict[str, str]:
    """For each input that carries a secret placeholder: a digest of it, so two plans show a rotated secret."""
    out = {}
    for key, value in inputs.items():
        plain = rpc.unwrap_rpc_secret(value) if rpc.is_rpc_secret(value) else value
        text = json.dumps(plain, default=str)
        if PLACEHOLDER in text:
            out[key] = hashlib.sha256(text.encode()).hexdigest()[:12]
        if key == "envs" and isinstance(plain, list):
            # and one per variable, so a review names the secret that changed (`envs.WEBUI_ADMIN_PASSWORD`)
            for entry in plain:
                entry = rpc.unwrap_rpc_secret(entry) if rpc.is_rpc_secret(entry) else entry
                if isinstance(entry, str) and PLACEHOLDER in entry:
                    name = entry.partition("=")[0]
                    out[f"envs.{name}"] = hashlib.sha256(entry.encode()).hexdigest()[:12]
    return out


def config_map(stack_file: StackFile) -> tuple[dict[str, str], list[str]]:
    """The stack file's config as the engine hands it to a program: strings, structured values as JSON.

    Secure values cannot be decrypted here; they become a placeholder, masked wherever it shows. A
    nested secure value (`servers.chat-a.api_key`) makes its whole key a secret, as the engine does.
    """
    config: dict[str, str] = {}
    secret_keys: list[str] = []
    for name, value in stack_file.values.items():
        key = f"{NAMESPACE}:{name}"
        if name in stack_file.secure:
            config[key] = f"{PLACEHOLDER}{name}-{_digest(value)}"
            secret_keys.append(key)
            continue
        nested = [p for p in stack_file.secure if p.startswith(name + ".")]
        for path in nested:
            *parents, last = path.split(".")[1:]
            node = value
            for part in parents:
                node = node[part]
            node[last] = f"{PLACEHOLDER}{path}-{_digest(node[last])}"
        if nested:
            secret_keys.append(key)
        config[key] = value if isinstance(value, str) else json.dumps(value)
    for key, value in stack_file.other.items():
        config[key] = value if isinstance(value, str) else json.dumps(value)
    return config, secret_keys


def run_program(
    stack: str,
    config: dict[str, str],
    secret_keys: Sequence[str],
    program: Callable[[], dict[str, pulumi.Input[Any]]],
) -> tuple[list[PlannedResource], dict[str, Any]]:
    """Run `program` under fresh mocks with this config; the registered resources and resolved outputs."""
    mocks = PlanMocks()
    recorder = OptionsRecorder()
    monitor = DependencyMonitor(mocks)
    pulumi.runtime.set_mocks(mocks, project=PROJECT, stack=stack, preview=False, monitor=monitor)
    pulumi.runtime.set_all_config(config, list(secret_keys))
    outputs: dict[str, Any] = {}
    try:

        def body() -> pulumi.Output[None]:
            pulumi.runtime.register_stack_transformation(recorder)
            exported = program()
            return pulumi.Output.all(**exported).apply(outputs.update)

        pulumi.runtime.test(body)()  # type: ignore[no-untyped-call]  # the SDK's mock runner is untyped
    finally:
        pulumi.runtime.set_all_config({}, [])
    resources = [
        PlannedResource(
            type=typ,
            name=name,
            parent=recorder.name_of(opts.parent),
            inputs=mask_secrets(mocks.inputs.get((typ, name), {})),
            options={
                **recorder.options(opts),
                "secret_inputs": secret_inputs(mocks.inputs.get((typ, name), {})),
                "secret_digests": secret_digests(mocks.inputs.get((typ, name), {})),
                **monitor.dependencies(typ, name),
            },
            urn=urn(stack, PROJECT, qualified, name),
        )
        for typ, name, opts, qualified in recorder.seen
    ]
    return resources, mask_secrets(outputs)
