"""`python -m components.plan STACK`: what `pulumi up` would create, without a Pulumi engine.

The real program (components.program) runs under the Pulumi SDK's mocks, with the stack file's
config fed through `set_all_config`; every resource it registers is recorded with its inputs
(secrets masked) and its resource options. Exit codes: 0 ok, 1 invalid stack, 2 usage.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pulumi
import yaml

from components.planning.deployment import build_deployment
from components.planning.performance import Performance, Rate
from components.planning.urns import duplicate_message, duplicates
from components.program import deploy_plan
from components.settings import LoadedStack, StackConfigError, StackFile, read_stack_file
from components.settings.pulumi_config import Secrets, load_from_pulumi
from components.settings.stackfile import PROJECT_ROOT, stack_names, stack_path
from components.tools.mocks import PROJECT, config_map, run_program
from components.tools.planned import Plan, PlannedResource, ServerPlan
from components.tools.render import container_settings, image_names, is_one_shot_run, one_shot_runs, settings_lines

if TYPE_CHECKING:
    from components.tools.review import Diff


def load_stack(stack_file: StackFile) -> tuple[LoadedStack, Secrets]:
    """The stack file validated exactly as `pulumi up` would (its secrets as placeholders). Raises StackConfigError."""
    config, secret_keys = config_map(stack_file)
    pulumi.runtime.set_all_config(config, secret_keys)
    try:
        return load_from_pulumi(stack_file.path, (), stack_file)
    finally:
        pulumi.runtime.set_all_config({}, [])


def plan_stack(stack_file: StackFile) -> Plan:
    """Validate the stack file exactly as `pulumi up` would, then record what it deploys. Raises StackConfigError."""
    config, secret_keys = config_map(stack_file)
    loaded, secrets = load_stack(stack_file)
    # One plan: the resources below are made from it, and its memory plans and speed bands are shown beside them.
    d = build_deployment(loaded.settings, PROJECT, stack_file.stack, tuple(loaded.warnings))
    resources, outputs = run_program(stack_file.stack, config, secret_keys, lambda: deploy_plan(d, secrets))
    dups = duplicates(r.urn for r in resources)
    if dups:
        # The mocks accept it; the engine stops the preview at the second registration.
        raise StackConfigError(
            [
                f"{stack_file.source}: the program registers a resource twice, which `pulumi preview` refuses: {duplicate_message(dups)}"
            ]
        )
    s = loaded.settings
    servers = {
        name: ServerPlan(
            s.servers[name].host or "",
            s.servers[name].gpus,
            s.hosts[s.servers[name].host or ""].gpu,
            a.capacity,
            a.performance,
            tuple(a.advice),
        )
        for name, a in d.assessments.items()
    }
    gateway = dict(d.gateway_config) if d.gateway_config is not None else None
    prometheus = dict(d.monitoring.prometheus_config) if d.monitoring is not None else None
    return Plan(
        stack_file.stack,
        stack_file.source,
        resources,
        outputs,
        list(d.warnings),
        servers,
        gateway,
        prometheus,
        dict(d.llamacpp_plans),
    )


def render_capacities(plan: Plan) -> list[str]:
    """Each server's GPU plan, grouped by host."""
    lines: list[str] = []
    hosts = sorted({sp.host for sp in plan.servers.values()})
    for host in hosts:
        for name, sp in plan.servers.items():
            if sp.host != host:
                continue
            if lines:
                lines.append("")
            title = "" if set(plan.servers) == {"vllm"} else f"server {name} on host {host}: "
            lines += render_capacity(sp, title)
    return lines


def render_capacity(sp: ServerPlan, title: str = "", width: int = 60) -> list[str]:
    """One bar per GPU: weights, runtime reserve, KV cache, and the headroom gpu_memory_utilization leaves."""
    c = sp.capacity
    if c is None:
        return []
    parts = [
        ("█", "weights", c.weights_gib_per_gpu),
        ("▓", "runtime reserve", c.reserve_gib_per_gpu),
        ("░", "KV cache", c.kv_cache_gib_per_gpu),
        ("·", "headroom", c.gpu_memory_gib - c.usable_gib),
    ]
    cells, used = "", 0
    for n, (char, _, gib) in enumerate(parts):
        count = width - used if n == len(parts) - 1 else round(gib / c.gpu_memory_gib * width)
        count = max(0, min(count, width - used))
        cells += char * count
        used += count
    lines = [
        f"{title}GPU memory plan ({sp.gpu_name}, {c.gpu_memory_gib:.2f} GiB per GPU, {c.usable_gib:.2f} GiB usable, "
        f"tensor parallel {c.tensor_parallel_size})"
    ]
    lines += [f"  GPU {i} |{cells}|" for i in sp.gpus]
    lines.append("  " + "   ".join(f"{char} {label} {gib:.2f} GiB" for char, label, gib in parts))
    lines.append(
        f"  KV cache: {c.kv_cache_tokens:,} tokens ({c.kv_bytes_per_token_per_gpu / 1024:.0f} KiB per token per GPU"
        + (
            f", and {c.state_gib_per_sequence_per_gpu:.3f} GiB of recurrent state per sequence per GPU in its "
            f"{c.linear_layers} linear-attention layers, whatever its length"
            if c.linear_layers
            else ""
        )
        + f"); {c.max_concurrency:.2f} requests of max_model_len {c.max_model_len:,} at once; "
        + ("fit not judged" if c.unmodelled else "fits" if c.fits else "DOES NOT FIT")
    )
    lines.append(f"  Model: {c.modelled}" + (f"; not modelled: {c.unmodelled}" if c.unmodelled else ""))
    if sp.performance is not None:
        lines.append("  " + render_performance(sp.performance))
        lines += [f"  Advice: {a}" for a in sp.advice]
    return lines


def _band(r: Rate, unit: str = "") -> str:
    return f"{r.estimate:.3g}{unit} ({r.low:.3g}-{r.high:.3g}{unit})"


def render_performance(p: Performance) -> str:
    """One line: the speed bands at the workload (components/planning/performance.py)."""
    w = p.workload
    queue = f", {p.queued} of them queue" if p.queued else ""
    cached = f" ({w.cached_tokens:,} of it cached)" if w.cached_tokens else ""
    source = f"calibrated on the box {p.calibrated}" if p.calibrated else "fitted on published gfx906 runs"
    return (
        f"Speed ({source}) at {w.concurrency} requests of {w.prompt_tokens:,} in{cached} / {w.output_tokens:,} out{queue}: "
        f"decode {_band(p.decode_tokens_per_s)} tokens/s per request (roofline {p.decode_tokens_per_s.bound:.3g}), "
        f"output {_band(p.output_tokens_per_s)} tokens/s together, prefill {_band(p.prefill_tokens_per_s)} tokens/s, "
        f"TTFT {_band(p.ttft_s, ' s')}, longest prefill {_band(p.longest_prefill_s, ' s')}"
    )


# --------------------------------------------------------------------------- text view


def _container_lines(r: PlannedResource, images: dict[str, str]) -> list[str]:
    i = r.inputs
    if i.get("mustRun") is False:
        wait = (
            "runs once, to completion, as `docker run --rm` where the host's Docker is: `pulumi up` waits for its "
            "exit and stops on a failure, which leaves nothing in state, so the next `pulumi up` tries again"
        )
    else:
        wait = f"wait: {str(bool(i.get('wait'))).lower()} (up to {i.get('waitTimeout')} s for the healthcheck)"
    return settings_lines(container_settings(r, images), wait)


def _flags(r: PlannedResource) -> str:
    o = r.options
    flags = [k for k in ("protect", "retain_on_delete", "delete_before_replace") if o.get(k)]
    if o.get("ignore_changes"):
        flags.append("ignores changes to " + ", ".join(o["ignore_changes"]))
    if o.get("depends_on"):
        flags.append("depends on " + ", ".join(o["depends_on"]))
    if o.get("custom_timeouts"):
        flags.append("timeouts " + " ".join(f"{k} {v}" for k, v in o["custom_timeouts"].items()))
    return f"  [{'; '.join(flags)}]" if flags else ""


def _summary(r: PlannedResource) -> str:
    i = r.inputs
    if r.type.startswith("pulumi:providers:"):
        return f"  host={i.get('host')}"
    if r.type.endswith(":RemoteImage"):
        return f"  {i.get('name')}"
    if r.type.endswith(":Volume"):
        return f"  name={i.get('name')}"
    if r.type.startswith("command:") and not is_one_shot_run(r):
        return f"  runs components/planning/preflight.sh with {i.get('create', '').removesuffix(' sh -s')}"
    return ""


def render_text(plan: Plan) -> str:
    images = image_names(plan)
    runs = {d.name: d for d in one_shot_runs(plan)}
    out = [f"Plan for stack {plan.stack} ({plan.source}): {len(plan.resources)} resources", ""]
    children: dict[str | None, list[PlannedResource]] = {}
    for r in plan.resources:
        children.setdefault(r.parent, []).append(r)

    def walk(parent: str | None, indent: str) -> None:
        kids = children.get(parent, [])
        for n, r in enumerate(kids):
            last = n == len(kids) - 1
            branch = "" if parent is None else ("└─ " if last else "├─ ")
            out.append(f"{indent}{branch}{r.name} ({r.type}){_summary(r)}{_flags(r)}")
            deeper = indent + ("" if parent is None else ("   " if last else "│  "))
            if r.type.endswith(":Container"):
                out.extend(f"{deeper}    {line}" for line in _container_lines(r, images))
            if r.name in runs:
                out.extend(f"{deeper}    {line}" for line in _container_lines(runs[r.name], images))
            walk(r.name, deeper)

    walk(None, "")
    if plan.servers:
        out += ["", *render_capacities(plan)]
    for name, lp in plan.llamacpp.items():
        out += ["", f"server {name} on host {lp.host}: " + lp.lines()[0], *lp.lines()[1:]]
    out += ["", "Outputs:"]
    out += [f"  {k}: {v}" for k, v in sorted(plan.outputs.items())]
    if plan.warnings:
        out += ["", "Warnings:"] + [f"  {w}" for w in plan.warnings]
    return "\n".join(out)


# --------------------------------------------------------------------------- command line


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m components.plan", description=__doc__.splitlines()[0])
    parser.add_argument("stack", nargs="?", help="stack name: plans Pulumi.STACK.yaml")
    parser.add_argument("--file", help="plan this stack file instead")
    parser.add_argument("--format", choices=["text", "json", "markdown", "compose", "gateway"], default="text")
    parser.add_argument("--against", metavar="REF", help="show what changes against the same stack at this git ref")
    parser.add_argument(
        "--against-state",
        metavar="FILE",
        help="show what changes against an exported state (pulumi stack export > FILE): what the engine recorded",
    )
    parser.add_argument("--host", help="with --format compose: the compose file of this host")
    parser.add_argument(
        "--output", metavar="DIR", help="with --format compose: write one compose file per host into DIR"
    )
    args = parser.parse_args(argv)
    stacks = stack_names()
    if not args.stack and not args.file:
        parser.error(f"give a stack name or --file PATH; the stacks here: {', '.join(stacks)}")
    if args.stack and args.file:
        parser.error(
            f"give a stack name or --file, not both: {args.stack} names Pulumi.{args.stack}.yaml, not {args.file}"
        )
    if args.stack and args.stack not in stacks:
        parser.error(
            f"no stack {args.stack!r} here (no Pulumi.{args.stack}.yaml); the stacks here: {', '.join(stacks)}"
        )
    if (args.host or args.output) and args.format != "compose":
        parser.error("--host and --output go with --format compose")
    path = Path(args.file) if args.file else stack_path(args.stack)
    try:
        plan = plan_stack(read_stack_file(path))
    except StackConfigError as exc:
        print("\n".join(exc.lines), file=sys.stderr)
        return 1
    if args.format == "compose":
        return _compose(plan, args.host, args.output, parser)
    if args.format == "gateway":
        if plan.gateway_config is None:
            print(f"plan: stack {plan.stack} has no rocm-inference:gateway", file=sys.stderr)
            return 1
        print(render_gateway(plan), end="")
        return 0
    if args.against and args.against_state:
        parser.error("give --against REF or --against-state FILE, not both")
    change = None
    if args.against_state:
        from components.tools.review import diff_state

        try:
            export = json.loads(Path(args.against_state).read_text())
            change = diff_state(export, plan, args.against_state)
        except (OSError, ValueError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else str(exc)
            kind = "is not JSON" if isinstance(exc, json.JSONDecodeError) else ""
            print(f"plan: --against-state {args.against_state}: {kind or reason}", file=sys.stderr)
            return 2
    if args.against:
        # The review and compose views load only when asked for: the plain plan stays fast.
        from components.tools.review import RefError, diff, plan_at_ref

        try:
            change = diff(plan_at_ref(args.against, plan.stack, PROJECT_ROOT), plan, args.against)
        except RefError as exc:
            print(f"plan: {exc}", file=sys.stderr)
            return 2
    if args.format == "json":
        doc = plan.as_json()
        if change is not None:
            doc["diff"] = change.as_json()
        print(json.dumps(doc, indent=2))
    elif args.format == "markdown":
        from components.tools.review import render_markdown

        print(render_markdown(plan, render_capacities(plan), change))
    else:
        print(render_text(plan))
        if change is not None:
            print(render_diff_text(change))
    return 0


def _compose(plan: Plan, host: str | None, output: str | None, parser: argparse.ArgumentParser) -> int:
    from components.tools.compose import hosts_of, render_compose

    hosts = hosts_of(plan)
    if host is not None and host not in hosts:
        parser.error(f"no host {host!r} in stack {plan.stack}; its hosts: {', '.join(hosts)}")
    if output is not None:
        out = Path(output)
        try:
            out.mkdir(parents=True, exist_ok=True)
            for name in hosts:
                (out / f"compose.{name}.yaml").write_text(render_compose(plan, name))
                print(f"wrote {out / f'compose.{name}.yaml'}", file=sys.stderr)
        except OSError as exc:
            print(f"plan: argument --output: cannot write into {output}: {exc.strerror}", file=sys.stderr)
            return 1
        return 0
    if host is None and len(hosts) > 1:
        parser.error(
            f"stack {plan.stack} has hosts {', '.join(hosts)}: give --host NAME, or --output DIR for one file each"
        )
    print(render_compose(plan, host), end="")
    return 0


def render_gateway(plan: Plan) -> str:
    """The gateway's config.yaml as the container gets it (it holds no secret: keys are os.environ/NAME)."""
    header = (
        f"# LiteLLM config of stack {plan.stack}'s gateway: what the container reads at /app/config.yaml.\n"
        "# Keys are not in it: os.environ/NAME names the variable that carries each (a Pulumi secret).\n"
    )
    return header + yaml.safe_dump(plan.gateway_config, sort_keys=False, width=200)


def render_diff_text(change: Diff) -> str:
    lines = ["", f"Changes against {change.ref}:"]
    if change.old_missing:
        lines.append(f"  {change.old_missing}")
    elif not change.changes:
        lines.append("  none")
    for c in change.changes:
        lines.append(f"  {c.kind:8} {c.name} ({c.type})")
        lines += [f"           {s}" for s in c.settings]
        if c.note:
            lines.append(f"           ! {c.note}")
    if change.state:
        lines += ["", "What the state records:"] + [f"  {r}" for r in change.state]
    if change.refused:
        lines += ["", "`pulumi up` would fail:"] + [f"  {r}" for r in change.refused]
    if change.steps:
        lines += [
            "",
            "What `pulumi up` will do, in order (the engine's rules: components/planning/steps.py; steps that do not",
            "depend on each other run at the same time):",
        ]
        lines += [f"  {n:2}. {step}" for n, step in enumerate(change.steps, 1)]
    if change.outages:
        lines += ["", "Serving downtime:"] + [f"  {o}" for o in change.outages]
    if change.kept:
        lines += ["", "Kept by Pulumi's state only:"] + [f"  {k}" for k in change.kept]
    if change.speed:
        lines += ["", "Speed (the plan's estimates before -> after):"] + [f"  {s}" for s in change.speed]
    return "\n".join(lines)


def cli() -> None:
    """The command line: `python -m components.plan`."""
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `... | head` ends quietly
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # The SDK's mock monitor leaves per-thread event loops that, finalized at interpreter exit, can
    # print "Exception ignored in BaseEventLoop.__del__": nothing is left to clean up, so end here.
    os._exit(code)


if __name__ == "__main__":
    cli()
