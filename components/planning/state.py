"""What an exported Pulumi state (`pulumi stack export`) says that no plan can: pure, free of Pulumi.

A plan is the program under the SDK's mocks; the state is what the engine recorded, and holds what only
the engine and the providers know: a create whose health wait timed out (`initErrors`), and what a
`pulumi refresh` read back from a container (`outputs`). The export's shape is pulumi/pulumi v3.259.0
sdk/go/common/apitype/core.go L489-565 (ResourceV3): each resource's urn, type, custom, inputs, outputs,
provider reference (`URN::ID`), dependencies, propertyDependencies, initErrors, protect, retainOnDelete,
ignoreChanges, replaceOnChanges, replacementTrigger and replaceWith.

Two things a refresh records that the program's next `pulumi up` then acts on (the pulumi-docker 5.x
provider, which bridges kreuzwerker/terraform-provider-docker v4.5.0,
internal/provider/resource_docker_container_funcs.go):
- a container that is not running gets `must_run: false` (L810-822), and Read never sets it back to true
  once the container runs again (one in its restart backoff reads as running: Read asks State.Running);
- its published ports are read only while it runs or while `must_run` is still true in state (L797-805):
  the refresh that finds it stopped records none, and no later refresh reads them again (`GetOk("ports")`
  is false for an empty list).
Both differ from what the program asks, and `ports` forces a new container (ForceNew): the next `pulumi up`
replaces it, however long it has been running again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from components.planning.steps import Resource, swap

CONTAINER = "docker:index/container:Container"
REMOTE_IMAGE = "docker:index/remoteImage:RemoteImage"
# How the state writes a secret value: {SECRET_SIG: the secret's signature, "ciphertext": ...}
# (pulumi/pulumi v3.259.0 sdk/go/common/resource/sig/sig.go L21-24).
SECRET_SIG = "4dabf18193072939515e22adb298388d"
# How a plan shows one (components/tools/mocks.py mask_secrets).
SECRET_MASK = "[secret]"


class StateError(ValueError):
    """The file is not an exported state."""


def resources_of(export: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    deployment = export.get("deployment") if isinstance(export, Mapping) else None
    resources = deployment.get("resources") if isinstance(deployment, Mapping) else None
    if not isinstance(resources, list):
        raise StateError("has no deployment.resources: give the output of `pulumi stack export`")
    return [r for r in resources if isinstance(r, Mapping) and "urn" in r and "type" in r]


def name_of(urn: str) -> str:
    return urn.rsplit("::", 1)[-1]


def _plain(value: Any) -> Any:
    """A state value as a plan shows it: a secret is `[secret]`."""
    if isinstance(value, Mapping):
        if SECRET_SIG in value:
            return SECRET_MASK
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def old_resources(export: Mapping[str, Any]) -> list[Resource]:
    """The state's resources in the shape the step model reads (components/planning/steps.py), by name. A
    container's diff is the provider's, against what is in state: its outputs (what a refresh read back)
    stand for the inputs they echo."""
    out = []
    for r in resources_of(export):
        if r.get("delete") or str(r["type"]).startswith("pulumi:pulumi:"):
            continue  # a resource pending deletion; the stack itself
        inputs = dict(_plain(r.get("inputs") or {}))
        outputs = _plain(r.get("outputs") or {})
        if r["type"] == CONTAINER:
            inputs |= {k: outputs[k] for k in ("mustRun", "ports") if k in outputs}
        options: dict[str, Any] = {
            "protect": bool(r.get("protect")),
            "retain_on_delete": bool(r.get("retainOnDelete")),
            "dependencies": sorted({name_of(u) for u in r.get("dependencies") or []}),
            "property_dependencies": {
                k: sorted({name_of(u) for u in urns}) for k, urns in (r.get("propertyDependencies") or {}).items()
            },
        }
        provider = str(r.get("provider") or "")
        if provider:
            options["provider"] = name_of(provider.rsplit("::", 1)[0])
        for key, option in (
            ("ignoreChanges", "ignore_changes"),
            ("replaceOnChanges", "replace_on_changes"),
            ("replaceWith", "replace_with"),
        ):
            if r.get(key):
                options[option] = [name_of(u) for u in r[key]] if key == "replaceWith" else list(r[key])
        if isinstance(r.get("replacementTrigger"), str):
            options["replacement_trigger"] = r["replacementTrigger"]
        if r.get("initErrors"):
            options["init_errors"] = list(r["initErrors"])
        if r["type"] == REMOTE_IMAGE and isinstance(outputs.get("imageId"), str):
            options["image_id"] = outputs["imageId"]  # what the pull returned, which containers run
        out.append(Resource(name_of(str(r["urn"])), str(r["type"]), inputs, options, bool(r.get("custom"))))
    return out


def disagreements(export: Mapping[str, Any]) -> list[str]:
    """Containers whose state disagrees with what the program asks for, and what the next `pulumi up` does."""
    lines = []
    for r in resources_of(export):
        if r["type"] != CONTAINER or r.get("delete"):
            continue
        name = name_of(str(r["urn"]))
        inputs, outputs = r.get("inputs") or {}, r.get("outputs") or {}
        if r.get("initErrors"):
            lines.append(
                f"{name}: its last create failed ({'; '.join(str(e) for e in r['initErrors'])[:200]}): the next "
                "`pulumi up` replaces it. Do not refresh first: a refresh clears the error, and the up after it "
                f"accepts the container as it is (then: pulumi up --replace '{r['urn']}')"
            )
        stopped = inputs.get("mustRun") is not False and outputs.get("mustRun") is False
        portless = bool(inputs.get("ports")) and not outputs.get("ports")
        if stopped or portless:
            what = " and ".join(w for w, on in (("must_run false", stopped), ("no published ports", portless)) if on)
            lines.append(
                f"{name}: the state records {what}: a refresh read it while it was stopped, and no "
                "later refresh reads it back. The next `pulumi up` replaces the container (a server reloads "
                "its model), after which state and container agree"
            )
    return lines


def _masked(value: Any) -> Any:
    """A value with every string that holds a secret made the mask itself."""
    if isinstance(value, str):
        return SECRET_MASK if SECRET_MASK in value else value
    if isinstance(value, Mapping):
        return {k: _masked(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_masked(v) for v in value]
    return value


def comparable(old: Sequence[Resource], new: Sequence[Resource], stand_ins: Mapping[str, str]) -> list[Resource]:
    """The program's resources as they compare with the state: each image id the plan made up stands as the id
    the state holds for that image (`stand_ins`: the plan's id -> the image's name), a secret compares as a
    secret (the state holds its ciphertext, a plan its mask), and a container's `mustRun`, left to the
    provider's default, is that default (true)."""
    olds = {(r.name, r.type): r for r in old}
    real = {
        plan_id: r.options["image_id"]
        for r in old
        if r.type == REMOTE_IMAGE and "image_id" in r.options
        for plan_id, image in stand_ins.items()
        if r.inputs.get("name") == image
    }
    out = []
    for r in new:
        inputs = dict(r.inputs)
        for plan_id, state_id in real.items():
            inputs = {k: swap(v, plan_id, state_id) for k, v in inputs.items()}
        prior = olds.get((r.name, r.type))
        if prior is not None:
            if r.type == CONTAINER and "mustRun" in prior.inputs:
                inputs.setdefault("mustRun", True)
            for key, value in inputs.items():
                before = prior.inputs.get(key)
                whole_secret = before == SECRET_MASK and SECRET_MASK in repr(value)
                if key in prior.inputs and (whole_secret or _masked(before) == _masked(value)):
                    inputs[key] = before
        out.append(Resource(r.name, r.type, inputs, r.options, r.custom))
    return out


def restricted(old: Sequence[Resource], new: Sequence[Resource]) -> list[Resource]:
    """The state's resources with only the inputs the program sets: the rest are the provider's defaults,
    which its Check wrote into the state (the program leaves them to it, so they never change)."""
    keys = {(r.name, r.type): set(r.inputs) | ({"mustRun"} if r.type == CONTAINER else set()) for r in new}
    return [
        Resource(
            r.name, r.type, {k: v for k, v in r.inputs.items() if k in keys[(r.name, r.type)]}, r.options, r.custom
        )
        if (r.name, r.type) in keys
        else r
        for r in old
    ]
