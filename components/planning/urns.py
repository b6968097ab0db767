"""Resource URNs as the Pulumi engine builds them, and the duplicates it refuses: pure, free of Pulumi.

The engine names every resource `urn:pulumi:<stack>::<project>::<qualified type>::<name>`, where the
qualified type is the parent's qualified type, `$`, and the resource's own type; a child of the stack
itself has its own type alone (pulumi/pulumi v3.259.0 sdk/go/common/resource/urn/urn.go L80-93). The
parent's *name* is not part of it: two children of the same name and type under two parents of the same
type collide. The engine refuses a second registration of a URN with "Duplicate resource URN '<urn>'; try
giving it a unique name" (pkg/resource/deploy/step_generator.go L284, sdk/go/common/diag/errors.go L33),
which the SDK's mocks never do: the plan checks it here instead.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

ROOT_STACK_TYPE = "pulumi:pulumi:Stack"
PREFIX = "urn:pulumi:"
NAME_DELIMITER = "::"
TYPE_DELIMITER = "$"


def qualified_type(parent_qualified_type: str | None, own_type: str) -> str:
    """The type part of a URN: the parent's qualified type and this one's, unless the parent is the stack."""
    if not parent_qualified_type or parent_qualified_type == ROOT_STACK_TYPE:
        return own_type
    return parent_qualified_type + TYPE_DELIMITER + own_type


def urn(stack: str, project: str, qualified: str, name: str) -> str:
    return PREFIX + stack + NAME_DELIMITER + project + NAME_DELIMITER + qualified + NAME_DELIMITER + name


def type_chain(types: Sequence[str]) -> str:
    """The qualified type of a resource whose ancestors' types (outermost first, the stack left out) end in its own."""
    out: str | None = None
    for t in types:
        out = qualified_type(out, t)
    return out or ""


def duplicates(urns: Iterable[str]) -> list[str]:
    """The URNs registered more than once, in the order they first appear."""
    counts = Counter(urns)
    return [u for u in dict.fromkeys(counts) if counts[u] > 1]


def duplicate_message(dups: Sequence[str]) -> str:
    """What the engine would say, for each duplicate."""
    return "; ".join(f"Duplicate resource URN '{u}'; try giving it a unique name" for u in dups)
