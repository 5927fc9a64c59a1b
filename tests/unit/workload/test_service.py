"""Rendered files, the Pebble layer and applying them (src/workload/service.py)."""

import dataclasses
import json
import random
import re
import shutil
import stat
import typing
from pathlib import Path, PurePosixPath

import ops
import pytest
import yaml
from ops import testing

from constants import (
    CHECK_ALIVE,
    CHECK_READY,
    CONFIG_PATH,
    CONTAINER_NAME,
    DATA_DIR,
    FORM_SECRET_PATH,
    LOG_CONFIG_PATH,
    MACAROON_SECRET_PATH,
    MEDIA_STORE_DIR,
    METRICS_PORT,
    REGISTRATION_SECRET_PATH,
    SECRETS_DIR,
    SERVICE_NAME,
    SIGNING_KEY_PATH,
    SQLITE_DIR,
    SQLITE_PATH,
    SYNAPSE_GID,
    SYNAPSE_PORT,
    SYNAPSE_UID,
)
from server_secrets import ServerSecrets
from state import CharmConfig, CharmState, InvalidStateError
from tests.unit.conftest import HOSTILE_STRINGS, CharmEnv, record_side_effects
from workload.nginx import NGINX_TEMPLATE
from workload.service import (
    TEMPLATES_DIR,
    _yaml_value,
    pebble_layer,
    render_files,
    render_homeserver_config,
    render_log_config,
)

SECRET_PATHS = (SIGNING_KEY_PATH, REGISTRATION_SECRET_PATH, MACAROON_SECRET_PATH, FORM_SECRET_PATH)


def make_state(**config: typing.Any) -> CharmState:
    """A CharmState from Juju config (server_name defaults to example.com)."""
    return CharmState(config=CharmConfig.from_juju({"server_name": "example.com", **config}, "synapse"))


def homeserver(**config: typing.Any) -> dict[str, typing.Any]:
    """homeserver.yaml rendered for `config`, parsed."""
    document = yaml.safe_load(render_homeserver_config(make_state(**config)))
    assert isinstance(document, dict)
    return document


# --- the yaml filter -----------------------------------------------------------------------

TRICKY = [
    "",
    " ",
    "\t",
    " lead",
    "trail ",
    "'",
    '"',
    "'\"'",
    "\\",
    "\\n",
    "\n",
    "\r",
    "\r\n",
    "a\nb",
    "a\n\nb",
    "\n\n",
    "a\n",
    "\nenable_registration: true",
    "x\n- y",
    "a\n---\nb",
    "a\n...\nb",
    "---",
    "...",
    "--- x",
    '!!python/object/apply:os.system ["id"]',
    "!!binary aGk=",
    "!x",
    "{{ 7*7 }}",
    "{% if %}",
    "# comment",
    "a #b",
    "a: b",
    "a:",
    ": x",
    "? x",
    "- x",
    "-",
    "|",
    ">",
    "@x",
    "`x",
    "%x",
    "&anchor",
    "*alias",
    "<<",
    "[a]",
    "{a: b}",
    "\x00",
    "\x07",
    "\x1b[31m",
    "\x7f",
    "\x85",
    "\xa0",
    "\u200b",
    "\u2028",
    "\u2029",
    "\ufeff",
    "\U0001f600",
    "\U0010ffff",
    "é",
    "yes",
    "No",
    "on",
    "OFF",
    "y",
    "n",
    "true",
    "False",
    "null",
    "Null",
    "~",
    "1",
    "-1",
    "+1",
    "012",
    "0o17",
    "0x1F",
    "0b101",
    "1_000",
    "1e3",
    "1.5",
    "-.5",
    ".inf",
    "-.Inf",
    ".nan",
    "1:20",
    "2001-01-01",
    "2001-12-14t21:59:43.10-05:00",
    "12:30:00",
    "=",
    "x" * 10000,
    ("word " * 2000).strip(),
    "a" * 100 + "\n" + "b" * 100,
]

VALUES: list[typing.Any] = [
    None,
    True,
    False,
    0,
    -1,
    8008,
    1.5,
    [],
    {},
    ["matrix.org", "example.com:8448"],
    [{"server_name": "matrix.org"}, {"server_name": "\nx: y"}],
    {"a": [1, "x: y", None], "b": {"c": "'\""}},
    ("tuple", "values"),
]


def random_strings(count: int, seed: int = 20240613) -> list[str]:
    """Strings built from the characters YAML treats specially (deterministic)."""
    alphabet = [*"ab :#-?&*!|>'\"%@`{}[],.\\~=<\t\n\r", "\x00", "\x85", "\u2028", "\ufeff", "\U0001f600"]
    rng = random.Random(seed)  # noqa: S311 (reproducible test data)
    return ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 24))) for _ in range(count)]


CORPUS = TRICKY + [chr(code) for code in range(0x250) if code not in (0xD800,)] + random_strings(400)
CONTEXTS = [
    "key: {v}\nnext: 1\n",
    "outer:\n  key: {v}\n  next: 1\n",
    "a:\n  b:\n    key: {v}\n    next: 1\n",
    "items:\n  - key: {v}\n    next: 1\n",
]


def parse_in(context: str, rendered: str) -> typing.Any:
    """The value `rendered` stands for inside `context`."""
    document = yaml.safe_load(context.format(v=rendered))
    node = document
    while isinstance(node, dict) and "key" not in node:
        node = next(iter(node.values()))
        node = node[0] if isinstance(node, list) else node
    assert node["next"] == 1
    return node["key"]


@pytest.mark.parametrize("context", CONTEXTS, ids=["top", "nested", "deep", "sequence"])
def test_yaml_filter_round_trips_strings(context: str) -> None:
    for value in CORPUS:
        rendered = _yaml_value(value)
        assert parse_in(context, rendered) == value, (value, rendered)


@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_yaml_filter_round_trips_other_values(value: typing.Any) -> None:
    expected = list(value) if isinstance(value, tuple) else value
    for context in CONTEXTS:
        assert parse_in(context, _yaml_value(value)) == expected


def test_templates_use_the_filter_only_as_whole_block_values() -> None:
    """Every template expression is a whole block value.

    The filter's output is a block-context node: a scalar such as `:]!` is fine there but not
    inside a flow collection the template writes itself.
    """
    pattern = re.compile(r"^ *(- )?[a-z_]+: \{\{ [^{}]+ \| yaml \}\}$")
    for template in TEMPLATES_DIR.glob("*.j2"):
        if template.name == NGINX_TEMPLATE:  # not YAML: tests/unit/workload/test_nginx.py checks it
            continue
        for line in template.read_text().splitlines():
            if "{{" in line:
                assert pattern.match(line), f"{template.name}: {line}"


def test_yaml_filter_output_is_a_single_node() -> None:
    for value in CORPUS:
        rendered = _yaml_value(value)
        assert not rendered.endswith(("\n", "...")), repr(rendered)
        if "\n" not in value and "\r" not in value:
            assert "\n" not in rendered, repr(rendered)
        assert rendered.isascii()


# --- homeserver.yaml -----------------------------------------------------------------------


def test_homeserver_defaults() -> None:
    doc = homeserver()
    assert doc["server_name"] == "example.com"
    assert doc["public_baseurl"] == "https://example.com/"
    assert doc["report_stats"] is False
    assert doc["max_upload_size"] == "50M"
    assert doc["trusted_key_servers"] == [{"server_name": "matrix.org"}]
    assert "federation_domain_whitelist" not in doc
    assert "ip_range_whitelist" not in doc
    assert doc["allow_public_rooms_over_federation"] is False
    assert doc["enable_room_list_search"] is True
    assert doc["block_non_admin_invites"] is False
    assert doc["enable_registration"] is False


def test_homeserver_fixed_settings_use_the_constants() -> None:
    doc = homeserver()
    http, metrics = doc["listeners"]
    assert http["port"] == SYNAPSE_PORT
    assert http["type"] == "http"
    assert {"client", "federation"} <= set(http["resources"][0]["names"])
    assert (metrics["port"], metrics["type"]) == (METRICS_PORT, "metrics")
    assert doc["database"] == {"name": "sqlite3", "args": {"database": str(SQLITE_PATH)}}
    assert doc["log_config"] == str(LOG_CONFIG_PATH)
    assert doc["media_store_path"] == str(MEDIA_STORE_DIR)
    assert doc["signing_key_path"] == str(SIGNING_KEY_PATH)
    assert doc["registration_shared_secret_path"] == str(REGISTRATION_SECRET_PATH)
    assert doc["macaroon_secret_key_path"] == str(MACAROON_SECRET_PATH)
    assert doc["form_secret_path"] == str(FORM_SECRET_PATH)


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"server_name": "Chat.Example.technology:8448"}, {"server_name": "chat.example.technology:8448"}),
        ({"server_name": "[2001:db8::1]"}, {"public_baseurl": "https://[2001:db8::1]/"}),
        ({"public_baseurl": "https://matrix.example.com"}, {"public_baseurl": "https://matrix.example.com/"}),
        ({"report_stats": True}, {"report_stats": True}),
        ({"max_upload_size": "1g"}, {"max_upload_size": "1G"}),
        ({"max_upload_size": "1024"}, {"max_upload_size": "1024"}),
        (
            {"federation_domain_whitelist": "matrix.org, example.com:8448"},
            {"federation_domain_whitelist": ["matrix.org", "example.com:8448"]},
        ),
        (
            {"trusted_key_servers": "matrix.org,key.example"},
            {"trusted_key_servers": [{"server_name": "matrix.org"}, {"server_name": "key.example"}]},
        ),
        ({"trusted_key_servers": ""}, {"trusted_key_servers": []}),
        ({"ip_range_whitelist": "10.1.2.3/8, fd00::/8"}, {"ip_range_whitelist": ["10.0.0.0/8", "fd00::/8"]}),
        ({"allow_public_rooms_over_federation": True}, {"allow_public_rooms_over_federation": True}),
        ({"enable_room_list_search": False}, {"enable_room_list_search": False}),
        ({"block_non_admin_invites": True}, {"block_non_admin_invites": True}),
    ],
)
def test_homeserver_values(config: dict[str, typing.Any], expected: dict[str, typing.Any]) -> None:
    doc = homeserver(**config)
    for key, value in expected.items():
        assert doc[key] == value, key


def test_numeric_looking_server_name_stays_a_string() -> None:
    """A server name YAML would read as a number (sexagesimal 1:20 in YAML 1.1) is quoted."""
    assert homeserver(server_name="1.2.3.4:20")["server_name"] == "1.2.3.4:20"
    assert homeserver(max_upload_size="1024")["max_upload_size"] == "1024"


@pytest.mark.parametrize("level", ["debug", "INFO", "Warning", "error", "CRITICAL"])
def test_log_config(level: str) -> None:
    doc = yaml.safe_load(render_log_config(make_state(log_level=level)))
    assert doc["version"] == 1
    assert doc["root"]["level"] == level.upper()
    assert doc["root"]["handlers"] == ["console"]
    assert doc["handlers"]["console"]["stream"] == "ext://sys.stdout"


def test_render_files_permissions_and_contents() -> None:
    secrets = ServerSecrets.generate()
    files = render_files(make_state(), secrets)
    assert set(files) == {CONFIG_PATH, LOG_CONFIG_PATH, *SECRET_PATHS}
    # homeserver.yaml is 0600 too: on PostgreSQL it holds the database password.
    assert {path for path, file in files.items() if file.permissions == 0o600} == {CONFIG_PATH, *SECRET_PATHS}
    assert files[LOG_CONFIG_PATH].permissions == 0o644
    assert files[SIGNING_KEY_PATH].content == secrets.signing_key + "\n"
    assert files[REGISTRATION_SECRET_PATH].content == secrets.registration_shared_secret
    assert files[MACAROON_SECRET_PATH].content == secrets.macaroon_secret_key
    assert files[FORM_SECRET_PATH].content == secrets.form_secret


def secret_values(secrets: ServerSecrets) -> list[str]:
    """Every secret value, and the signing key's seed alone."""
    return [*secrets.model_dump().values(), secrets.signing_key.split()[-1]]


def test_no_secret_in_config_files_or_layer() -> None:
    secrets = ServerSecrets.generate()
    files = render_files(make_state(log_level="DEBUG", report_stats=True), secrets)
    public = [files[CONFIG_PATH].content, files[LOG_CONFIG_PATH].content, json.dumps(pebble_layer())]
    for value in secret_values(secrets):
        for text in public:
            assert value not in text


# --- the Pebble layer ----------------------------------------------------------------------


def test_layer_runs_synapse_as_non_root() -> None:
    layer = pebble_layer()
    service = layer["services"][SERVICE_NAME]
    assert service["command"] == f"python -m synapse.app.homeserver --config-path {CONFIG_PATH}"
    assert str(CONFIG_PATH) == "/data/homeserver.yaml"
    assert service["user-id"] == SYNAPSE_UID != 0
    assert service["group-id"] == SYNAPSE_GID != 0
    assert "user" not in service and "group" not in service
    assert service["startup"] == "enabled"
    assert service["override"] == "replace"
    assert service["working-dir"] == str(DATA_DIR)


def test_layer_checks() -> None:
    checks = pebble_layer()["checks"]
    assert checks[CHECK_ALIVE]["level"] == "alive"
    assert checks[CHECK_ALIVE]["tcp"] == {"port": SYNAPSE_PORT}
    assert checks[CHECK_READY]["level"] == "ready"
    assert checks[CHECK_READY]["http"] == {"url": f"http://localhost:{SYNAPSE_PORT}/health"}
    assert all(check["override"] == "replace" for check in checks.values())


# --- applying in the container (ops.testing) ---------------------------------------------


def test_files_land_with_modes(env: CharmEnv) -> None:
    out = env.started()
    for path in SECRET_PATHS:
        assert stat.S_IMODE(env.host_path(path).stat().st_mode) == 0o600, path
    assert stat.S_IMODE(env.host_path(CONFIG_PATH).stat().st_mode) == 0o600
    assert stat.S_IMODE(env.host_path(LOG_CONFIG_PATH).stat().st_mode) == 0o644
    assert stat.S_IMODE(env.host_path(SECRETS_DIR).stat().st_mode) == 0o700
    assert stat.S_IMODE(env.host_path(MEDIA_STORE_DIR).stat().st_mode) == 0o750
    assert stat.S_IMODE(env.host_path(SQLITE_DIR).stat().st_mode) == 0o750
    secret = ServerSecrets.from_content(dict(env.server_secret(out).tracked_content))
    assert env.read(CONFIG_PATH) == render_homeserver_config(make_state())
    assert env.read(SIGNING_KEY_PATH) == secret.signing_key + "\n"


def test_plan_is_the_layer_and_holds_no_secret(env: CharmEnv) -> None:
    out = env.started(config={"log_level": "debug"})
    container = out.get_container(CONTAINER_NAME)
    plan: dict[str, typing.Any] = dict(container.plan.to_dict())
    wanted: dict[str, typing.Any] = dict(ops.pebble.Layer(pebble_layer()).to_dict())
    for section in ("services", "checks"):
        for name, spec in wanted[section].items():
            assert {key: plan[section][name][key] for key in spec} == spec
    secret = ServerSecrets.from_content(dict(env.server_secret(out).tracked_content))
    dumped = json.dumps(plan) + json.dumps({label: layer.to_dict() for label, layer in container.layers.items()})
    for value in secret_values(secret):
        assert value not in dumped
    for path in (CONFIG_PATH, LOG_CONFIG_PATH):
        for value in secret_values(secret):
            assert value not in env.read(path)


def test_only_changed_files_are_pushed(env: CharmEnv) -> None:
    out = env.started()
    with record_side_effects() as effects:
        env.run(env.ctx.on.config_changed(), env.with_config(out, report_stats=True))
    assert effects.pushes == [str(CONFIG_PATH)]
    assert yaml.safe_load(env.read(CONFIG_PATH))["report_stats"] is True


def test_a_file_edited_in_the_container_is_restored(env: CharmEnv) -> None:
    out = env.started()
    good = env.read(CONFIG_PATH)
    env.host_path(CONFIG_PATH).write_text(good + "enable_registration: true\n")
    with record_side_effects() as effects:
        env.run(env.ctx.on.update_status(), out)
    assert env.read(CONFIG_PATH) == good
    assert effects.pushes == [str(CONFIG_PATH)]
    assert effects.pebble.calls == [("restart", (SERVICE_NAME,))]


def test_stop_and_self_healing(env: CharmEnv) -> None:
    out = env.started()
    with env.ctx(env.ctx.on.update_status(), out) as manager:
        workload = manager.charm.workload
        with record_side_effects() as effects:
            workload.stop()
            workload.stop()  # stopping a stopped Synapse is a no-op
        assert effects.pebble.calls == [("stop", (SERVICE_NAME,))]
        assert not workload.is_running()
        with record_side_effects() as effects:
            after = manager.run()
    # The next hook finds Synapse stopped and starts it again.
    assert effects.pebble.calls == [("replan", ())]
    assert after.get_container(CONTAINER_NAME).service_statuses[SERVICE_NAME] == ops.pebble.ServiceStatus.ACTIVE


def test_installed_server_name_and_data(env: CharmEnv) -> None:
    out = env.started(config={"server_name": "A.example.com"})
    with env.ctx(env.ctx.on.update_status(), out) as manager:
        workload = manager.charm.workload
        assert workload.installed_server_name() == "a.example.com"
        assert workload.has_data() is False
        env.host_path(SQLITE_PATH).write_bytes(b"SQLite format 3\x00")
        assert workload.has_data() is True


@pytest.mark.parametrize(
    "content",
    ["", "::: not yaml [", "- a list\n", "server_name: 42\n", "server_name: 'not a name!'\n", "other: 1\n"],
)
def test_unreadable_installed_config_does_not_lock_server_name(env: CharmEnv, content: str) -> None:
    """Only a parseable homeserver.yaml with a valid server_name pins the server's name."""
    env.host_path(CONFIG_PATH).write_text(content)
    env.host_path(SQLITE_DIR).mkdir(parents=True)
    env.host_path(SQLITE_PATH).write_bytes(b"SQLite format 3\x00")
    out = env.pebble_ready(env.state())
    assert not isinstance(out.unit_status, ops.BlockedStatus)
    assert yaml.safe_load(env.read(CONFIG_PATH))["server_name"] == "example.com"


# --- hostile strings through the whole charm ---------------------------------------------

HOSTILE = HOSTILE_STRINGS
# Each string option with a good value; the list options are non-empty so every optional key renders.
GOOD = {
    "server_name": "example.com",
    "public_baseurl": "https://matrix.example.com/",
    "max_upload_size": "50M",
    "federation_domain_whitelist": "matrix.org",
    "trusted_key_servers": "matrix.org",
    "ip_range_whitelist": "10.0.0.0/8",
    "log_level": "INFO",
    "registration": "disabled",
}
OPTIONAL_KEYS = ("federation_domain_whitelist", "ip_range_whitelist")


def expected_value(config: CharmConfig, option: str) -> typing.Any:
    """What `option` of the typed config reads as in the rendered file."""
    if option == "trusted_key_servers":
        return [{"server_name": name} for name in config.trusted_key_servers]
    value = getattr(config, option)
    return list(value) if isinstance(value, tuple) else value


@pytest.fixture(scope="module")
def good_unit(tmp_path_factory: pytest.TempPathFactory) -> tuple[testing.State, Path]:
    """A running unit configured with GOOD, and a snapshot of its /data (set up once per module)."""
    env = CharmEnv(tmp_path_factory.mktemp("good"))
    return env.started(config=GOOD), env.data_dir


@pytest.mark.parametrize("payload", HOSTILE, ids=lambda p: repr(p)[:20])
@pytest.mark.parametrize("option", list(GOOD))
def test_hostile_config_is_blocked_or_inert(
    env: CharmEnv, good_unit: tuple[testing.State, Path], option: str, payload: str
) -> None:
    good_state, snapshot = good_unit
    shutil.copytree(snapshot, env.data_dir, dirs_exist_ok=True)
    container = env.container(
        layers=good_state.get_container(CONTAINER_NAME).layers,
        service_statuses=good_state.get_container(CONTAINER_NAME).service_statuses,
    )
    out = dataclasses.replace(good_state, containers=frozenset({container}))
    baseline_keys = set(yaml.safe_load(env.read(CONFIG_PATH)))
    baseline_log_keys = set(yaml.safe_load(env.read(LOG_CONFIG_PATH)))
    assert set(OPTIONAL_KEYS) <= baseline_keys

    for value in (payload, GOOD[option] + payload, f" {payload}{GOOD[option]} "):
        before = {path: env.read(path) for path in (CONFIG_PATH, LOG_CONFIG_PATH)}
        state = env.with_config(out, **{option: value})
        with record_side_effects() as effects:
            out = env.run(env.ctx.on.config_changed(), state)
        try:
            config = CharmConfig.from_juju(state.config, "synapse")
        except InvalidStateError:
            assert isinstance(out.unit_status, ops.BlockedStatus), repr(value)
            assert f"invalid config {option}:" in out.unit_status.message
            assert f"juju config synapse {option}=" in out.unit_status.message
            assert effects.nothing, effects
            assert {path: env.read(path) for path in before} == before
            continue
        assert not isinstance(out.unit_status, ops.BlockedStatus), (value, out.unit_status)
        doc = yaml.safe_load(env.read(CONFIG_PATH))
        log = yaml.safe_load(env.read(LOG_CONFIG_PATH))
        assert isinstance(doc, dict) and isinstance(log, dict)
        dropped = {key for key in OPTIONAL_KEYS if not getattr(config, key)}
        assert set(doc) == baseline_keys - dropped, repr(value)
        assert set(log) == baseline_log_keys
        assert doc["enable_registration"] is (config.registration != "disabled")
        assert doc["registration_requires_token"] is (config.registration == "token")
        if option == "log_level":
            assert log["root"]["level"] == config.log_level
        elif option == "registration":
            assert config.registration == "disabled"
        elif option in dropped:
            assert option not in doc
        else:
            assert doc[option] == expected_value(config, option), repr(value)


def test_hostile_payloads_reach_the_template_through_the_filter() -> None:
    """Even values no validator would pass render inertly: the template never trusts its input."""
    good = make_state().config
    for payload in HOSTILE:
        config = good.model_copy(
            update={
                "server_name": payload,
                "public_baseurl": payload,
                "max_upload_size": payload,
                "federation_domain_whitelist": (payload, payload + "x"),
                "trusted_key_servers": (payload,),
                "ip_range_whitelist": (payload,),
                "log_level": payload,
            }
        )
        state = CharmState(config=config)
        doc = yaml.safe_load(render_homeserver_config(state))
        assert doc["server_name"] == doc["public_baseurl"] == doc["max_upload_size"] == payload
        assert doc["federation_domain_whitelist"] == [payload, payload + "x"]
        assert doc["trusted_key_servers"] == [{"server_name": payload}]
        assert doc["ip_range_whitelist"] == [payload]
        assert doc["enable_registration"] is False
        assert yaml.safe_load(render_log_config(state))["root"]["level"] == payload


def test_fresh_container_gets_every_file(env: CharmEnv) -> None:
    out = env.pebble_ready(env.state())
    assert {PurePosixPath("/data") / p.relative_to(env.data_dir) for p in env.data_dir.rglob("*") if p.is_file()} == {
        CONFIG_PATH,
        LOG_CONFIG_PATH,
        *SECRET_PATHS,
    }
    assert isinstance(out.unit_status, ops.ActiveStatus | ops.WaitingStatus)
    assert out.get_container(CONTAINER_NAME).service_statuses[SERVICE_NAME] == ops.pebble.ServiceStatus.ACTIVE
