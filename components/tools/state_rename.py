"""Rename resources in an exported Pulumi state (`pulumi stack export --file FILE`), every reference included:

    python -m components.tools.state_rename FILE 'URN=NEW_NAME' ...

then `pulumi stack import --file FILE`. Each URN's last part becomes NEW_NAME wherever the state holds it: the
resource's own URN, its children's parent, dependencies, property dependencies, provider references
(`URN::id`) and `replaceWith`. `pulumi state rename` of a provider rewrites provider references but not
`replaceWith`, and pulumi v3.259.0 then refuses the snapshot it made ("is specified as being replaced with ...,
which is missing"): pulumi/pulumi v3.259.0 pkg/cmd/pulumi/state/state_rename.go L40-158 against
pkg/resource/deploy/snapshot.go L668 and L792-806, VerifyIntegrity's replaceWith check."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def renamed_urn(urn: str, name: str) -> str:
    return f"{urn.rsplit('::', 1)[0]}::{name}"


def rename(value: Any, urns: Mapping[str, str]) -> Any:
    """The value with each URN in `urns` (old URN -> new URN) rewritten, alone or as a provider reference."""
    if isinstance(value, str):
        if value in urns:
            return urns[value]
        head, sep, tail = value.rpartition("::")
        return f"{urns[head]}{sep}{tail}" if sep and head in urns else value
    if isinstance(value, list):
        return [rename(v, urns) for v in value]
    if isinstance(value, dict):
        return {k: rename(v, urns) for k, v in value.items()}
    return value


def parse(pairs: Sequence[str]) -> dict[str, str]:
    urns = {}
    for pair in pairs:
        urn, sep, name = pair.rpartition("=")
        if not sep or not urn.startswith("urn:pulumi:") or not name or "::" in name:
            raise ValueError(f"{pair!r} is not URN=NEW_NAME")
        urns[urn] = renamed_urn(urn, name)
    return urns


def main(argv: Sequence[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    path = Path(argv[0])
    try:
        urns = parse(argv[1:])
        state = json.loads(path.read_text())
    except (ValueError, OSError) as exc:
        print(f"state_rename: {exc}", file=sys.stderr)
        return 2
    known = {r.get("urn") for r in state.get("deployment", {}).get("resources", [])}
    missing = sorted(set(urns) - known)
    if missing:
        print(f"state_rename: {path} has no resource {', '.join(missing)}", file=sys.stderr)
        return 1
    clash = sorted(set(urns.values()) & known)
    if clash:
        print(f"state_rename: {path} already has {', '.join(clash)}", file=sys.stderr)
        return 1
    path.write_text(json.dumps(rename(state, urns), indent=4) + "\n")
    for old, new in urns.items():
        print(f"{old} -> {new}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
