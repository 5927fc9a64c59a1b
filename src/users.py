"""Matrix user IDs as operators type them in actions."""

import re

from state import InvalidStateError

# Localparts Synapse accepts for new users (the Matrix spec's grammar, lower case).
_LOCALPART = re.compile(r"[a-z0-9._=\-/+]+")
# Localparts existing users may have (historical IDs: printable ASCII except ':').
_HISTORICAL_LOCALPART = re.compile(r"[!-9;-~]+")
MAX_USER_ID_LENGTH = 255


def localpart(username: str, server_name: str, new: bool = True) -> str:
    """The localpart of `alice` or `@alice:server_name`; InvalidStateError for anything else.

    New users must follow the current grammar; existing users may have historical IDs.
    """
    name = username.strip()
    if name.startswith("@"):
        local, sep, server = name[1:].partition(":")
        if not sep:
            raise InvalidStateError(f"{username!r} is not a Matrix user ID; use alice or @alice:{server_name}")
        if server != server_name:
            raise InvalidStateError(f"{username!r} belongs to {server!r}, not to this server ({server_name})")
        name = local
    if not name:
        raise InvalidStateError("the username is empty")
    if not new:
        if not _HISTORICAL_LOCALPART.fullmatch(name):
            raise InvalidStateError(f"{username!r} is not a valid Matrix username")
        return name
    if not _LOCALPART.fullmatch(name):
        raise InvalidStateError(f"{username!r} is not a valid username: use lower-case letters, digits and . _ = - / +")
    if name.startswith("_"):
        raise InvalidStateError(f"{username!r}: usernames may not begin with '_'")
    if len(user_id(name, server_name)) > MAX_USER_ID_LENGTH:
        raise InvalidStateError(f"{username!r} is too long for a Matrix user ID (255 characters at most)")
    return name


def user_id(local: str, server_name: str) -> str:
    """The full Matrix user ID for a localpart of this server."""
    return f"@{local}:{server_name}"
