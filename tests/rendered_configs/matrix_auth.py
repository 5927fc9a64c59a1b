"""Scenarios with bridges on the matrix-auth relation: their appservice registrations render.

The encryption key exists already (as an application secret the leader made earlier), and each
bridge's registration arrives encrypted with it, as our library's requirer sends it.
"""

from charms.synapse.v1 import matrix_auth as lib
from ops import testing
from pydantic import SecretStr

from constants import MATRIX_AUTH_ENDPOINT
from tests.rendered_configs import Stage, scenario

KEY = lib.generate_encryption_key()
REGISTRATIONS = {
    "irc": """
id: irc
url: http://irc-bridge.example.com:8090/base/
as_token: "as'token\\"{{}}:#1"
hs_token: hs-token-1
sender_localpart: appservice-irc
rate_limited: false
protocols: [irc]
namespaces:
  users: [{exclusive: true, regex: "@irc_.*:example\\\\.com"}]
  aliases: [{exclusive: false, regex: "#irc_.*:example\\\\.com"}]
""",
    "maubot": """
id: "maubot: the 'bot'"
url: null
as_token: as-token-2
hs_token: hs-token-2
sender_localpart: maubot
receive_ephemeral: true
org.matrix.msc3202: true
ip_range_whitelist: [10.0.0.0/8, "fd00::/8"]
namespaces: {rooms: [{exclusive: false, regex: '!.*'}]}
""",
}


def _bridge(relation_id: int, app: str) -> testing.Relation:
    """A bridge that sent its registration, encrypted with KEY."""
    token = lib.encrypt_string(KEY, SecretStr(REGISTRATIONS[app]))
    return testing.Relation(
        MATRIX_AUTH_ENDPOINT,
        id=relation_id,
        interface="matrix_auth",
        remote_app_name=app,
        remote_app_data={"registration_secret": token},
    )


@scenario("matrix-auth-two-bridges")
def two_bridges(stage: Stage) -> testing.State:
    """Two bridges: one with quotes, a colon and Jinja braces in its token, one with url null and extensions."""
    key = testing.Secret(
        {lib.ENCRYPTION_KEY_SECRET_CONTENT_LABEL: KEY.decode()}, owner="app", label=lib.ENCRYPTION_KEY_SECRET_LABEL
    )
    return stage.state(relations=[_bridge(301, "irc"), _bridge(302, "maubot")], secrets={key})
