"""The in-container backup script (src/workload/backup_script.py) in-process: signing, encryption, names.

Its S3 round trips run against real servers in tests/workload/test_backup.py.
"""

import datetime
import hashlib
import io
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workload import backup_script
from workload.backup_script import MAGIC, DecryptReader, EncryptWriter, ScriptError

PASSPHRASE = "a passphrase for the tests"
EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


REAL_KEY = backup_script._key


@pytest.fixture(autouse=True)
def _small_frames_and_a_quick_kdf(monkeypatch: pytest.MonkeyPatch) -> None:
    """Frames of 1 KiB, so a few KiB make several frames; a quick key derivation (scrypt takes
    about a second here), except in the test of scrypt itself.
    """
    monkeypatch.setattr(backup_script, "FRAME", 1024)
    monkeypatch.setattr(
        backup_script, "_key", lambda passphrase, salt, *_: hashlib.sha256(passphrase.encode() + salt).digest()
    )


# -- SigV4: the examples of the AWS S3 documentation ("Signature Calculations for the
# Authorization Header", examples GET Bucket lifecycle and GET Bucket (List Objects)).


def _aws_example() -> backup_script.S3:
    return backup_script.S3(
        {
            "access_key": "AKIAIOSFODNN7EXAMPLE",
            "secret_key": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "bucket": "examplebucket",
            "endpoint": "https://s3.amazonaws.com",
            "uri_style": "host",
        }
    )


@pytest.mark.parametrize(
    ("query", "signature"),
    [
        ({"lifecycle": ""}, "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543"),
        ({"max-keys": "2", "prefix": "J"}, "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"),
    ],
)
def test_sigv4_matches_the_aws_examples(query: dict[str, str], signature: str) -> None:
    when = datetime.datetime(2013, 5, 24, tzinfo=datetime.UTC)
    headers = _aws_example().sign(
        "GET", "examplebucket.s3.amazonaws.com", "/", query=query, payload_hash=EMPTY_SHA256, now=when
    )
    assert headers["authorization"] == (
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
        f"SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature={signature}"
    )
    assert headers["x-amz-date"] == "20130524T000000Z"


def test_endpoint_without_scheme_is_https_and_path_style_by_default() -> None:
    s3 = backup_script.S3({"access_key": "a", "secret_key": "b", "bucket": "bkt", "endpoint": "minio.local:9000"})
    assert (s3.secure, s3.host, s3.port, s3.virtual) == (True, "minio.local", 9000, False)


# -- the encrypted stream -------------------------------------------------------------------


def encrypt(plain: bytes, passphrase: str = PASSPHRASE) -> bytes:
    """The encrypted stream of `plain`."""
    sink = io.BytesIO()
    writer = EncryptWriter(sink, passphrase)  # type: ignore[arg-type]
    writer.write(plain)
    writer.finish()
    return sink.getvalue()


def decrypt(stream: bytes, passphrase: str = PASSPHRASE) -> bytes:
    """The plaintext of `stream`, read to the end."""
    reader = DecryptReader(io.BytesIO(stream), passphrase)  # type: ignore[arg-type]
    return reader.read()


def frames(stream: bytes) -> tuple[bytes, list[bytes]]:
    """The header and the frames (with their length prefix) of a stream."""
    header, rest = stream[: len(MAGIC) + 19], stream[len(MAGIC) + 19 :]
    found = []
    while rest:
        (length,) = struct.unpack(">I", rest[:4])
        found.append(rest[: 4 + length])
        rest = rest[4 + length :]
    return header, found


def test_the_key_is_scrypt_of_the_passphrase_and_salt(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backup_script, "_key", REAL_KEY)
    stream = encrypt(b"secret data")
    salt = stream[len(MAGIC) : len(MAGIC) + 16]
    assert stream[len(MAGIC) + 16 :][:3] == bytes([15, 8, 1])
    expected = hashlib.scrypt(PASSPHRASE.encode(), salt=salt, n=2**15, r=8, p=1, maxmem=64 * 1024 * 1024, dklen=32)
    assert REAL_KEY(PASSPHRASE, salt, 15, 8, 1) == expected
    assert decrypt(stream) == b"secret data"


def test_round_trip_over_several_frames() -> None:
    plain = bytes(range(256)) * 20 + b"tail"
    stream = encrypt(plain)
    assert len(frames(stream)[1]) == 6
    assert plain[:32] not in stream
    assert decrypt(stream) == plain


def test_empty_plaintext_round_trips() -> None:
    assert decrypt(encrypt(b"")) == b""


def test_a_fresh_salt_every_time() -> None:
    assert encrypt(b"same")[: len(MAGIC) + 16] != encrypt(b"same")[: len(MAGIC) + 16]


def test_wrong_passphrase_is_named() -> None:
    with pytest.raises(ScriptError) as exc:
        decrypt(encrypt(b"x" * 3000), "another passphrase")
    assert exc.value.code == "wrong-passphrase"


def test_truncation_at_a_frame_boundary_is_detected() -> None:
    header, parts = frames(encrypt(b"x" * 3000))
    with pytest.raises(ScriptError) as exc:
        decrypt(header + b"".join(parts[:-1]))
    assert exc.value.code == "corrupt"


def test_reordered_frames_are_detected() -> None:
    header, parts = frames(encrypt(b"abc" * 1000))
    with pytest.raises(ScriptError) as exc:
        decrypt(header + parts[1] + parts[0] + b"".join(parts[2:]))
    assert exc.value.code in ("wrong-passphrase", "corrupt")


def test_a_flipped_bit_is_detected() -> None:
    stream = bytearray(encrypt(b"abc" * 1000))
    stream[len(MAGIC) + 19 + 4 + 1100] ^= 1
    with pytest.raises(ScriptError) as exc:
        decrypt(bytes(stream))
    assert exc.value.code == "corrupt"


def test_data_after_the_last_frame_is_detected() -> None:
    with pytest.raises(ScriptError) as exc:
        decrypt(encrypt(b"abc") + b"more")
    assert exc.value.code == "corrupt"


def test_hostile_kdf_parameters_are_refused_before_deriving() -> None:
    stream = bytearray(encrypt(b"abc"))
    stream[len(MAGIC) + 16] = 30  # n = 2**30: gigabytes of memory
    with pytest.raises(ScriptError) as exc:
        decrypt(bytes(stream))
    assert exc.value.code == "not-a-backup"


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes_fail_as_a_script_error(data: bytes) -> None:
    with pytest.raises(ScriptError):
        decrypt(data)


@settings(max_examples=10, deadline=None)
@given(st.binary(min_size=1, max_size=64))
def test_any_tail_after_a_valid_header_fails_as_a_script_error(tail: bytes) -> None:
    header, _ = frames(encrypt(b""))
    with pytest.raises(ScriptError):
        decrypt(header + tail)


# -- names in a backup ----------------------------------------------------------------------

ALLOWED = {"manifest.json", "secrets", "db", "media_store"}


@pytest.mark.parametrize("name", ["media_store/local_content/ab/cd/ef", "secrets/signing.key", "manifest.json"])
def test_expected_names_pass(name: str) -> None:
    assert backup_script._safe_name(name, ALLOWED) == name


@pytest.mark.parametrize(
    "name", ["/etc/passwd", "../x", "media_store/../../x", "media_store//x", "homeserver.yaml", "db/./x", ""]
)
def test_unexpected_names_are_refused(name: str) -> None:
    with pytest.raises(ScriptError):
        backup_script._safe_name(name, ALLOWED)


@given(st.text(max_size=80))
def test_any_name_is_accepted_only_inside_the_allowed_trees(name: str) -> None:
    try:
        checked = backup_script._safe_name(name, ALLOWED)
    except ScriptError:
        return
    assert ".." not in checked.split("/") and not checked.startswith("/")
    assert checked.split("/")[0] in ALLOWED
