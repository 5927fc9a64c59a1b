"""src/workload/postgres_setup.py: the prepare script's decision rules, and the charm's reading of its answer.

The script's SQL runs for real in tests/workload/test_postgres_setup.py and
tests/workload/test_postgresql_k8s.py; here its decision functions run in-process (the
script imports psycopg2 only in `main`), and every answer shape becomes a database or an
operator-facing error, never an uncaught exception.
"""

import json
import typing
from unittest import mock

import hypothesis
import ops
import pytest
from hypothesis import strategies as st

from workload import postgres_setup
from workload.postgres_setup import DatabaseSetupError, DatabaseWaitError, PreparedDatabase, prepare_database

PROVIDED = "synapse"
C_DATABASE = "synapse_c"
USER = "relation_id_4"
CONNECT: dict[str, typing.Any] = {
    "dbname": PROVIDED,
    "user": USER,
    "password": "secret-not-in-messages",
    "host": "10.0.0.1",
    "port": 5432,
}


def script() -> dict[str, typing.Any]:
    """The prepare script's functions, loaded without running it."""
    namespace: dict[str, typing.Any] = {"__name__": "prepare_script"}
    exec(postgres_setup._PREPARE_SCRIPT, namespace)  # noqa: S102 (our own script, as the container runs it)
    return namespace


SCRIPT = script()


# collate, ctype -> the database used (without a database in use already) and allow_unsafe_locale.
DECISIONS = [
    ("C", "C", PROVIDED, False),
    ("C", "C.UTF-8", PROVIDED, True),  # postgresql-k8s 14 and 16
    ("C", "C.utf8", PROVIDED, True),
    ("C", "en_US.UTF-8", C_DATABASE, None),
    ("C.UTF-8", "C.UTF-8", C_DATABASE, None),  # collation C.UTF-8 is not C for Synapse
    ("en_US.UTF-8", "en_US.UTF-8", C_DATABASE, None),
    ("POSIX", "POSIX", C_DATABASE, None),
    ("en_US.UTF-8", "C", C_DATABASE, None),
]


@pytest.mark.parametrize(("collate", "ctype", "used", "unsafe"), DECISIONS)
def test_decision_table(collate: str, ctype: str, used: str, unsafe: bool | None) -> None:
    assert SCRIPT["choose"](PROVIDED, (collate, ctype), None, C_DATABASE) == used
    verdict = SCRIPT["locale_verdict"](collate, ctype)
    if unsafe is None:
        assert verdict == "wrong"
    else:
        assert verdict == ("unsafe-ctype" if unsafe else "ok")


@pytest.mark.parametrize(("collate", "ctype"), [(c, t) for c, t, _, _ in DECISIONS])
@pytest.mark.parametrize("kept", [PROVIDED, C_DATABASE, "synapse_restored"])
def test_a_database_in_use_is_kept_whatever_the_provided_one_is(collate: str, ctype: str, kept: str) -> None:
    assert SCRIPT["choose"](PROVIDED, (collate, ctype), kept, C_DATABASE) == kept


class Answer:
    """A container whose prepare script prints `answer`; records the request it was sent."""

    def __init__(self, answer: object):
        self.stdout = answer if isinstance(answer, str) else json.dumps(answer) + "\n"
        self.requests: list[dict[str, typing.Any]] = []

    def exec(self, command: list[str], stdin: str, **_: typing.Any) -> mock.Mock:
        """The script's process."""
        self.requests.append(json.loads(stdin))
        process = mock.Mock()
        process.wait_output.return_value = (self.stdout, "")
        return process


def prepare(answer: object, keep: str | None = None) -> PreparedDatabase:
    """prepare_database against a script printing `answer`."""
    return prepare_database(typing.cast(ops.Container, Answer(answer)), dict(CONNECT), keep=keep)


def test_request_names_the_c_database_and_the_database_in_use() -> None:
    container = Answer({"database": C_DATABASE})
    prepare_database(typing.cast(ops.Container, container), dict(CONNECT), keep=C_DATABASE)
    assert container.requests == [{"connect": CONNECT, "c_database": C_DATABASE, "keep": C_DATABASE}]


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ({"database": PROVIDED, "allow_unsafe_locale": True}, PreparedDatabase(PROVIDED, True)),
        ({"database": PROVIDED, "allow_unsafe_locale": False}, PreparedDatabase(PROVIDED, False)),
        ({"database": C_DATABASE, "created": True, "user": USER}, PreparedDatabase(C_DATABASE, False)),
    ],
)
def test_usable_answers(answer: dict[str, typing.Any], expected: PreparedDatabase) -> None:
    assert prepare(answer) == expected


def test_pg_hba_not_refreshed_yet_means_wait() -> None:
    with pytest.raises(DatabaseWaitError) as excinfo:
        prepare({"database": C_DATABASE, "error": "hba-pending", "detail": "FATAL:  no pg_hba.conf entry"})
    assert str(excinfo.value).startswith(f"waiting for PostgreSQL to allow connections to {C_DATABASE}")


@pytest.mark.parametrize(
    ("answer", "keep", "fragments"),
    [
        (
            {"error": "no-createdb", "locale": ["en_US.UTF-8", "en_US.UTF-8"], "user": USER},
            None,
            ["has collation en_US.UTF-8/en_US.UTF-8 but Synapse needs C", f'CREATE DATABASE "{C_DATABASE}"'],
        ),
        (
            {"database": C_DATABASE, "error": "missing", "user": USER},
            C_DATABASE,
            [f"Synapse's data is in database {C_DATABASE}, which the related PostgreSQL does not have"],
        ),
        (
            {"database": PROVIDED, "error": "target-locale", "locale": ["en_US.UTF-8", "C"]},
            PROVIDED,
            [f"database {PROVIDED}, which Synapse's data is in, has collation en_US.UTF-8/C"],
        ),
        (
            {
                "database": PROVIDED,
                "error": "unusable",
                "user": USER,
                "role": "charmed_synapse_owner",
                "schema": "public",
                "owners": [["operator", 212], ["relation_id_1", 3]],
            },
            PROVIDED,
            [
                f"user {USER} (as role charmed_synapse_owner) cannot use database {PROVIDED}: it does not own the "
                "tables already there (212 owned by operator, 3 owned by relation_id_1;",
                f"connected to {PROVIDED}, run: DO $$",
                "'charmed_synapse_owner'",
            ],
        ),
        (
            {"database": C_DATABASE, "error": "foreign-database", "user": USER, "owner": "operator"},
            C_DATABASE,
            [
                f"user {USER} may not connect to database {C_DATABASE}, which belongs to operator",
                f'ALTER DATABASE "{C_DATABASE}" OWNER TO "{USER}"; GRANT USAGE, CREATE ON SCHEMA public TO "{USER}"',
            ],
        ),
    ],
    ids=["no-createdb", "kept-database-missing", "kept-database-not-c", "tables-of-another-owner", "foreign-database"],
)
def test_refusals_name_the_fix(answer: dict[str, typing.Any], keep: str | None, fragments: list[str]) -> None:
    with pytest.raises(DatabaseSetupError) as excinfo:
        prepare(answer, keep=keep)
    assert not isinstance(excinfo.value, DatabaseWaitError)
    for fragment in fragments:
        assert fragment in str(excinfo.value)
    assert str(CONNECT["password"]) not in str(excinfo.value)


def test_reassign_statement_quotes_names() -> None:
    statement = postgres_setup._reassign_statement('we"ird', "o'brien")
    assert '\'"we""ird"\'::regnamespace' in statement
    assert "pg_has_role('o''brien', c.relowner, 'USAGE')" in statement
    assert statement.startswith("DO $$") and statement.endswith("END$$")


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=10), children, max_size=3),
    max_leaves=10,
)
_KEYS = st.sampled_from(
    ["database", "error", "user", "role", "schema", "created", "allow_unsafe_locale", "locale", "owners", "owner"]
)


@hypothesis.settings(max_examples=200, deadline=None)
@hypothesis.given(st.dictionaries(_KEYS | st.text(max_size=8), _JSON, max_size=6) | _JSON)
def test_any_answer_is_a_database_or_an_operator_message(answer: object) -> None:
    try:
        result = prepare(answer)
    except DatabaseSetupError as exc:
        assert str(exc)
    else:
        assert isinstance(result, PreparedDatabase) and result.name
