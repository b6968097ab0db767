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

from components.settings.stackfile import stack_path
from components.tools.planned import Plan, PlannedResource
from components.tools.render import container_settings, image_names

# pulumi-docker's Container is bridged from the Terraform docker provider, where nearly every
# argument forces a new container; these few are applied in place (or only steer the provider).
IN_PLACE = {
    "Container": {
        "restart",
        "maxRetryCount",
        "wait",
        "waitTimeout",
        "destroyGraceSeconds",
        "mustRun",
        "start",
        "logs",
        "rm",
    },
    "Command": set(),
}
# Restart time of a replaced vLLM container: engine start (RCCL, profiling, graphs) plus reading
# the weights from the cache volume. From a recorded gfx906 log (nlzy/vllm-gfx906 issue #44:
# a 70B checkpoint's shards load over about four minutes); an estimate, shown as one.
ENGINE_START_S = 120
LOAD_GIB_PER_S = 0.15
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

    def as_json(self) -> dict[str, Any]:
        return {
            "against": self.ref,
            "changes": [c.as_json() for c in self.changes],
            "capacity_before": self.old_capacity,
            "note": self.old_missing,
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


def downtime(holds_gpus: bool, capacity: dict[str, Any] | None) -> str:
    """How long a replaced container's service is down: a GPU server reloads its weights."""
    if holds_gpus and capacity:
        weights = capacity["weights_gib_per_gpu"] * capacity.get("tensor_parallel_size", 1)
        seconds = ENGINE_START_S + weights / LOAD_GIB_PER_S
        return (
            f"the OpenAI endpoint is down about {round(seconds / 60)} min while {weights:.0f} GiB of weights load "
            "(estimate); a new model is downloaded before, while the old server keeps serving"
        )
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


def diff(old: dict[str, Any] | str, new: Plan, ref: str) -> Diff:
    new_by = {(r.type, r.name): r for r in new.resources}
    if isinstance(old, str):
        return Diff(ref, [Change(r.name, r.type, "create") for r in new.resources], None, old)
    old_by = {(r["type"], r["name"]): r for r in old["resources"]}
    changes: list[Change] = []
    for key in [*old_by, *(k for k in new_by if k not in old_by)]:
        typ, name = key
        if key not in new_by:
            changes.append(Change(name, typ, "delete"))
            continue
        if key not in old_by:
            changes.append(Change(name, typ, "create"))
            continue
        before, after = old_by[key], new_by[key]
        settings = _setting_changes(before["inputs"], after.inputs)
        options = _setting_changes(before.get("options", {}), after.options)
        if not settings and not options:
            continue
        kind_name = typ.rsplit(":", 1)[-1]
        replaces = any(k not in IN_PLACE.get(kind_name, set()) for k, _ in settings) and after.custom
        change = Change(name, typ, "replace" if replaces else "update", [f"{k}: {v}" for k, v in settings + options])
        if replaces and kind_name == "Container":
            capacity = new.capacity_of(after.parent or "")
            change.note = downtime(bool(after.inputs.get("devices")), capacity.as_json() if capacity else None)
        if replaces and kind_name == "Volume":
            change.note = "the volume is protected: Pulumi refuses to replace it (the model cache would be lost)"
        if replaces and kind_name == "Command":
            change.note = "the host preflight check runs again"
        changes.append(change)
    return Diff(ref, changes, capacities(old))


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
    if r.type.endswith(":Container"):
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
        return f"`{i.get('name')}` (protected)" if r.options.get("protect") else f"`{i.get('name')}`"
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
    if plan.servers:
        out += ["**GPU memory plan**", "", "```", *capacity_bars, "```", ""]
        before = (change.old_capacity or {}) if change else {}
        for name, sp in plan.servers.items():
            if sp.capacity is None:
                continue
            if len(plan.servers) > 1:
                out += [f"Server `{name}` on host `{sp.host}`:", ""]
            out += [*_capacity_table(sp.capacity.as_json(), before.get(name) if change else None), ""]
    if plan.warnings:
        out += ["**Warnings**", "", *(f"- {w}" for w in plan.warnings), ""]
    out += [
        f"<details><summary>Resources ({len(plan.resources)})</summary>",
        "",
        "| resource | type | parent | settings |",
    ]
    out.append("|---|---|---|---|")
    images = image_names(plan)
    for r in plan.resources:
        out.append(f"| `{r.name}` | `{r.type}` | {r.parent or ''} | {_settings_cell(r, images)} |")
    out += ["", *_mermaid(plan), "", "</details>", ""]
    return "\n".join(out)
