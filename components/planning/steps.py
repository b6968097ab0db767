"""What `pulumi up` will do to a running deployment, step by step, before it does it: pure, free of Pulumi.

This is a model of the engine's replacement rules, applied to two plans (the resources the real program
registers under the SDK's mocks at two versions), not an engine: it decides nothing that runs. Each rule
is the engine's at pulumi/pulumi v3.259.0, the engine the project's real-engine tests run
(pkg/resource/deploy/step_generator.go, "SG" below), with the providers' field facts from
components/planning/provider_facts.py:

- a resource whose inputs changed is replaced when a changed field forces it (the provider's ForceNew),
  when `replace_on_changes` covers it ("*" covers every field), or when its `replacement_trigger` changed
  and was set before (SG L1795-1812, L3624-3640 shouldTriggerReplace); else updated in place; a field that is neither
  replace-forcing nor applied by the provider's update is "updated" in state and reaches nothing;
- a resource is replaced when one named in its `replace_with` is (SG L2893-2906): here, every
  resource on a host with the host's provider, whose trigger is the machine (components/host.py);
- `ignore_changes` fields keep their old values for the diff and an update (SG L1264-1269,
  processIgnoreChanges L3028), not on a replacement, which is created from the program's inputs (SG
  L2004-2023);
- a provider change alone replaces nothing (SG L2796-2880 providerChanged; pulumi-docker has no provider field that
  forces it), so a resource that moves host needs a replace-forcing input (here the host trigger);
- replacing a protected resource is refused, and `pulumi up` stops there (SG L1955-1965);
- a replacement is delete-first where the provider asks for it (pulumi-docker: a Container whose ForceNew
  field changed) or the program says so (`delete_before_replace`); one the engine starts itself (a
  replacement trigger, `replace_on_changes`, `replace_with`) is otherwise create-first (SG L2040-2046). A
  delete-first replacement first deletes each dependent that would be replaced once the inputs it takes
  from the replaced resources are unknown, in reverse order, then the resource itself, then creates it
  (SG L2040-2160, calculateDependentReplacements L3220-3361): only property dependencies count, a plain
  `depends_on` deletes nothing; a dependent so deleted is created again when it registers (SG
  L1490-1506, L1853-1864);
- a create-before-delete replacement creates the new one and deletes the old one after the program ends;
- resources the program no longer registers are deleted after it ends, with the replaced ones, dependents
  before what they depend on (SG L2745-2790); a protected one is refused, and `retain_on_delete`
  drops it from state but leaves it where it runs (pkg/resource/deploy/step.go L644-662).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from components.planning import provider_facts as pf

STAR = "*"
# Why a resource is replaced that is no field of it: the engine's own reasons, which the provider's diff never sees.
ENGINE_KEYS = frozenset({"replacement_trigger", "replace_with", "initErrors"})


@dataclass(frozen=True)
class Resource:
    """One registered resource, as a plan records it (inputs in the engine's camelCase)."""

    name: str
    type: str
    inputs: Mapping[str, Any]
    options: Mapping[str, Any]
    custom: bool

    @staticmethod
    def of(plan_resource: Mapping[str, Any], namespace: str = "rocm-inference") -> Resource:
        return Resource(
            name=plan_resource["name"],
            type=plan_resource["type"],
            inputs=plan_resource.get("inputs", {}),
            options=plan_resource.get("options", {}),
            custom=not plan_resource["type"].startswith(f"{namespace}:"),
        )

    def delete_first(self, keys: Sequence[str]) -> bool:
        """Whether its replacement for these changed keys is delete-first: where the program says so, or where
        the provider asks for it and a field it forces a new resource on changed (SG L2040-2046)."""
        if self.options.get("delete_before_replace"):
            return True
        forced = [k for k in keys if k not in ENGINE_KEYS and ((f := pf.fact(self.type, k)) is None or f.replaces)]
        return pf.delete_before_replace(self.type) and bool(forced)

    def property_dependencies(self) -> Mapping[str, Sequence[str]]:
        deps: Mapping[str, Sequence[str]] = self.options.get("property_dependencies", {})
        return deps

    def dependencies(self) -> set[str]:
        named = set(self.options.get("dependencies", [])) | set(self.options.get("depends_on", []))
        for names in self.property_dependencies().values():
            named |= set(names)
        return named


@dataclass(frozen=True)
class Step:
    """One step of `pulumi up`, in the order the engine takes them.

    op: create, update, unapplied (an update that reaches nothing), delete (of a replaced or removed
    resource), refused (protect stops `pulumi up` here), forgotten (dropped from state, left running),
    moved (a provider change that replaces nothing).
    """

    name: str
    type: str
    op: str
    why: tuple[str, ...] = ()
    note: str = ""

    def line(self) -> str:
        why = f" ({', '.join(self.why)})" if self.why else ""
        return f"{self.op:9} {self.name}{why}" + (f": {self.note}" if self.note else "")


@dataclass
class Verdict:
    """What happens to one resource that changed."""

    name: str
    type: str
    change: str  # create, update, replace, delete, unapplied, refused, moved
    keys: list[str] = field(default_factory=list)
    unapplied: list[str] = field(default_factory=list)
    moved: bool = False


def _covers(patterns: Iterable[str], key: str) -> bool:
    return any(p in (STAR, key) or key.startswith(p + ".") or key.startswith(p + "[") for p in patterns)


def _changed_keys(old: Resource, new: Resource) -> list[str]:
    """Inputs whose value differs; a secret shows only as a digest of what it was made from (the plan never
    holds a secret), so a rotated secret counts as a change of the inputs that carry it."""
    ignored = set(new.options.get("ignore_changes", []))
    keys = sorted(set(old.inputs) | set(new.inputs))
    # Only where both plans recorded them: a plan made before digests existed tells nothing of its secrets.
    both = "secret_digests" in old.options and "secret_digests" in new.options
    a, b = old.options.get("secret_digests", {}), new.options.get("secret_digests", {})
    return [
        k
        for k in keys
        if k not in ignored and (old.inputs.get(k) != new.inputs.get(k) or (both and a.get(k) != b.get(k)))
    ]


def _replaces(r: Resource, key: str) -> bool:
    """Does a change (or an unknown value) of this input replace r?"""
    fact = pf.fact(r.type, key)
    if fact is None or fact.replaces:  # a field no fact names: taken to replace, the safe side
        return True
    return _covers(r.options.get("replace_on_changes", []), key)


def verdict(old: Resource, new: Resource, replaced: Iterable[str] = (), unknown_after_replace: bool = False) -> Verdict:
    """What happens to `new`, given its old state and the resources already replaced in this update.

    `unknown_after_replace`: an input taken from a replaced resource's output counts as changed (at preview
    the engine holds it unknown; the state path, whose inputs are the state's, needs it)."""
    v = Verdict(new.name, new.type, "same")
    if not new.custom:
        return v
    v.moved = old.options.get("provider") != new.options.get("provider")
    before, after = old.options.get("replacement_trigger"), new.options.get("replacement_trigger")
    triggered = before is not None and after is not None and before != after
    with_ = set(new.options.get("replace_with", [])) & set(replaced)
    changed = _changed_keys(old, new)
    if unknown_after_replace:
        changed += [
            k for k, deps in new.property_dependencies().items() if set(deps) & set(replaced) and k not in changed
        ]
    # A create that failed (a health wait that timed out) leaves init errors in state: the next update replaces
    # it where replace_on_changes covers them ("*" does), else retries it in place (SG L1944-1947,
    # L3120-3200 applyReplaceOnChanges, L2180-2190).
    failed = bool(old.options.get("init_errors"))
    init_replace = failed and _covers(new.options.get("replace_on_changes", []), "#initerror")
    v.keys = (
        changed
        + (["replacement_trigger"] if triggered else [])
        + (["replace_with"] if with_ else [])
        + (["initErrors"] if failed else [])
    )
    replace = triggered or bool(with_) or init_replace or any(_replaces(new, k) for k in changed)
    if replace:
        v.change = "refused" if old.options.get("protect") and new.options.get("protect") else "replace"
    elif changed:
        applied = [k for k in changed if (f := pf.fact(new.type, k)) is not None and f.applied]
        v.unapplied = [k for k in changed if k not in applied]
        v.change = "update" if applied or failed else "unapplied"
    elif failed:
        v.change = "update"
    elif v.moved:
        v.change = "moved"
    return v


def _dependents_deleted_first(
    root: str, olds: Mapping[str, Resource], registered: set[str]
) -> list[tuple[str, list[str]]]:
    """calculateDependentReplacements: the old resources that depend on root (transitively) and that the
    provider would replace once their inputs from the replaced set are unknown, with those inputs."""
    replaced = {root}
    out: list[tuple[str, list[str]]] = []
    changed = True
    while changed:
        changed = False
        for name, r in olds.items():
            if name in replaced or name in registered or not r.custom:
                continue
            keys = [k for k, deps in r.property_dependencies().items() if replaced & set(deps)]
            if keys and any(_replaces(r, k) for k in keys):
                replaced.add(name)
                out.append((name, keys))
                changed = True
    return list(reversed(out))  # dependents of dependents first


@dataclass(frozen=True)
class Kept:
    """An input the program changed that `ignore_changes` keeps at its old value in state (and in the outputs
    others take from it), until the resource is created again: after a destroy, it takes the new value."""

    name: str
    type: str
    key: str
    kept: Any
    wanted: Any


def swap(value: Any, wanted: Any, kept: Any) -> Any:
    """The value with `wanted` (or, in a string, each occurrence of it) made `kept`, at every depth."""
    if value == wanted:
        return kept
    if isinstance(value, str) and isinstance(wanted, str) and isinstance(kept, str) and wanted:
        return value.replace(wanted, kept)  # a name inside a command line built from it
    if isinstance(value, list):
        return [swap(v, wanted, kept) for v in value]
    if isinstance(value, dict):
        return {k: swap(v, wanted, kept) for k, v in value.items()}
    return value


def carry_ignored(old: Sequence[Resource], new: Sequence[Resource]) -> tuple[list[Resource], list[Kept]]:
    """The program's resources as the engine sees them: an ignored input takes its old value (SG L1264-1269),
    and so does the output of the same name that dependents take through their inputs (the provider's
    output is what is in state: a volume whose new name is ignored keeps the old name, and the container
    mounts that). Only outputs equal to their input are carried, as a Volume's `name` is."""
    olds = {r.name: r for r in old}
    kept: list[Kept] = []
    out: list[Resource] = []
    for r in new:
        prior = olds.get(r.name)
        inputs = dict(r.inputs)
        if prior is not None and prior.type == r.type:
            for key in r.options.get("ignore_changes", []):
                if key in prior.inputs and key in inputs and prior.inputs[key] != inputs[key]:
                    kept.append(Kept(r.name, r.type, key, prior.inputs[key], inputs[key]))
                    inputs[key] = prior.inputs[key]
        for key, deps in r.property_dependencies().items():
            for k in kept:
                if k.name in deps and key in inputs:
                    inputs[key] = swap(inputs[key], k.wanted, k.kept)
        out.append(Resource(r.name, r.type, inputs, r.options, r.custom))
    return out, kept


def predict(
    old: Sequence[Resource], new: Sequence[Resource], unknown_after_replace: bool = False
) -> tuple[list[Step], list[Verdict]]:
    """The steps of `pulumi up` from the state `old` left to the program `new`, in order, and a verdict
    for every resource that changes (`unknown_after_replace`: see verdict)."""
    # A resource is its URN: the same name under another type is another resource (deleted, and created).
    news = {r.name: r for r in new}
    olds = {r.name: r for r in old if r.name not in news or news[r.name].type == r.type}
    retyped = [r for r in old if r.name not in olds]
    steps: list[Step] = []
    verdicts: list[Verdict] = []
    deferred: list[Step] = []  # deletes of create-before-delete replacements: after the program ends
    recreate: dict[str, str] = {}  # deleted as a dependent -> of which resource
    registered: set[str] = set()
    replaced: set[str] = set()
    for r in new:
        registered.add(r.name)
        if r.name not in olds:
            if r.custom:
                steps.append(Step(r.name, r.type, "create"))
                verdicts.append(Verdict(r.name, r.type, "create"))
            continue
        if r.name in recreate:
            steps.append(Step(r.name, r.type, "create", (), f"again, deleted before {recreate[r.name]} was replaced"))
            verdicts.append(Verdict(r.name, r.type, "replace", ["(a dependency was replaced)"]))
            replaced.add(r.name)
            continue
        v = verdict(olds[r.name], r, replaced, unknown_after_replace)
        if v.change == "same":
            continue
        if v.change == "replace":
            replaced.add(r.name)
        verdicts.append(v)
        if v.change == "refused":
            steps.append(
                Step(
                    r.name,
                    r.type,
                    "refused",
                    tuple(v.keys),
                    "it is protected: `pulumi up` stops here, and nothing after this step happens",
                )
            )
        elif v.change == "replace" and r.delete_first(v.keys):
            for name, keys in _dependents_deleted_first(r.name, olds, registered):
                dep = olds[name]
                if dep.options.get("protect"):
                    steps.append(
                        Step(name, dep.type, "refused", tuple(keys), f"protected, as part of replacing {r.name}")
                    )
                    continue
                steps.append(Step(name, dep.type, "delete", tuple(keys), f"deleted first: {r.name} is replaced"))
                recreate[name] = r.name
            steps.append(Step(r.name, r.type, "delete", tuple(v.keys), "replaced, the old one deleted first"))
            steps.append(Step(r.name, r.type, "create", tuple(v.keys), "the replacement"))
        elif v.change == "replace":
            steps.append(Step(r.name, r.type, "create", tuple(v.keys), "the replacement, beside the old one"))
            if olds[r.name].options.get("retain_on_delete"):
                deferred.append(
                    Step(
                        r.name,
                        r.type,
                        "forgotten",
                        tuple(v.keys),
                        "the replaced one: dropped from state, left where it was",
                    )
                )
            else:
                deferred.append(
                    Step(r.name, r.type, "delete", tuple(v.keys), "the replaced one, after the program ends")
                )
        elif v.change == "moved":
            steps.append(
                Step(r.name, r.type, "moved", ("provider",), "to another host's provider: nothing is recreated there")
            )
        else:
            note = ""
            if v.unapplied:
                note = f"{', '.join(v.unapplied)} changes only in Pulumi's state: the provider applies no such change"
            steps.append(Step(r.name, r.type, "update" if v.change == "update" else "unapplied", tuple(v.keys), note))
    # At the end, the engine deletes the replaced (create-before-delete) and the removed resources together,
    # each only once everything that depends on it is gone: dependents first (v3.259.0 step_generator.go
    # L2326-2370 GenerateDeletes, L2745-2790 ScheduleDeletes). The old state is in registration order, in
    # which a resource comes after what it depends on, so its reverse is such an order.
    position = {(r.name, r.type): i for i, r in enumerate(old)}
    ends = [(position.get((d.name, d.type), len(old)), d) for d in deferred]
    for i, r in enumerate(old):
        name = r.name
        if (name in news and r not in retyped) or name in recreate:
            continue
        if not r.custom:
            continue
        if r.options.get("protect"):
            ends.append(
                (i, Step(name, r.type, "refused", (), "protected: it cannot be deleted, and `pulumi up` fails"))
            )
            verdicts.append(Verdict(name, r.type, "refused"))
        elif r.options.get("retain_on_delete"):
            ends.append((i, Step(name, r.type, "forgotten", (), "dropped from state; it stays where it runs")))
            verdicts.append(Verdict(name, r.type, "delete"))
        else:
            ends.append((i, Step(name, r.type, "delete", (), "no longer in the program")))
            verdicts.append(Verdict(name, r.type, "delete"))
    steps += [step for _, step in sorted(ends, key=lambda e: -e[0])]
    return steps, verdicts


@dataclass(frozen=True)
class Outage:
    """A serving container's time without a server, from the steps' order."""

    name: str
    down_at: int  # index of its delete step
    up_at: int  # index of the create that brings it back (len(steps) if none)
    during: tuple[str, ...]  # the steps in between, by name


def outages(steps: Sequence[Step], serving: Iterable[str]) -> list[Outage]:
    """For each serving container deleted by these steps: what runs between its delete and its new create."""
    out = []
    for name in serving:
        downs = [i for i, s in enumerate(steps) if s.name == name and s.op == "delete"]
        if not downs:
            continue
        down = downs[0]
        up = next(
            (i for i in range(down + 1, len(steps)) if steps[i].name == name and steps[i].op == "create"), len(steps)
        )
        out.append(Outage(name, down, up, tuple(s.name for s in steps[down + 1 : up])))
    return out
