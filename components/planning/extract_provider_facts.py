"""Extract the provider facts the project relies on from checkouts of the providers' Go source.

    python -m components.planning.extract_provider_facts --docker PATH --random PATH \
        [--command PATH] [--pulumi-docker PATH] > components/planning/provider_facts.extracted.json

Standard library only, and mechanical: it reads Go source as text (a brace matcher that skips
strings and comments, no Go toolchain) and records, per Terraform resource, each top-level schema
attribute's `ForceNew` / `RequiresReplace`, `Sensitive`, `Computed` with its file and line; which
attributes the resource's Update function (and the package functions it calls, except Create and
Read) names in a string literal; and which Read sets with `d.Set`. For pulumi-command it records
the input fields tagged `provider:"replaceOnChanges"` or `provider:"secret"`; for pulumi-docker the
per-resource `DeleteBeforeReplace` and field renames. provider_facts.py is tested against the output.

A checkout that is a git work tree is described by `git rev-parse` / `git describe`; for one that is
not (a `git archive` export), pass `--ref NAME=repo@version(commit)` to say what it is.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The resources the project uses, by Terraform name, in the provider that defines them.
DOCKER_RESOURCES = ("docker_container", "docker_image", "docker_volume", "docker_network")
RANDOM_RESOURCES = ("random_password",)
DOCKER_PACKAGE = "internal/provider"
RANDOM_PACKAGE = "internal/provider"
COMMAND_PACKAGE = "provider/pkg/provider"
OPENERS = {"{": "}", "(": ")", "[": "]"}


# --- a Go source file as text ------------------------------------------------------------------


def blank_comments(text: str) -> str:
    """text with each comment's characters but its newlines made spaces: offsets and lines stay put,
    and code commented out (`// d.GetOk("ulimit")`) no longer counts."""
    out = []
    i = last = 0
    while i < len(text):
        j = _skip_literal(text, i)
        if j == i:
            i += 1
            continue
        if text[i] == "/":
            out.append(text[last:i])
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            last = j
        i = j
    out.append(text[last:])
    return "".join(out)


@dataclass(frozen=True)
class GoFile:
    """A Go file's text with its comments blanked (see blank_comments)."""

    path: Path
    rel: str
    text: str

    def line(self, offset: int) -> int:
        return self.text.count("\n", 0, offset) + 1


def _skip_literal(text: str, i: int) -> int:
    """The offset just past the string, rune or comment starting at i (i itself if none starts there)."""
    c = text[i]
    if c == "/" and text.startswith("//", i):
        end = text.find("\n", i)
        return len(text) if end < 0 else end
    if c == "/" and text.startswith("/*", i):
        return text.index("*/", i + 2) + 2
    if c == "`":
        return text.index("`", i + 1) + 1
    if c in "\"'":
        j = i + 1
        while text[j] != c:
            j += 2 if text[j] == "\\" else 1
        return j + 1
    return i


def matching(text: str, open_at: int) -> int:
    """The offset of the bracket that closes the one at open_at."""
    stack = [OPENERS[text[open_at]]]
    i = open_at + 1
    while stack:
        j = _skip_literal(text, i)
        if j != i:
            i = j
            continue
        c = text[i]
        if c in OPENERS:
            stack.append(OPENERS[c])
        elif c == stack[-1]:
            stack.pop()
        i += 1
    return i - 1


def elements(text: str, open_at: int) -> Iterator[tuple[int, int]]:
    """(start, end) of each comma-separated element of the composite literal whose `{` is at open_at."""
    close = matching(text, open_at)
    i = start = open_at + 1
    while i < close:
        j = _skip_literal(text, i)
        if j != i:
            i = j
            continue
        c = text[i]
        if c in OPENERS:
            i = matching(text, i) + 1
            continue
        if c == ",":
            yield start, i
            start = i + 1
        i += 1
    if text[start:close].strip() and _code(text[start:close]):
        yield start, close


def _code(s: str) -> str:
    """s without its comments and surrounding space."""
    return re.sub(r"//[^\n]*|/\*.*?\*/", "", s, flags=re.S).strip()


KEY = re.compile(r'\s*(?:"(?P<s>[^"]+)"|(?P<i>[A-Za-z_][\w.]*))\s*:(?!=)')


def keyed(text: str, open_at: int) -> Iterator[tuple[str, int, int, int]]:
    """(key, key offset, value start, value end) of each `key: value` element of a composite literal."""
    for start, end in elements(text, open_at):
        body = text[start:end]
        # Step over leading comments, which may name keys of their own.
        lead = 0
        while True:
            m = re.match(r"\s*(//[^\n]*\n|/\*.*?\*/)", body[lead:], flags=re.S)
            if not m:
                break
            lead += m.end()
        m = KEY.match(body, lead)
        if m:
            key = m.group("s") or m.group("i")
            key_at = start + m.start("s" if m.group("s") else "i")
            yield key, key_at, start + m.end(), end


def first_brace(text: str, start: int, end: int) -> int | None:
    """The offset of the first `{` at the top level of text[start:end] (a composite literal's body)."""
    i = start
    while i < end:
        j = _skip_literal(text, i)
        if j != i:
            i = j
            continue
        if text[i] == "{":
            return i
        if text[i] in "([":
            i = matching(text, i) + 1
            continue
        i += 1
    return None


class GoPackage:
    """The non-test .go files of one package directory, and where each top-level func is."""

    def __init__(self, root: Path, package: str) -> None:
        self.root = root
        self.files = [
            GoFile(p, str(p.relative_to(root)), blank_comments(p.read_text()))
            for p in sorted((root / package).glob("*.go"))
            if not p.name.endswith("_test.go")
        ]
        # Top-level funcs and methods, by name: (file, offset of the body's `{`).
        self.funcs: dict[str, tuple[GoFile, int]] = {}
        for f in self.files:
            for m in re.finditer(r"^func (?:\([^)]*\) )?(\w+)(?:\[[^\]]*\])?\(", f.text, flags=re.M):
                brace = f.text.find("{", matching(f.text, m.end() - 1))
                # The result list may hold braces (`interface{}`): the body opens the line's last `{`.
                eol = f.text.find("\n", brace)
                brace = f.text.rfind("{", brace, eol)
                self.funcs.setdefault(m.group(1), (f, brace))

    def body(self, func: str) -> tuple[GoFile, int, int]:
        f, brace = self.funcs[func]
        return f, brace, matching(f.text, brace)

    def closure(self, root: str, exclude: frozenset[str]) -> list[str]:
        """root and every package func it passes the ResourceData `d` to, transitively, except those in exclude."""
        seen = [root]
        todo = [root]
        while todo:
            f, start, end = self.body(todo.pop())
            for m in re.finditer(r"\b(\w+)\(", f.text[start:end]):
                name = m.group(1)
                if name not in self.funcs or name in seen or name in exclude:
                    continue
                args = f.text[start + m.end() - 1 : matching(f.text, start + m.end() - 1)]
                if re.search(r"\bd\b", args):
                    seen.append(name)
                    todo.append(name)
        return seen


def _strings(text: str) -> Iterator[tuple[str, int]]:
    for m in re.finditer(r'"((?:[^"\\\n]|\\.)*)"', text):
        yield m.group(1), m.start()


def _where(f: GoFile, offset: int) -> str:
    return f"{f.rel}#L{f.line(offset)}"


# --- Terraform plugin SDK v2 resources (docker) -------------------------------------------------


def sdk_schema(f: GoFile, open_at: int) -> dict[str, Any]:
    """The attributes of a `map[string]*schema.Schema{...}` literal, with nested inline schemas."""
    out: dict[str, Any] = {}
    for name, key_at, vstart, vend in keyed(f.text, open_at):
        brace = first_brace(f.text, vstart, vend)
        if brace is None:
            out[name] = {"line": f.line(key_at), "schema": _code(f.text[vstart:vend])}
            continue
        attr: dict[str, Any] = {"line": f.line(key_at)}
        flags = {"ForceNew": "force_new", "Sensitive": "sensitive", "Computed": "computed"}
        for prop, pat, pstart, pend in keyed(f.text, brace):
            value = _code(f.text[pstart:pend])
            if prop in flags:
                attr[flags[prop]] = value == "true"
                attr[flags[prop] + "_line"] = f.line(pat)
            elif prop in ("Type", "MaxItems", "Optional", "Required"):
                attr[prop.lower()] = value
            elif prop == "Elem":
                inner = re.search(r"Schema:\s*map\[string\]\*schema\.Schema\{", f.text[pstart:pend])
                if inner:
                    attr["nested"] = sdk_schema(f, pstart + inner.end() - 1)
                else:
                    attr["elem"] = value
        for flag in flags.values():
            attr.setdefault(flag, False)
        out[name] = attr
    return out


def sdk_resource(pkg: GoPackage, constructor: str) -> dict[str, Any]:
    f, start, end = pkg.body(constructor)
    lit = re.search(r"&schema\.Resource\{", f.text[start:end])
    if lit is None:
        raise SystemExit(f"{constructor}: no &schema.Resource literal")
    open_at = start + lit.end() - 1
    entries = {k: (vs, ve) for k, _, vs, ve in keyed(f.text, open_at)}
    vs, ve = entries["Schema"]
    schema_brace = first_brace(f.text, vs, ve)
    assert schema_brace is not None
    attrs = sdk_schema(f, schema_brace)
    funcs = {k: _code(f.text[vs:ve]) for k, (vs, ve) in entries.items() if k.endswith("Context")}
    create, read, update = funcs.get("CreateContext"), funcs.get("ReadContext"), funcs.get("UpdateContext")
    out: dict[str, Any] = {
        "file": f.rel,
        "constructor": constructor,
        "create": create,
        "read": read,
        "update": update,
        "attributes": attrs,
    }
    not_update = frozenset(x for x in (create, read) if x)
    out["update_fields"] = _named(pkg, update, attrs, not_update) if update else {}
    out["update_closure"] = pkg.closure(update, not_update) if update else []
    not_read = frozenset(x for x in (create, update) if x)
    out["read_sets"] = _set_calls(pkg, read, attrs, not_read) if read else {}
    return out


# The ResourceData reads an update function decides by; d.Set is not among them (it changes only state).
D_READS = r"\bd\.(?:HasChange|HasChanges|GetChange|Get|GetOk|GetOkExists|GetRawConfig)\("


def _named(pkg: GoPackage, root: str, attrs: dict[str, Any], exclude: frozenset[str]) -> dict[str, str]:
    """Each top-level attribute the update function (or a func it passes `d` to) reads, with its first place.

    Read means: a string literal among the arguments of `d.HasChange(...)`, `d.Get(...)` and the like,
    or in a `[]string{...}` list (the update functions loop over one with `d.HasChange(attr)`). A path
    into an attribute (`cluster.availability`) counts for the attribute.
    """
    found: dict[str, str] = {}
    for func in pkg.closure(root, exclude):
        f, start, end = pkg.body(func)
        for m in re.finditer(D_READS + r"|\[\]string\{", f.text[start:end]):
            open_at = start + m.end() - 1
            for s, at in _strings(f.text[open_at : matching(f.text, open_at)]):
                top = s.split(".", 1)[0]
                if top in attrs and top not in found:
                    found[top] = _where(f, open_at + at)
    return dict(sorted(found.items()))


def _set_calls(pkg: GoPackage, root: str, attrs: dict[str, Any], exclude: frozenset[str]) -> dict[str, str]:
    """Each top-level attribute Read (or a func it calls) sets with `d.Set("x", ...)`, with its first place."""
    found: dict[str, str] = {}
    for func in pkg.closure(root, exclude):
        f, start, end = pkg.body(func)
        for m in re.finditer(r'\bd\.Set\(\s*"([\w.]+)"', f.text[start:end]):
            top = m.group(1).split(".", 1)[0]
            if top in attrs and top not in found:
                found[top] = _where(f, start + m.start())
    return dict(sorted(found.items()))


def sdk_resources_map(pkg: GoPackage) -> dict[str, str]:
    """TF resource name -> constructor func, from the provider's ResourcesMap."""
    for f in pkg.files:
        m = re.search(r"ResourcesMap:\s*map\[string\]\*schema\.Resource\{", f.text)
        if m:
            return {k: _code(f.text[vs:ve]).rstrip("()") for k, _, vs, ve in keyed(f.text, m.end() - 1)}
    raise SystemExit("no ResourcesMap")


def sdk_provider_config(pkg: GoPackage) -> dict[str, Any]:
    """The provider block's own schema: a ForceNew here would replace every resource of the provider."""
    for f in pkg.files:
        m = re.search(r"\bschema\.Provider\{", f.text)
        if m:
            for k, _, vs, ve in keyed(f.text, m.end() - 1):
                if k == "Schema":
                    brace = first_brace(f.text, vs, ve)
                    assert brace is not None
                    return {"file": f.rel, "attributes": sdk_schema(f, brace)}
    raise SystemExit("no schema.Provider")


# --- Terraform plugin framework resources (random) ----------------------------------------------


def framework_resource(pkg: GoPackage, type_suffix: str) -> dict[str, Any]:
    """A framework resource found by its Metadata's `+ "_<suffix>"`: its current Schema and its Update."""
    for f in pkg.files:
        # resource.MetadataRequest: a managed resource, not the ephemeral one of the same name.
        m = re.search(
            r"func \((\w+) \*(\w+)\) Metadata\([^)]*resource\.MetadataRequest[^)]*\)[^{]*\{[^}]*\"_"
            + type_suffix
            + '"',
            f.text,
        )
        if m:
            receiver = m.group(2)
            break
    else:
        raise SystemExit(f"no framework resource _{type_suffix}")
    sm = re.search(r"func \(\w+ \*" + receiver + r"\) Schema\(.*?\{\s*resp\.Schema = (\w+)\(\)", f.text, flags=re.S)
    if sm is None:
        raise SystemExit(f"{receiver}: Schema is not `resp.Schema = fn()`")
    sf, start, end = pkg.body(sm.group(1))
    am = re.search(r"Attributes:\s*map\[string\]schema\.Attribute\{", sf.text[start:end])
    assert am is not None
    attrs: dict[str, Any] = {}
    for name, key_at, vs, ve in keyed(sf.text, start + am.end() - 1):
        brace = first_brace(sf.text, vs, ve)
        assert brace is not None
        attr: dict[str, Any] = {"line": sf.line(key_at), "force_new": False, "sensitive": False, "computed": False}
        for prop, pat, ps, pe in keyed(sf.text, brace):
            value = _code(sf.text[ps:pe])
            if prop in ("Sensitive", "Computed"):
                attr[prop.lower()] = value == "true"
                attr[prop.lower() + "_line"] = sf.line(pat)
            elif prop == "PlanModifiers":
                rr = re.search(r"RequiresReplace\w*\(", sf.text[ps:pe])
                if rr:
                    attr["force_new"] = True
                    attr["force_new_line"] = sf.line(ps + rr.start())
                    attr["force_new_how"] = rr.group(0).rstrip("(")
        attrs[name] = attr
    uf, ustart, uend = _method(pkg, receiver, "Update")
    update_text = uf.text[ustart:uend]
    return {
        "file": sf.rel,
        "schema_func": sm.group(1),
        "attributes": attrs,
        "update": f"(*{receiver}).Update",
        # A framework Update that copies the plan into state applies nothing beyond the state itself.
        "update_copies_plan": "req.Plan.Get(" in update_text and "resp.State.Set(" in update_text,
        "update_line": uf.line(ustart),
        "update_fields": {s: _where(uf, ustart + at) for s, at in _strings(update_text) if s in attrs},
        "read_sets": {},
    }


def _method(pkg: GoPackage, receiver: str, name: str) -> tuple[GoFile, int, int]:
    for f in pkg.files:
        m = re.search(r"^func \(\w+ \*" + receiver + r"\) " + name + r"\(", f.text, flags=re.M)
        if m:
            brace = f.text.find("{", matching(f.text, m.end() - 1))
            eol = f.text.find("\n", brace)
            brace = f.text.rfind("{", brace, eol)
            return f, brace, matching(f.text, brace)
    raise SystemExit(f"no method (*{receiver}).{name}")


# --- pulumi-command (a native provider: struct tags) --------------------------------------------


def command_inputs(root: Path) -> dict[str, Any]:
    """Per Go input struct field of local and remote Command: its Pulumi name and provider tags."""
    out: dict[str, Any] = {}
    pkg = root / COMMAND_PACKAGE
    for sub in ("common", "local", "remote"):
        for p in sorted((pkg / sub).glob("*.go")):
            if p.name.endswith("_test.go"):
                continue
            text = p.read_text()
            rel = str(p.relative_to(root))
            for m in re.finditer(r'^\t(\w+)\s+[^`\n]+`pulumi:"(\w+)[^"]*"([^`]*)`', text, flags=re.M):
                tags = m.group(3)
                struct = re.findall(r"^type (\w+) struct", text[: m.start()], flags=re.M)
                out.setdefault(f"{sub}.{struct[-1]}", {})[m.group(2)] = {
                    "line": text.count("\n", 0, m.start()) + 1,
                    "file": rel,
                    "replace_on_changes": 'provider:"replaceOnChanges"' in tags,
                    "secret": 'provider:"secret"' in tags,
                }
    # A Command's inputs are the union of the structs it embeds (common.ResourceInputs and its own).
    return out


def command_controllers(root: Path) -> dict[str, Any]:
    """Whether each Command implements CustomUpdate / CustomDiff / CustomRead (the infer defaults differ)."""
    out: dict[str, Any] = {}
    for sub in ("local", "remote"):
        p = root / COMMAND_PACKAGE / sub / "commandController.go"
        text = p.read_text()
        rel = str(p.relative_to(root))
        entry: dict[str, Any] = {}
        for iface in ("CustomUpdate", "CustomDiff", "CustomRead", "CustomCheck"):
            m = re.search(r"infer\." + iface + r"\[[^\]]*\]\)\(\(\*Command\)", text)
            entry[iface] = f"{rel}#L{text.count(chr(10), 0, m.start()) + 1}" if m else None
        out[sub] = entry
    return out


# --- the Pulumi bridges -------------------------------------------------------------------------


def bridge_overrides(root: Path) -> dict[str, Any]:
    """Per TF resource in provider/resources.go: its token, DeleteBeforeReplace and field renames."""
    p = root / "provider" / "resources.go"
    f = GoFile(p, "provider/resources.go", blank_comments(p.read_text()))
    m = re.search(r"Resources:\s*map\[string\]\*tfbridge\.ResourceInfo\{", f.text)
    assert m is not None
    out: dict[str, Any] = {}
    for name, key_at, vs, ve in keyed(f.text, m.end() - 1):
        brace = first_brace(f.text, vs, ve)
        assert brace is not None
        info: dict[str, Any] = {"line": f.line(key_at), "delete_before_replace": False, "renames": {}}
        for prop, pat, ps, pe in keyed(f.text, brace):
            value = _code(f.text[ps:pe])
            if prop == "Tok":
                info["tok"] = value
            elif prop == "DeleteBeforeReplace":
                info["delete_before_replace"] = value == "true"
                info["delete_before_replace_line"] = f.line(pat)
            elif prop == "Fields":
                fb = first_brace(f.text, ps, pe)
                assert fb is not None
                for field, fat, fs, fe in keyed(f.text, fb):
                    nm = re.search(r'Name:\s*"(\w+)"', f.text[fs:fe])
                    if nm:
                        info["renames"][field] = {"name": nm.group(1), "line": f.line(fat)}
        out[name] = info
    cm = re.search(r"Config:\s*map\[string\]\*tfbridge\.SchemaInfo\{", f.text)
    config = {k: f.line(at) for k, at, _, _ in keyed(f.text, cm.end() - 1)} if cm else {}
    return {"file": f.rel, "resources": out, "config_overrides": config}


# --- describing the checkouts -------------------------------------------------------------------


def describe(path: Path, ref: str | None) -> str:
    if ref:
        return ref
    try:
        commit = subprocess.run(
            ["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        tag = subprocess.run(
            ["git", "-C", str(path), "describe", "--tags", "--always"], capture_output=True, text=True, check=False
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return f"{path} (not a git work tree: pass --ref)"
    return f"{tag} ({commit})"


def extract(args: argparse.Namespace) -> dict[str, Any]:
    refs = dict(r.split("=", 1) for r in args.ref)
    docker = GoPackage(Path(args.docker), DOCKER_PACKAGE)
    constructors = sdk_resources_map(docker)
    random = GoPackage(Path(args.random), RANDOM_PACKAGE)
    out: dict[str, Any] = {
        "_source": {
            "generated_by": "python -m components.planning.extract_provider_facts",
            "docker": describe(Path(args.docker), refs.get("docker")),
            "random": describe(Path(args.random), refs.get("random")),
        },
        "docker_provider_config": sdk_provider_config(docker),
        "resources": {name: sdk_resource(docker, constructors[name]) for name in DOCKER_RESOURCES},
    }
    for name in RANDOM_RESOURCES:
        out["resources"][name] = framework_resource(random, name.split("_", 1)[1])
    if args.command:
        out["_source"]["command"] = describe(Path(args.command), refs.get("command"))
        out["command"] = {
            "inputs": command_inputs(Path(args.command)),
            "controllers": command_controllers(Path(args.command)),
        }
    if args.pulumi_docker:
        out["_source"]["pulumi_docker"] = describe(Path(args.pulumi_docker), refs.get("pulumi_docker"))
        out["pulumi_docker"] = bridge_overrides(Path(args.pulumi_docker))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docker", required=True, help="checkout of kreuzwerker/terraform-provider-docker")
    parser.add_argument("--random", required=True, help="checkout of hashicorp/terraform-provider-random")
    parser.add_argument("--command", help="checkout of pulumi/pulumi-command")
    parser.add_argument("--pulumi-docker", help="checkout of pulumi/pulumi-docker (its provider/resources.go)")
    parser.add_argument("--ref", action="append", default=[], help="NAME=what the checkout NAME is, if not git")
    json.dump(extract(parser.parse_args(argv)), sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
