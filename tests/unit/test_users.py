"""Matrix user IDs typed by operators (src/users.py)."""

import pytest

from state import InvalidStateError
from users import MAX_USER_ID_LENGTH, localpart, user_id

SERVER = "example.com"


@pytest.mark.parametrize(
    ("username", "expected"),
    [
        ("alice", "alice"),
        ("  alice  ", "alice"),
        ("@alice:example.com", "alice"),
        ("a.b_c=d-e/f+g", "a.b_c=d-e/f+g"),
        ("0123", "0123"),
        ("alice_", "alice_"),
    ],
)
def test_localpart_accepted(username: str, expected: str) -> None:
    assert localpart(username, SERVER) == expected


@pytest.mark.parametrize(
    ("username", "message"),
    [
        ("Alice", "not a valid username"),
        ("al ice", "not a valid username"),
        ("alice!", "not a valid username"),
        ("élise", "not a valid username"),
        ("al\nice", "not a valid username"),
        ("_alice", "may not begin with '_'"),
        ("@_alice:example.com", "may not begin with '_'"),
        ("@alice:otherserver", "belongs to 'otherserver', not to this server (example.com)"),
        ("@alice:example.com:8448", "belongs to"),
        ("@alice", "is not a Matrix user ID; use alice or @alice:example.com"),
        ("@:example.com", "the username is empty"),
        ("", "the username is empty"),
        ("   ", "the username is empty"),
    ],
)
def test_localpart_rejected(username: str, message: str) -> None:
    with pytest.raises(InvalidStateError) as excinfo:
        localpart(username, SERVER)
    assert message in str(excinfo.value)


def test_user_id_length_limit() -> None:
    room = MAX_USER_ID_LENGTH - len(user_id("", SERVER))
    assert localpart("a" * room, SERVER) == "a" * room
    assert len(user_id("a" * room, SERVER)) == MAX_USER_ID_LENGTH
    with pytest.raises(InvalidStateError, match="too long for a Matrix user ID"):
        localpart("a" * (room + 1), SERVER)


def test_user_id() -> None:
    assert user_id("alice", "example.com:8448") == "@alice:example.com:8448"


@pytest.mark.parametrize("name", ["ali\nce", "alice\n:x", "@alice\n:example.com"])
def test_embedded_newlines_are_not_usernames(name: str) -> None:
    with pytest.raises(InvalidStateError):
        localpart(name, "example.com")
    with pytest.raises(InvalidStateError):
        localpart(name, "example.com", new=False)
