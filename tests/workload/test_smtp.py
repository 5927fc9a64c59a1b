"""Email through the smtp relation: a real Synapse sends a password-reset email to a real SMTP server.

The test plays smtp-integrator. Its SMTP server (aiosmtpd on 127.0.0.1) requires STARTTLS
and authentication, with a certificate for `smtp.test` from a test CA. Synapse's mount
namespace gets an /etc/hosts naming smtp.test and a system trust store holding that CA,
as the image's trust store would hold a real CA. The password reaches the charm as a
Juju secret. A user with a verified address asks for a password reset; the email arrives
(over TLS, authenticated), its link confirms the reset, and the new password logs in.
"""

import dataclasses
import email
import email.policy
import re
import secrets
import socket
import ssl
import threading
import typing
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from ops import testing

from constants import CONFIG_PATH, SMTP_ENDPOINT, SYNAPSE_PORT
from tests.workload import harness
from tests.workload.tls import TestCA

SMTP_HOST = "smtp.test"
SMTP_USER = "synapse@mail.test"
SMTP_PASSWORD = "smtp-" + secrets.token_urlsafe(12)
SERVER_NAME = "mail.test"
PUBLIC_BASEURL = f"http://127.0.0.1:{SYNAPSE_PORT}/"
ADDRESS = "alice@example.com"
MAIL_TIMEOUT = 30.0


@dataclasses.dataclass
class Mailbox:
    """What the SMTP server received: messages, and the logins it accepted or refused."""

    messages: list[Envelope] = dataclasses.field(default_factory=list)
    logins: list[tuple[str, bool, bool]] = dataclasses.field(default_factory=list)  # (user, accepted, over TLS)
    arrived: threading.Condition = dataclasses.field(default_factory=threading.Condition)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        """Keep the message."""
        with self.arrived:
            self.messages.append(envelope)
            self.arrived.notify_all()
        return "250 Message accepted for delivery"

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: typing.Any
    ) -> AuthResult:
        """Accept exactly the smtp-integrator user and password."""
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == SMTP_USER
            and auth_data.password.decode() == SMTP_PASSWORD
        )
        user = auth_data.login.decode() if isinstance(auth_data, LoginPassword) else "?"
        self.logins.append((user, ok, session.ssl is not None))
        return AuthResult(success=ok)

    def wait(self, count: int, timeout: float = MAIL_TIMEOUT) -> Envelope:
        """The `count`-th message, waiting for it."""
        with self.arrived:
            if not self.arrived.wait_for(lambda: len(self.messages) >= count, timeout=timeout):
                raise AssertionError(f"no email within {timeout:.0f}s; logins: {self.logins}")
            return self.messages[count - 1]


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> tuple[TestCA, Path]:
    """The test CA and its certificate file."""
    authority = TestCA()
    return authority, authority.write_cert(tmp_path_factory.mktemp("ca") / "ca.pem")


@pytest.fixture(scope="module")
def smtp_server(tmp_path_factory: pytest.TempPathFactory, ca: tuple[TestCA, Path]) -> Iterator[tuple[Mailbox, int]]:
    """An SMTP server on 127.0.0.1 that requires STARTTLS and AUTH; (mailbox, port)."""
    cert, key = ca[0].write_leaf(tmp_path_factory.mktemp("smtp"), SMTP_HOST)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    mailbox = Mailbox()
    with socket.socket() as probe:  # a free port: aiosmtpd's start-up check cannot connect to port 0
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    controller = Controller(
        mailbox,
        hostname="127.0.0.1",
        port=port,
        server_hostname=SMTP_HOST,
        tls_context=context,
        require_starttls=True,
        authenticator=mailbox.authenticate,
        auth_required=True,
        auth_require_tls=True,
    )
    controller.start()
    try:
        yield mailbox, port
    finally:
        controller.stop()


def smtp_answer(port: int, secret: testing.Secret) -> dict[str, str]:
    """smtp-integrator's databag on the smtp interface, with the password as a secret."""
    return {
        "host": SMTP_HOST,
        "port": str(port),
        "user": SMTP_USER,
        "password_id": secret.id,
        "auth_type": "plain",
        "transport_security": "starttls",
        "domain": SERVER_NAME,
        "skip_ssl_verify": "False",
    }


@pytest.fixture(scope="module")
def deployed(
    tmp_path_factory: pytest.TempPathFactory,
    synapse_venv: Path,
    smtp_server: tuple[Mailbox, int],
    ca: tuple[TestCA, Path],
) -> Iterator[harness.CharmDriver]:
    """A unit related to the SMTP server, whose Synapse resolves smtp.test and trusts the test CA."""
    base = tmp_path_factory.mktemp("smtp-unit")
    driver = harness.CharmDriver(
        base / "data",
        {"server_name": SERVER_NAME, "public_baseurl": PUBLIC_BASEURL},
        venv=synapse_venv,
        log_path=base / "synapse.log",
        hosts={SMTP_HOST: "127.0.0.1"},
        trusted_ca=ca[1],
    )
    secret = testing.Secret({"password": SMTP_PASSWORD}, owner=None)
    relation = testing.Relation(
        SMTP_ENDPOINT, remote_app_name="smtp-integrator", remote_app_data=smtp_answer(smtp_server[1], secret)
    )
    driver.state = dataclasses.replace(
        driver.state, relations=driver.state.relations | {relation}, secrets=driver.state.secrets | {secret}
    )
    try:
        driver.deploy()
        yield driver
    finally:
        driver.stop()


def form_post(url: str, fields: dict[str, str]) -> tuple[int, str]:
    """POST an HTML form; (status, body)."""
    data = urllib.parse.urlencode(fields).encode()
    request = urllib.request.Request(url, data=data, method="POST")  # noqa: S310 (local http)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 (local http)
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def text_of(envelope: Envelope) -> str:
    """The plain-text part of a message, decoded."""
    message = email.message_from_bytes(typing.cast(bytes, envelope.original_content), policy=email.policy.default)
    part = message.get_body(preferencelist=("plain",))
    assert part is not None, message
    return typing.cast(str, part.get_content())


def test_the_password_is_only_in_homeserver_yaml(deployed: harness.CharmDriver) -> None:
    assert deployed.process.is_alive(), deployed.process.log_tail()
    config = deployed.data_dir / CONFIG_PATH.relative_to("/data")
    assert SMTP_PASSWORD in config.read_text()
    assert config.stat().st_mode & 0o777 == 0o600
    assert SMTP_PASSWORD not in repr(deployed.container.plan.to_dict())
    assert SMTP_PASSWORD not in deployed.process.log_tail(10_000)


def test_password_reset_email_arrives_with_a_working_link(
    deployed: harness.CharmDriver, smtp_server: tuple[Mailbox, int]
) -> None:
    mailbox = smtp_server[0]
    result = deployed.run_action("register-user", {"username": "alice", "admin": True})
    user_id, password = result["user-id"], result["password"]
    token = harness.token_for(user_id, password)
    status, answer = harness.http_json(
        "PUT",
        f"/_synapse/admin/v2/users/{urllib.parse.quote(user_id)}",
        {"threepids": [{"medium": "email", "address": ADDRESS}]},
        token=token,
    )
    assert status == 200, answer
    client_secret = secrets.token_hex(16)
    status, answer = harness.http_json(
        "POST",
        "/_matrix/client/v3/account/password/email/requestToken",
        {"client_secret": client_secret, "email": ADDRESS, "send_attempt": 1},
    )
    assert status == 200, (answer, deployed.process.log_tail())
    sid = str(answer["sid"])

    envelope = mailbox.wait(1)
    assert envelope.rcpt_tos == [ADDRESS]
    assert envelope.mail_from == f"noreply@{SERVER_NAME}"
    assert (SMTP_USER, True, True) in mailbox.logins  # authenticated, after STARTTLS
    links = re.findall(r"http://\S+/_synapse/client/password_reset/email/submit_token\?\S+", text_of(envelope))
    assert links, text_of(envelope)
    link = links[0]
    assert link.startswith(PUBLIC_BASEURL)
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(link).query))
    assert (query["client_secret"], query["sid"]) == (client_secret, sid)

    status, page = harness.http_get(link.removeprefix(PUBLIC_BASEURL.rstrip("/")))
    assert status == 200, page[:300]
    status, body = form_post(link.split("?")[0], query)
    assert status == 200, body[:300]

    new_password = "new-" + secrets.token_urlsafe(12)
    creds = {"sid": sid, "client_secret": client_secret}
    status, answer = harness.http_json(
        "POST",
        "/_matrix/client/v3/account/password",
        {"new_password": new_password, "auth": {"type": "m.login.email.identity", "threepid_creds": creds}},
    )
    assert status == 200, answer
    assert harness.login(user_id, password)[0] == 403
    assert harness.login(user_id, new_password)[0] == 200


def test_relation_removed_turns_email_off_with_one_restart(deployed: harness.CharmDriver) -> None:
    (relation,) = deployed.state.get_relations(SMTP_ENDPOINT)
    starts = deployed.starts
    deployed.run(deployed.ctx.on.relation_broken(relation))
    deployed.state = dataclasses.replace(deployed.state, relations=deployed.state.relations - {relation})
    deployed.run("update_status")
    assert deployed.starts == starts + 1
    config = (deployed.data_dir / CONFIG_PATH.relative_to("/data")).read_text()
    assert SMTP_PASSWORD not in config
    status, answer = harness.http_json(
        "POST",
        "/_matrix/client/v3/account/password/email/requestToken",
        {"client_secret": secrets.token_hex(16), "email": ADDRESS, "send_attempt": 1},
    )
    assert status == 400, answer
