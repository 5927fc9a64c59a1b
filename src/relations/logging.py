"""The `logging` relation: our requirer side of the loki_push_api wire format, via Pebble.

Key we read, each Loki unit's databag, JSON: `endpoint` = `{"url": "http://<loki>/loki/api/v1/push"}`.
We write nothing: Synapse's logs (stdout, see templates/log.config.j2) are shipped by Pebble's
log forwarding. Each Loki unit becomes a `log-targets` entry of type `loki` for all services,
labelled with our Juju topology. A target whose Loki unit left stays in the plan with
`services: ["-all"]` (Pebble has no way to delete one), so it forwards nothing.

Log targets are applied with `add_layer` only, never a replan or restart: adding or removing
Loki does not touch Synapse. `cosl` (topology) is imported only while related.
"""

import dataclasses
import json
import re
import typing
import urllib.parse

import ops
import pydantic

from constants import LOGGING_ENDPOINT
from relations._common import validate_host

ENDPOINT_KEY = "endpoint"
_URL_CHARACTERS = re.compile(r"[!-~]{1,2048}")
ENABLED = ["all"]
DISABLED = ["-all"]


class PushEndpoint(pydantic.BaseModel):
    """One Loki unit's `endpoint` answer."""

    model_config = pydantic.ConfigDict(frozen=True)

    url: str

    @pydantic.field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        """An absolute http(s) URL to an IP address or DNS name, in printable ASCII, as Pebble needs."""
        if not _URL_CHARACTERS.fullmatch(value):
            raise ValueError("not a URL in printable ASCII")
        parsed = urllib.parse.urlsplit(value)
        try:
            parsed.port  # noqa: B018 (raises ValueError on a bad port)
            if parsed.scheme not in ("http", "https") or not parsed.hostname:
                raise ValueError("not an http(s) URL with a host")
            validate_host(parsed.hostname)
        except ValueError as exc:
            raise ValueError(str(exc)) from None
        return value


@dataclasses.dataclass(frozen=True)
class LokiUnits:
    """The push URL of every Loki unit that sent a valid one, and messages for those that did not."""

    urls: dict[str, str]
    problems: tuple[str, ...] = ()


def parse_endpoint(raw: str | None) -> PushEndpoint | None:
    """A Loki unit's `endpoint` value; None while it has sent none; ValueError when it is malformed."""
    if not raw:
        return None
    try:
        return PushEndpoint.model_validate_json(raw)
    except pydantic.ValidationError as exc:
        reason = exc.errors()[0].get("msg", "invalid")
        raise ValueError(f'{ENDPOINT_KEY} is not JSON {{"url": "http://..."}} ({reason})') from None


class LokiPushRequirer:
    """Requirer side of loki_push_api: Loki push URLs in, Pebble log targets out."""

    def __init__(self, charm: ops.CharmBase, endpoint: str = LOGGING_ENDPOINT):
        self.charm = charm
        self.endpoint = endpoint
        self._units: LokiUnits | None = None  # parsed once per hook

    @property
    def relations(self) -> list[ops.Relation]:
        """The established relations on the endpoint."""
        return list(self.charm.model.relations[self.endpoint])

    def loki_units(self) -> LokiUnits:
        """Every related Loki unit's push URL, keyed by unit name; malformed answers as problems (once per hook)."""
        if self._units is None:
            self._units = self._parse_units()
        return self._units

    def _parse_units(self) -> LokiUnits:
        """Parse every Loki unit's databag."""
        urls: dict[str, str] = {}
        problems: list[str] = []
        for relation in self.relations:
            for unit in sorted(relation.units, key=lambda unit: unit.name):
                try:
                    endpoint = parse_endpoint(relation.data[unit].get(ENDPOINT_KEY))
                except ValueError as exc:
                    problems.append(
                        f"{unit.name} sent an invalid {exc} on the {self.endpoint} relation; its logs are not "
                        f"shipped: fix that Loki or `juju remove-relation {self.charm.app.name}:{self.endpoint} "
                        f"{unit.app.name}`"
                    )
                    continue
                if endpoint is not None:
                    urls[unit.name] = endpoint.url
        return LokiUnits(urls, tuple(problems))

    def log_targets(self, urls: dict[str, str], current: dict[str, ops.pebble.LogTarget]) -> dict[str, typing.Any]:
        """The `log-targets` layer section bringing `current` (the plan's) to `urls`; empty when it is there.

        Targets for Loki units no longer related are disabled; every other target is left alone.
        """
        wanted: dict[str, dict[str, typing.Any]] = {}
        if urls:
            from cosl import JujuTopology  # noqa: PLC0415 (imported only while related)

            topology = JujuTopology.from_charm(self.charm)
            labels = {**topology.label_matcher_dict, "juju_unit": self.charm.unit.name}
            for name, url in urls.items():
                wanted[name] = {
                    "override": "replace",
                    "type": "loki",
                    "location": url,
                    "services": ENABLED,
                    "labels": labels,
                }
        for name, target in current.items():
            if name not in wanted and target.type == "loki" and target.services != DISABLED:
                wanted[name] = {
                    "override": "replace",
                    "type": "loki",
                    "location": target.location,
                    "services": DISABLED,
                }
        return {name: spec for name, spec in wanted.items() if not _matches(current.get(name), spec)}


def _matches(target: ops.pebble.LogTarget | None, spec: dict[str, typing.Any]) -> bool:
    """Whether the plan's `target` already is `spec`."""
    if target is None:
        return False
    have = target.to_dict()
    return all(
        json.dumps(have.get(key), sort_keys=True) == json.dumps(value, sort_keys=True)
        for key, value in spec.items()
        if key != "override"
    )
