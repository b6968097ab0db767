"""What a change does to a stack, for a reviewer: the plan at a git ref, the difference, a PR comment."""

from __future__ import annotations

import difflib
import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from components.planning.state import comparable, disagreements, name_of, old_resources, resources_of, restricted
from components.planning.steps import Kept, Outage, Resource, Step, carry_ignored, outages, predict
from components.planning.timing import load_estimate
from components.settings.stackfile import stack_path
from components.tools.planned import Plan, PlannedResource, fake_image_id
from components.tools.render import container_settings, image_names, one_shot_runs

# The restart time of a replaced vLLM container is the load estimate of components/planning/timing.py.
EMBEDDINGS_START_S = 60


class RefError(Exception):
    """The git ref cannot be planned (unknown ref, no git)."""


@dataclass
class Change:
    name: str
    type: str
    kind: str  # create, delete, replace, update
    settings: list[str] = field(default_factory=list)
    note: str = ""

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "change": self.kind, "settings": self.settings, "note": self.note}


@dataclass
class Diff:
    ref: str
    changes: list[Change]
    old_capacity: dict[str, dict[str, Any]] | None  # by server
    old_missing: str = ""  # why there is nothing to compare with at the ref
    kept: list[str] = field(default_factory=list)  # names Pulumi keeps that a destroy would lose
    refused: list[str] = field(default_factory=list)  # changes `pulumi up` would fail on, with the way out
    state: list[str] = field(default_factory=list)  # where an exported state disagrees with what runs
    steps: list[str] = field(default_factory=list)  # what `pulumi up` does, in order
    # the same steps, machine-readable: each one's op, resource name and type (tests compare them with
    # `pulumi preview --json`'s steps)
    step_ops: list[dict[str, str]] = field(default_factory=list)
    outages: list[str] = field(default_factory=list)  # each serving container's time down, from the steps
    speed: list[str] = field(default_factory=list)  # how the change moves each server's speed bands

    def as_json(self) -> dict[str, Any]:
        return {
            "against": self.ref,
            "changes": [c.as_json() for c in self.changes],
            "steps": self.steps,
            "step_ops": self.step_ops,
            "downtime": self.outages,
            "speed": self.speed,
            "capacity_before": self.old_capacity,
            "note": self.old_missing,
            "kept": self.kept,
            "refused": self.refused,
            "state": self.state,
        }


def plan_at_ref(ref: str, stack: str, root: Path) -> dict[str, Any] | str:
    """The JSON plan of Pulumi.<stack>.yaml at `ref`, made by that ref's own code in a temporary worktree.

    Returns a reason string where the ref has no such plan (a new stack, or code before the plan existed).
    """
    with tempfile.TemporaryDirectory(prefix="rocm-plan-") as tmp:
        tree = Path(tmp) / "tree"
        added = subprocess.run(
            ["git", "worktree", "add", "--detach", str(tree), ref], cwd=root, capture_output=True, text=True
        )
        if added.returncode != 0:
            raise RefError(
                f"cannot check out {ref}: {added.stderr.strip().splitlines()[-1] if added.stderr.strip() else 'git failed'}"
            )
        try:
            stack_file = stack_path(stack, tree)
            if not stack_file.exists():
                return f"{stack_file.name} does not exist at {ref}: a new stack"
            done = subprocess.run(
                [sys.executable, "-m", "components.plan", "--file", str(stack_file), "--format", "json"],
                cwd=tree,
                capture_output=True,
                text=True,
            )
            if done.returncode == 1:
                return f"the stack is invalid at {ref}: {done.stderr.strip()}"
            if done.returncode != 0:
                return f"{ref} cannot plan this stack (exit {done.returncode})"
            plan: dict[str, Any] = json.loads(done.stdout)
            return plan
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=root, capture_output=True)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def changed_parts(old: Any, new: Any, limit: int = 80, context: int = 20) -> tuple[str, str]:
    """The two values, each cut to the part where they differ (with a little context), never before it."""
    a, b = _text(old), _text(new)
    if len(a) <= limit and len(b) <= limit:
        return a, b
    start = 0
    while start < min(len(a), len(b)) and a[start] == b[start]:
        start += 1
    end = 0
    while end < min(len(a), len(b)) - start and a[len(a) - 1 - end] == b[len(b) - 1 - end]:
        end += 1
    lo = max(0, start - context)

    def cut(text: str) -> str:
        hi = min(len(text), len(text) - end + context)
        return ("…" if lo else "") + text[lo:hi] + ("…" if hi < len(text) else "")

    return cut(a), cut(b)


def _setting_changes(old: dict[str, Any], new: dict[str, Any]) -> list[tuple[str, str]]:
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if a == b:
            continue
        if isinstance(a, list) and isinstance(b, list) and all(isinstance(x, str) for x in a + b):
            ops = difflib.SequenceMatcher(a=a, b=b).get_opcodes()
            parts = []
            for tag, i1, i2, j1, j2 in ops:
                if tag != "equal":
                    parts.append(f"{' '.join(a[i1:i2]) or '∅'} → {' '.join(b[j1:j2]) or '∅'}")
            out.append((key, "; ".join(parts)))
        else:
            before, after = changed_parts(a, b) if a is not None and b is not None else (_text(a), _text(b))
            out.append((key, f"{before if a is not None else '∅'} → {after if b is not None else '∅'}"))
    return out


def downtime(holds_gpus: bool, capacity: dict[str, Any] | None, downloads: bool = False) -> str:
    """How long a replaced container's service is down: a GPU server reloads its weights. `downloads`: its
    download runs in this update (a new model, a new cache): only then is anything downloaded before."""
    if holds_gpus and capacity:
        load = load_estimate(capacity["weights_gib_per_gpu"], capacity.get("tensor_parallel_size", 1))
        line = (
            f"the OpenAI endpoint is down about {round(load.seconds / 60)} min while {load.weights_gib:.0f} GiB of "
            "weights load (estimate)"
        )
        return line + ("; the download runs before, while the old server keeps serving" if downloads else "")
    return f"the service is down about {EMBEDDINGS_START_S} s while it restarts (estimate)"


def capacities(plan_json: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A JSON plan's memory plans by server, from either shape: one per server (now), or the one
    server's plan itself (before the fleet form; that server is `vllm`)."""
    c = plan_json.get("capacity")
    if not c:
        return {}
    if "kv_cache_tokens" in c:
        return {"vllm": c}
    return dict(c)


def _serving(r: Resource) -> bool:
    return r.type.endswith(":Container") and r.inputs.get("mustRun") is not False


def _downtime_of(r: Resource, new: Plan, runs: frozenset[str] = frozenset()) -> str:
    """The load-time estimate of a replaced container: its server's memory plan where it has one. `runs`:
    the one-shot runs this update creates (a replaced download runs; an updated one runs its `update`)."""
    parent = next((x.parent for x in new.resources if x.name == r.name), None)
    capacity = new.capacity_of(parent or "")
    fetched = parent is not None and f"{parent}-prefetch" in runs
    return downtime(bool(r.inputs.get("devices")), capacity.as_json() if capacity else None, fetched)


def _note(
    step_kind: str, r: Resource, new: Plan, outage: Outage | None, runs_between: list[str], runs: frozenset[str]
) -> str:
    if outage is not None and step_kind == "replace":
        down = _downtime_of(r, new, runs)
        if runs_between:
            return (
                f"down also while {', '.join(runs_between)} runs: the engine deletes it before that, then "
                + down.split(";")[0]
            )
        return down
    if step_kind == "refused" and r.type.endswith(":Volume"):
        return (
            "the volume is protected: Pulumi refuses to replace it (the model cache would be lost), and `pulumi up` "
            "stops at this step"
        )
    if step_kind == "refused":
        return "protected: `pulumi up` stops at this step"
    if step_kind == "moved":
        return (
            "its provider (host) changes and nothing else: Pulumi replaces nothing and records it under the new "
            "host, where it does not exist"
        )
    if step_kind == "unapplied":
        return "Pulumi records the change, the provider applies none of it to what runs"
    if r.type.startswith("command:") and step_kind in ("replace", "update", "create"):
        if r.inputs.get("triggers") and isinstance(r.inputs["triggers"][0], dict):
            if step_kind == "update" and r.inputs.get("update") is not None:
                # pulumi-command runs `update` instead of `create` on an update (provider_facts: inputs.go L13)
                return f"does not run again: an update runs its `update` command ({r.inputs['update']}) instead"
            return "runs once more (a one-shot docker run)"
        return "the host preflight check runs again"
    return ""


# Open WebUI creates its admin from WEBUI_ADMIN_PASSWORD only while it has no user (open-webui 0.12.4
# utils/auth.py L631-662): the admin reset (components/chat_ui.py) sets a changed one after the UI is up.
ADMIN_PASSWORD_NOTE = (
    "chat_ui_admin_password changed: Open WebUI creates its admin only while it has no user, so chat-ui-admin-reset "
    "sets the new password in its data volume once the UI is up"
)


def _rotated_secrets(old_options: dict[str, Any], new_options: dict[str, Any]) -> list[str]:
    """The secret environment variables whose value changed, from the per-variable digests both plans hold."""
    a, b = old_options.get("secret_digests", {}), new_options.get("secret_digests", {})
    return sorted(k.split(".", 1)[1] for k in set(a) & set(b) if k.startswith("envs.") and a[k] != b[k])


def diff(old: dict[str, Any] | str, new: Plan, ref: str) -> Diff:
    """The changes between the plan at `ref` and now, as the engine will take them (components/planning/steps.py)."""
    if isinstance(old, str):
        return Diff(ref, [Change(r.name, r.type, "create") for r in new.resources if r.custom], None, old)
    before = [Resource.of(r) for r in old["resources"]]
    after, kept = carry_ignored(before, [Resource.of(r.as_json()) for r in new.resources])
    result = _diff(before, after, kept, old["resources"], new, ref, from_state=False)
    result.old_capacity = capacities(old)
    result.speed = speed_changes(result.old_capacity, new)
    return result


def diff_state(export: dict[str, Any], new: Plan, where: str) -> Diff:
    """The changes between an exported state (`pulumi stack export`) and now: what only the engine knows
    counts too (a create whose health wait failed, what a refresh read back: components/planning/state.py)."""
    program = [Resource.of(r.as_json()) for r in new.resources]
    before = restricted(old_resources(export), program)
    stand_ins = {fake_image_id(r.inputs["name"]): r.inputs["name"] for r in program if r.type.endswith(":RemoteImage")}
    after, kept = carry_ignored(before, comparable(before, program, stand_ins))
    olds: list[dict[str, Any]] = [
        {"name": r.name, "type": r.type, "inputs": dict(r.inputs), "options": {}} for r in before
    ]
    urns = {name_of(str(r["urn"])): str(r["urn"]) for r in resources_of(export)}
    for r in olds:
        r["urn"] = urns.get(r["name"], "")
    result = _diff(before, after, kept, olds, new, where, from_state=True)
    result.state = disagreements(export)
    return result


def _diff(
    before: list[Resource],
    after: list[Resource],
    kept: list[Kept],
    old_resources_json: list[dict[str, Any]],
    new: Plan,
    ref: str,
    from_state: bool,
) -> Diff:
    steps, verdicts = predict(before, after, unknown_after_replace=from_state)
    resources = {r.name: r for r in before} | {r.name: r for r in after}
    created_runs = frozenset(s.name for s in steps if s.op == "create" and _is_run(resources.get(s.name)))
    serving = [r.name for r in after if _serving(r)] + [r.name for r in before if _serving(r)]
    by_outage = {o.name: o for o in outages(steps, dict.fromkeys(serving))}
    old_by = {r["name"]: r for r in old_resources_json}
    changes: list[Change] = []
    for v in verdicts:
        r = resources[v.name]
        settings: list[str] = []
        rotated: list[str] = []
        # The same resource in both plans (one of another type under the same name is another resource).
        same = (
            v.name in old_by
            and old_by[v.name]["type"] == v.type
            and any(x.name == v.name and x.type == v.type for x in new.resources)
        )
        if same:
            a, b = old_by[v.name], new.by_name(v.name)
            settings = [f"{k}: {t}" for k, t in _setting_changes(a["inputs"], dict(resources[v.name].inputs))]
            rotated = _rotated_secrets(a.get("options", {}), b.options)
            settings += [
                f"{k}: "
                + (f"{', '.join(rotated)} changed (secrets)" if k == "envs" and rotated else "a secret in it changed")
                for k in v.keys
                if k in b.inputs and a["inputs"].get(k) == b.inputs[k]
            ]
            if not from_state:  # the state's options are the engine's, not the program's: no like to compare
                settings += [
                    f"{k}: {t}"
                    for k, t in _setting_changes(_shown_options(a.get("options", {})), _shown_options(b.options))
                ]
        outage = by_outage.get(v.name)
        runs = [n for n in (outage.during if outage else ()) if _is_run(resources.get(n))]
        note = _note(v.change, r, new, outage, runs, created_runs)
        if "WEBUI_ADMIN_PASSWORD" in rotated:
            note = (note + "; " if note else "") + ADMIN_PASSWORD_NOTE
        change = Change(v.name, v.type, v.change, settings, note)
        changes.append(change)
    # A replacement is made from the program's inputs: ignore_changes keeps nothing there (SG v3.259.0 L2004-2023).
    replaced = {v.name for v in verdicts if v.change == "replace"}
    result = Diff(ref, changes, None, kept=[_kept_line(k) for k in kept if k.name not in replaced])
    result.refused = host_renames(old_resources_json, new)
    result.steps = [s.line() for s in steps]
    result.step_ops = [{"op": s.op, "name": s.name, "type": s.type} for s in steps]
    result.outages = [_outage_line(o, steps, resources, new, created_runs) for o in by_outage.values()]
    result.outages += _replicas_down_together(by_outage, new)
    return result


# What a speed line shows: (field of capacity.<server>.performance, what, unit, higher is better)
SPEED_FIELDS = (
    ("decode_tokens_per_s", "decode", " tokens/s per request", True),
    ("output_tokens_per_s", "output", " tokens/s together", True),
    ("prefill_tokens_per_s", "prefill", " tokens/s", True),
    ("ttft_s", "TTFT", " s", False),
    ("longest_prefill_s", "longest prefill", " s", False),
)


def speed_changes(before: dict[str, dict[str, Any]], new: Plan) -> list[str]:
    """Per server, each speed estimate the change moves (by more than 1%), from the old plan's JSON bands."""
    lines = []
    for name, sp in new.servers.items():
        now = sp.performance.as_json() if sp.performance is not None else None
        then = (before.get(name) or {}).get("performance")
        if now is None or then is None:
            if now is not None and name not in before:
                lines.append(f"{name}: a new server")
            continue
        moved = []
        for key, what, unit, higher in SPEED_FIELDS:
            a, b = (then.get(key) or {}).get("estimate"), now[key]["estimate"]
            if not a or not b or abs(b / a - 1) < 0.01:
                continue
            better = (b > a) == higher
            moved.append(
                f"{what} {a:.3g} -> {b:.3g}{unit} ({b / a - 1:+.0%}, {'faster' if better else 'slower'}; "
                f"band {now[key]['low']:.3g}-{now[key]['high']:.3g})"
            )
        if then.get("workload") != now["workload"]:
            w = now["workload"]
            cached = f" ({w['cached_prompt_tokens']} cached)" if w.get("cached_prompt_tokens") else ""
            moved.append(
                f"at the workload now {w['concurrency']} x {w['prompt_tokens']} in{cached} / {w['output_tokens']} out"
            )
        if moved:
            lines.append(f"{name}: " + ", ".join(moved))
    return lines


def _replicas_down_together(by_outage: dict[str, Outage], new: Plan) -> list[str]:
    """The engine runs steps that do not depend on each other at the same time (`pulumi up --parallel`,
    unbounded by default): replicas of one served model replaced in one update go down together."""
    servers = new.outputs.get("servers") or {}
    by_model: dict[str, list[str]] = {}
    for name, server in servers.items():
        if isinstance(server, dict) and f"{name}-container" in by_outage:
            by_model.setdefault(str(server.get("model")), []).append(name)
    return [
        f"{model}: every replica ({', '.join(names)}) is replaced in this update, and the engine replaces them at "
        f"the same time: the model is unserved meanwhile. To keep one serving, change one replica per `pulumi up`, "
        f"or give `pulumi up` the URNs of {names[0]}'s resources with --target (pulumi stack --show-urns), then the rest"
        for model, names in by_model.items()
        if len(names) > 1
        and len(names) == sum(1 for s in servers.values() if isinstance(s, dict) and s.get("model") == model)
    ]


HOST_TYPE = "rocm-inference:host:RocmHost"
PROVIDER_TYPE = "pulumi:providers:docker"
# What a host's name names: its own resources, and its node-exporter's (components/host.py, monitoring.py).
HOST_PARTS = ("docker", "preflight", "network", "node-exporter-image", "node-exporter-container")


def host_renames(old: list[dict[str, Any]], new: Plan) -> list[str]:
    """A host renamed in `hosts:` (one gone, one new, the same machine): `pulumi up` makes the new name's
    resources before it deletes the old name's, and they clash on that machine (node-exporter's container, the
    stack's network). The way out is to rename them in Pulumi's state first, every reference included
    (components/tools/state_rename.py: `pulumi state rename` of the host's provider leaves a snapshot the engine
    refuses)."""
    before = {r["name"]: r for r in old}
    after = {r.name: r for r in new.resources}
    gone = [n for n, r in before.items() if r["type"] == HOST_TYPE and n not in after]
    added = [n for n, r in after.items() if r.type == HOST_TYPE and n not in before]
    lines = []
    for x in gone:
        machine = before.get(f"{x}-docker", {}).get("inputs", {}).get("host")
        for y in added:
            if (
                machine is None
                or after.get(f"{y}-docker") is None
                or after[f"{y}-docker"].inputs.get("host") != machine
            ):
                continue
            renames = [(x, y)] + [(f"{x}-{part}", f"{y}-{part}") for part in HOST_PARTS if f"{x}-{part}" in before]
            pairs = [f"'{before[a].get('urn') or a}={b}'" for a, b in renames if b in after]
            command = (
                f"pulumi stack export --file state.json && python -m components.tools.state_rename state.json "
                f"{' '.join(pairs)} && pulumi stack import --file state.json"
            )
            lines.append(
                f"host {x} is renamed {y} on the same machine ({machine}): `pulumi up` would create {y}'s resources "
                f"before deleting {x}'s and fail on the names they share there (node-exporter's container, the "
                f"stack's network). Keep the name {x}, or rename them in Pulumi's state first, then `pulumi up` "
                f"(which replaces the services on the host: their host trigger names it): {command}"
            )
    return lines


def _kept_line(k: Kept) -> str:
    return (
        f"{k.name}: keeps {k.key} {_text(k.kept)} (ignore_changes), but only while Pulumi's state has it: after "
        f"`pulumi destroy` the next `pulumi up` makes {_text(k.wanted)}"
        + (
            " beside the old one, an empty cache. To keep the old one for good, set the stack's cache_volume "
            f"to {_text(k.kept)}"
            if k.key == "name" and k.type.endswith(":Volume")
            else ""
        )
    )


def _shown_options(options: dict[str, Any]) -> dict[str, Any]:
    """The options a reviewer compares: what the program set (dependencies by input are the engine's view)."""
    return {k: v for k, v in options.items() if k not in ("dependencies", "property_dependencies", "secret_digests")}


def _is_run(r: Resource | None) -> bool:
    return r is not None and r.type.startswith("command:") and bool(r.inputs.get("triggers"))


def _outage_line(
    o: Outage, steps: list[Step], resources: dict[str, Resource], new: Plan, created_runs: frozenset[str]
) -> str:
    r = resources[o.name]
    runs = [n for n in o.during if _is_run(resources.get(n))]
    if o.up_at >= len(steps):
        if not any(x.name == o.name for x in new.resources):
            return f"{o.name}: removed from the stack at step {o.down_at + 1}"
        return f"{o.name}: deleted at step {o.down_at + 1} and not created again: down until someone acts"
    span = f"{o.name}: down from step {o.down_at + 1} to step {o.up_at + 1}"
    if runs:
        return span + f", and {', '.join(runs)} runs in between: down for the whole download, then the load"
    return span + ": " + _downtime_of(r, new, created_runs)


# --------------------------------------------------------------------------- the PR comment


def _mermaid(plan: Plan) -> list[str]:
    def node(name: str) -> str:
        return name.replace("-", "_")

    lines = ["```mermaid", "flowchart LR"]
    for r in plan.resources:
        label = r.type.rsplit(":", 1)[-1]
        shape = (
            f'(["{r.name}<br/><small>{label}</small>"])' if not r.custom else f'["{r.name}<br/><small>{label}</small>"]'
        )
        lines.append(f"  {node(r.name)}{shape}")
    for r in plan.resources:
        if r.parent:
            lines.append(f"  {node(r.parent)} --- {node(r.name)}")
        for dep in r.options.get("depends_on", []):
            lines.append(f"  {node(dep)} -. before .-> {node(r.name)}")
    lines.append("```")
    return lines


# What the pull-request comment shows of a container, in the renderer's (compose's) words.
CELL_KEYS = ("container_name", "devices", "ports", "networks", "shm_size", "command")


def _settings_cell(r: PlannedResource, images: dict[str, str]) -> str:
    i = r.inputs
    if r.type.endswith(":Container") or r.inputs.get("mustRun") is False:
        svc = container_settings(r, images)
        parts = []
        for key in CELL_KEYS:
            value = svc.get(key)
            if value:
                shown = " ".join(value) if key == "command" else ", ".join(value) if isinstance(value, list) else value
                parts.append(f"{key} `{shown}`")
        return "<br/>".join(parts)
    if r.type.endswith(":RemoteImage"):
        return f"`{i.get('name')}`"
    if r.type.endswith(":Volume"):
        return f"`{i.get('name')}` (kept)" if r.options.get("retain_on_delete") else f"`{i.get('name')}`"
    if r.type.startswith("pulumi:providers:"):
        return f"`{i.get('host')}`"
    return ""


def _capacity_table(c: dict[str, Any], before: dict[str, Any] | None) -> list[str]:
    rows = [
        ("GPU memory (GiB)", "gpu_memory_gib"),
        ("usable (GiB)", "usable_gib"),
        ("weights per GPU (GiB)", "weights_gib_per_gpu"),
        ("runtime reserve per GPU (GiB)", "reserve_gib_per_gpu"),
        ("KV cache per GPU (GiB)", "kv_cache_gib_per_gpu"),
        ("KV cache (tokens)", "kv_cache_tokens"),
        ("max_model_len", "max_model_len"),
        ("requests at max_model_len", "max_concurrency"),
        ("fits", "fits"),
    ]
    head = "| | before | after |\n|---|---|---|" if before else "| | |\n|---|---|"
    lines = [head]
    for label, key in rows:
        if before:
            old, new = before.get(key), c.get(key)
            mark = " **(changed)**" if old != new else ""
            lines.append(f"| {label} | {old} | {new}{mark} |")
        else:
            lines.append(f"| {label} | {c.get(key)} |")
    return lines


def render_markdown(plan: Plan, capacity_bars: list[str], change: Diff | None = None) -> str:
    out = [f"### rocm-inference plan: `{plan.stack}` ({plan.source})", ""]
    if change is not None:
        if change.old_missing:
            out += [f"Against `{change.ref}`: {change.old_missing}.", ""]
        elif not change.changes:
            out += [f"No change against `{change.ref}`.", ""]
        else:
            counts = {k: sum(c.kind == k for c in change.changes) for k in ("create", "update", "replace", "delete")}
            summary = ", ".join(f"{n} to {k}" for k, n in counts.items() if n)
            out += [
                f"**Changes against `{change.ref}`:** {summary}",
                "",
                "| resource | change | settings |",
                "|---|---|---|",
            ]
            for c in change.changes:
                kind = f"**{c.kind}**" if c.kind in ("replace", "delete") else c.kind
                cell = "<br/>".join(f"`{s}`" for s in c.settings)
                if c.note:
                    cell += ("<br/>" if cell else "") + f"⚠️ {c.note}"
                out.append(f"| `{c.name}` | {kind} | {cell} |")
            out.append("")
            if change.steps:
                out += [
                    "**What `pulumi up` will do, in order** (the engine's rules: components/planning/steps.py; steps "
                    "that do not depend on each other run at the same time)",
                    "",
                ]
                out += [f"{n}. `{step}`" for n, step in enumerate(change.steps, 1)]
                out.append("")
            if change.outages:
                out += ["**Serving downtime**", "", *(f"- {o}" for o in change.outages), ""]
            if change.state:
                out += ["**What the state records**", "", *(f"- {r}" for r in change.state), ""]
            if change.refused:
                out += ["**`pulumi up` would fail**", "", *(f"- {r}" for r in change.refused), ""]
            if change.kept:
                out += ["**Kept by Pulumi's state only**", "", *(f"- {k}" for k in change.kept), ""]
            if change.speed:
                out += ["**Speed** (the plan's estimates before -> after)", "", *(f"- {s}" for s in change.speed), ""]
    if plan.servers:
        out += ["**GPU memory plan**", "", "```", *capacity_bars, "```", ""]
        before = (change.old_capacity or {}) if change else {}
        for name, sp in plan.servers.items():
            if sp.capacity is None:
                continue
            if len(plan.servers) > 1:
                out += [f"Server `{name}` on host `{sp.host}`:", ""]
            out += [*_capacity_table(sp.capacity.as_json(), before.get(name) if change else None), ""]
    for name, lp in plan.llamacpp.items():
        out += [f"**llama.cpp server `{name}` on host `{lp.host}`**", "", "```", *lp.lines(), "```", ""]
    if plan.warnings:
        out += ["**Warnings**", "", *(f"- {w}" for w in plan.warnings), ""]
    out += [
        f"<details><summary>Resources ({len(plan.resources)})</summary>",
        "",
        "| resource | type | parent | settings |",
    ]
    out.append("|---|---|---|---|")
    images = image_names(plan)
    runs = {r.name: r for r in one_shot_runs(plan)}  # a one-shot run shows as the container it runs
    for r in plan.resources:
        out.append(f"| `{r.name}` | `{r.type}` | {r.parent or ''} | {_settings_cell(runs.get(r.name, r), images)} |")
    out += ["", *_mermaid(plan), "", "</details>", ""]
    return "\n".join(out)
