"""A real Matrix client (matrix-nio) for the workload tests, run as a program on a test host.

    python nio_client.py '<JSON>'

The JSON names the homeserver, the user and a list of steps; the program prints one JSON
object with each step's result and exits 0, or prints {"error": ...} and exits 1. It resolves
names and verifies TLS the way any program on that host does (the test runs it in a
harness.SystemView with the test hosts and the test CA), so it sees exactly what a user's
client would. Steps:

    {"op": "discover", "server": "https://a.test"}       -> the homeserver URL from .well-known
    {"op": "login", "password": "..."}                    -> access token (later steps use it)
    {"op": "token", "access_token": "...", "device_id": "..."}   -> reuse an earlier login
    {"op": "create_room", "alias": "lobby"}               -> room_id (public room)
    {"op": "join", "room": "#lobby:a.test"}               -> room_id
    {"op": "send", "room": "!id:a.test", "body": "hi"}    -> event_id
    {"op": "wait_for", "room": "!id", "body": "hi", "timeout": 60}  -> sender of that message

Instead of "room", a step may give "room_from": N, the result of step N (e.g. a create_room or join).
"""

import asyncio
import json
import sys
import time
import typing

import nio


class ClientError(Exception):
    """A step failed; the message says which and why."""


def _check(response: typing.Any, expected: type, step: str) -> typing.Any:
    """`response` if it is of the expected type, else ClientError with nio's answer."""
    if not isinstance(response, expected):
        raise ClientError(f"{step} failed: {response!r}")
    return response


async def _wait_for(client: nio.AsyncClient, room: str, body: str, timeout: float) -> str:
    """Sync until a text message `body` appears in `room`; return its sender."""
    deadline = time.monotonic() + timeout
    since = None
    # Lazy-loading members, as current clients do: Synapse then includes rooms it joined over
    # federation before it has their full state (faster joins) instead of leaving them out.
    sync_filter = {"room": {"state": {"lazy_load_members": True}, "timeline": {"limit": 50}}}
    while time.monotonic() < deadline:
        answer = await client.sync(timeout=3000, since=since, sync_filter=sync_filter)
        response = _check(answer, nio.SyncResponse, "sync")
        since = response.next_batch
        joined = response.rooms.join.get(room)
        for event in joined.timeline.events if joined else []:
            if isinstance(event, nio.RoomMessageText) and event.body == body:
                return str(event.sender)
    raise ClientError(f"no message {body!r} in {room} within {timeout:.0f}s")


async def _discover(_: nio.AsyncClient, step: dict[str, typing.Any]) -> typing.Any:
    """The homeserver URL from the server's /.well-known/matrix/client."""
    discovery = nio.AsyncClient(step["server"])
    try:
        return _check(await discovery.discovery_info(), nio.DiscoveryInfoResponse, "discovery").homeserver_url
    finally:
        await discovery.close()


async def _login(client: nio.AsyncClient, step: dict[str, typing.Any]) -> typing.Any:
    """Log in with a password; the token and device for later runs."""
    login = _check(await client.login(step["password"]), nio.LoginResponse, "login")
    return {"access_token": login.access_token, "device_id": login.device_id}


async def _token(client: nio.AsyncClient, step: dict[str, typing.Any]) -> typing.Any:
    """Use an earlier login."""
    client.restore_login(client.user, step["device_id"], step["access_token"])


async def _create_room(client: nio.AsyncClient, step: dict[str, typing.Any]) -> typing.Any:
    """A public room with an alias; its ID."""
    created = await client.room_create(alias=step["alias"], preset=nio.RoomPreset.public_chat, name=step["alias"])
    return _check(created, nio.RoomCreateResponse, "room_create").room_id


async def _join(client: nio.AsyncClient, step: dict[str, typing.Any]) -> typing.Any:
    """Join a room by ID or alias; its ID."""
    return _check(await client.join(step["room"]), nio.JoinResponse, "join").room_id


async def _send(client: nio.AsyncClient, step: dict[str, typing.Any]) -> typing.Any:
    """Send a text message; its event ID."""
    content = {"msgtype": "m.text", "body": step["body"]}
    return _check(
        await client.room_send(step["room"], "m.room.message", content), nio.RoomSendResponse, "send"
    ).event_id


async def _wait(client: nio.AsyncClient, step: dict[str, typing.Any]) -> typing.Any:
    """Wait for a text message; its sender."""
    return await _wait_for(client, step["room"], step["body"], float(step.get("timeout", 60)))


STEPS = {
    "discover": _discover,
    "login": _login,
    "token": _token,
    "create_room": _create_room,
    "join": _join,
    "send": _send,
    "wait_for": _wait,
}


async def _step(client: nio.AsyncClient, step: dict[str, typing.Any], results: list[typing.Any]) -> typing.Any:
    """Run one step (after `results`); return its result."""
    if step["op"] not in STEPS:
        raise ClientError(f"unknown step {step['op']!r}")
    if "room_from" in step:
        step = {**step, "room": results[step["room_from"]]}
    return await STEPS[step["op"]](client, step)


async def main(request: dict[str, typing.Any]) -> list[typing.Any]:
    """Run the steps against the homeserver as the user."""
    client = nio.AsyncClient(request["homeserver"], request["user"])
    results: list[typing.Any] = []
    try:
        for step in request["steps"]:
            results.append(await _step(client, step, results))
        return results
    finally:
        await client.close()


if __name__ == "__main__":
    try:
        results = asyncio.run(main(json.loads(sys.argv[1])))
    except (ClientError, OSError) as exc:
        print(json.dumps({"error": str(exc)}))
        sys.exit(1)
    print(json.dumps({"results": results}))
