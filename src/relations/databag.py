"""Writing our side of a relation: only the keys whose value changed."""

from collections.abc import Iterable, Mapping

import ops


def write_changed(databag: ops.RelationDataContent, wanted: Mapping[str, str], owned: Iterable[str] = ()) -> bool:
    """Make `databag` say `wanted`, and drop the `owned` keys not in it; return whether anything changed.

    A key whose value is already right is not written, so a reconcile that changes nothing
    writes nothing and the remote side sees no relation-changed event.
    """
    changed = False
    for key, value in wanted.items():
        if databag.get(key) != value:
            databag[key] = value
            changed = True
    for key in owned:
        if key not in wanted and key in databag:
            del databag[key]
            changed = True
    return changed
