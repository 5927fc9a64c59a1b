"""Backups to S3, run INSIDE the workload container with the image's Python (`python -c`).

The charm never holds an archive: this script streams the server's files from /data into
an encrypted tar, uploaded with S3 multipart in bounded memory, and back. It uses only the
standard library and `cryptography`, which Synapse itself depends on (so the image has it);
the S3 calls (SigV4 signing, multipart upload) are written here because the image has no
S3 client.

The request (credentials, passphrase) arrives as one JSON document on stdin; the answer is
one JSON document on stdout: `{"ok": true, ...}` or `{"ok": false, "error": <code>, "detail": ...}`.

Layout in the bucket, under the relation's `path`:
  synapse-backups/<id>/archive        the encrypted stream (multipart upload)
  synapse-backups/<id>/manifest.json  written only after the archive completed: a backup is
                                      listed only when its manifest exists, so a partial
                                      upload is never listed.

Encrypted stream: MAGIC, 16-byte salt, scrypt log2(n), r, p; then frames of a 4-byte
big-endian length and AES-256-GCM ciphertext of at most FRAME bytes of tar. The key is
scrypt(passphrase, salt). The nonce is the frame counter (11 bytes) and a last-frame flag;
the header is the associated data. Reordering, truncation, extension or a wrong passphrase
fail authentication.
"""

import contextlib
import datetime
import hashlib
import hmac
import http.client
import io
import json
import os
import secrets
import shutil
import sqlite3
import ssl
import struct
import sys
import tarfile
import tempfile
import typing
import urllib.parse
import xml.etree.ElementTree as ET

MAGIC = b"SYNAPSE-BACKUP\x01"
FRAME = 1024 * 1024
PART_SIZE = 8 * 1024 * 1024  # S3 parts must be >= 5 MiB except the last
SCRYPT_LOG_N, SCRYPT_R, SCRYPT_P = 15, 8, 1
FORMAT = 1
BACKUPS = "synapse-backups/"
DATA = "/data"
STAGING = ".backup-restore"  # under /data: restored files wait here until swapped in
PREVIOUS = ".backup-previous"  # under /data: the data a restore replaced, until committed
SYNAPSE_UID = SYNAPSE_GID = 991
TIMEOUT = 60


class ScriptError(Exception):
    """An expected failure: `code` for the charm, `detail` for the operator."""

    def __init__(self, code: str, detail: str = ""):
        super().__init__(code, detail)
        self.code = code
        self.detail = detail


# -- S3 -----------------------------------------------------------------------------------


def _quote(text: str, safe: str = "-_.~") -> str:
    return urllib.parse.quote(text, safe=safe)


class S3:
    """The S3 calls backups need, signed with AWS Signature Version 4."""

    def __init__(self, conf: dict[str, typing.Any]):
        endpoint = conf.get("endpoint") or f"https://s3.{conf.get('region') or 'us-east-1'}.amazonaws.com"
        if "://" not in endpoint:
            endpoint = "https://" + endpoint
        url = urllib.parse.urlsplit(endpoint)
        self.secure = url.scheme == "https"
        self.host = url.hostname or ""
        self.port = url.port
        self.base = url.path.rstrip("/")
        self.bucket = conf["bucket"]
        self.region = conf.get("region") or "us-east-1"
        self.access_key = conf["access_key"]
        self.secret_key = conf["secret_key"]
        self.virtual = conf.get("uri_style") == "host"
        self.context: ssl.SSLContext | None = None
        if self.secure:
            self.context = ssl.create_default_context()
            if conf.get("ca_chain"):
                self.context.load_verify_locations(cadata="\n".join(conf["ca_chain"]))

    def _netloc(self, host: str) -> str:
        return f"{host}:{self.port}" if self.port else host

    def _connection(self, host: str) -> http.client.HTTPConnection:
        if self.secure:
            return http.client.HTTPSConnection(host, self.port, timeout=TIMEOUT, context=self.context)
        return http.client.HTTPConnection(host, self.port, timeout=TIMEOUT)

    def sign(
        self,
        method: str,
        host: str,
        path: str,
        *,
        query: dict[str, str],
        payload_hash: str,
        now: datetime.datetime | None = None,
    ) -> dict[str, str]:
        """The headers of a request signed with AWS Signature Version 4 (header-based)."""
        now = now or datetime.datetime.now(datetime.UTC)
        amz_date, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
        headers = {"host": self._netloc(host), "x-amz-content-sha256": payload_hash, "x-amz-date": amz_date}
        canonical_query = "&".join(f"{_quote(k)}={_quote(v)}" for k, v in sorted(query.items()))
        signed = ";".join(sorted(headers))
        canonical = "\n".join(
            [
                method,
                _quote(path, safe="/-_.~"),
                canonical_query,
                "".join(f"{k}:{headers[k]}\n" for k in sorted(headers)),
                signed,
                payload_hash,
            ]
        )
        scope = f"{day}/{self.region}/s3/aws4_request"
        to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
        key = ("AWS4" + self.secret_key).encode()
        for part in (day, self.region, "s3", "aws4_request"):
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        headers["authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={self.access_key}/{scope}, SignedHeaders={signed}, Signature={signature}"
        )
        return headers

    def request(
        self, method: str, key: str | None, query: dict[str, str] | None = None, body: bytes = b""
    ) -> http.client.HTTPResponse:
        """Send one signed request; the response is returned unread (the caller streams it)."""
        query = query or {}
        if self.virtual:
            host, path = f"{self.bucket}.{self.host}", f"{self.base}/{key or ''}"
        else:
            host, path = self.host, f"{self.base}/{self.bucket}" + (f"/{key}" if key is not None else "")
        headers = self.sign(method, host, path, query=query, payload_hash=hashlib.sha256(body).hexdigest())
        target = _quote(path, safe="/-_.~") + (
            "?" + "&".join(f"{_quote(k)}={_quote(v)}" for k, v in sorted(query.items())) if query else ""
        )
        conn = self._connection(host)
        try:
            conn.request(method, target, body=body, headers=headers)
            return conn.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            raise ScriptError("s3-unreachable", f"{self._netloc(self.host)}: {exc}") from None

    def call(self, method: str, key: str | None, query: dict[str, str] | None = None, body: bytes = b"") -> bytes:
        """A request whose answer must be 2xx; its body."""
        response = self.request(method, key, query, body)
        data = response.read()
        if response.status >= 300:
            raise ScriptError("s3-error", _s3_error(response.status, data))
        return data

    def ensure_bucket(self) -> None:
        """Create the bucket unless it exists."""
        response = self.request("HEAD", None)
        response.read()
        if response.status < 300:
            return
        if response.status != 404:
            raise ScriptError("s3-error", f"bucket {self.bucket}: HTTP {response.status}")
        body = b""
        if self.region != "us-east-1":
            body = (
                '<CreateBucketConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
                f"<LocationConstraint>{self.region}</LocationConstraint></CreateBucketConfiguration>"
            ).encode()
        self.call("PUT", None, body=body)

    def list(self, prefix: str) -> list[tuple[str, int]]:
        """(key, size) of every object under `prefix`."""
        found: list[tuple[str, int]] = []
        token = None
        while True:
            query = {"list-type": "2", "prefix": prefix}
            if token:
                query["continuation-token"] = token
            root = ET.fromstring(self.call("GET", None, query))  # noqa: S314 (our S3 server's XML)
            for item in root.iter():
                if _local(item.tag) == "Contents":
                    fields = {_local(child.tag): child.text or "" for child in item}
                    found.append((fields.get("Key", ""), int(fields.get("Size", "0") or 0)))
            token = _find(root, "NextContinuationToken")
            if _find(root, "IsTruncated") != "true" or not token:
                return found


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def _find(root: ET.Element, name: str) -> str | None:
    for item in root:
        if _local(item.tag) == name:
            return item.text
    return None


def _s3_error(status: int, data: bytes) -> str:
    try:
        root = ET.fromstring(data)  # noqa: S314 (our S3 server's XML)
        return f"HTTP {status} {_find(root, 'Code') or ''} {_find(root, 'Message') or ''}".strip()
    except ET.ParseError:
        return f"HTTP {status}"


class MultipartWriter(io.RawIOBase):
    """A write-only file whose bytes become an S3 multipart upload, PART_SIZE in memory at most."""

    def __init__(self, s3: S3, key: str):
        super().__init__()
        self.s3, self.key = s3, key
        root = ET.fromstring(s3.call("POST", key, {"uploads": ""}))  # noqa: S314
        upload_id = _find(root, "UploadId")
        if not upload_id:
            raise ScriptError("s3-error", "no UploadId in the answer to CreateMultipartUpload")
        self.upload_id = upload_id
        self.buffer = bytearray()
        self.parts: list[str] = []
        self.size = 0

    def writable(self) -> bool:
        """A write-only stream."""
        return True

    def write(self, data: typing.Any) -> int:
        """Buffer `data`, uploading every full part."""
        self.buffer += data
        self.size += len(data)
        while len(self.buffer) >= PART_SIZE:
            self._upload(bytes(self.buffer[:PART_SIZE]))
            del self.buffer[:PART_SIZE]
        return len(data)

    def _upload(self, part: bytes) -> None:
        number = len(self.parts) + 1
        response = self.s3.request("PUT", self.key, {"partNumber": str(number), "uploadId": self.upload_id}, part)
        data = response.read()
        if response.status >= 300:
            raise ScriptError("s3-error", _s3_error(response.status, data))
        self.parts.append(response.getheader("ETag") or "")

    def complete(self) -> int:
        """Upload the last part and complete the upload; the object's size."""
        if self.buffer or not self.parts:
            self._upload(bytes(self.buffer))
            self.buffer.clear()
        body = "".join(
            f"<Part><PartNumber>{n}</PartNumber><ETag>{etag}</ETag></Part>" for n, etag in enumerate(self.parts, 1)
        )
        answer = self.s3.call(
            "POST",
            self.key,
            {"uploadId": self.upload_id},
            f"<CompleteMultipartUpload>{body}</CompleteMultipartUpload>".encode(),
        )
        if b"<Error>" in answer:  # S3 may answer 200 with an error document
            raise ScriptError("s3-error", _s3_error(500, answer))
        return self.size

    def abort(self) -> None:
        """Drop the parts uploaded so far (best effort)."""
        try:
            self.s3.request("DELETE", self.key, {"uploadId": self.upload_id}).read()
        except (ScriptError, OSError, http.client.HTTPException):
            pass


# -- encryption ---------------------------------------------------------------------------


def _key(passphrase: str, salt: bytes, log_n: int, r: int, p: int) -> bytes:
    from cryptography.hazmat.primitives.kdf.scrypt import Scrypt  # noqa: PLC0415

    return Scrypt(salt=salt, length=32, n=2**log_n, r=r, p=p).derive(passphrase.encode())


def _nonce(counter: int, last: bool) -> bytes:
    return counter.to_bytes(11, "big") + (b"\x01" if last else b"\x00")


class EncryptWriter(io.RawIOBase):
    """Encrypts what is written into frames written to `sink`."""

    def __init__(self, sink: MultipartWriter, passphrase: str):
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: PLC0415

        super().__init__()
        salt = secrets.token_bytes(16)
        self.header = MAGIC + salt + bytes([SCRYPT_LOG_N, SCRYPT_R, SCRYPT_P])
        self.aead = AESGCM(_key(passphrase, salt, SCRYPT_LOG_N, SCRYPT_R, SCRYPT_P))
        self.sink = sink
        self.sink.write(self.header)
        self.buffer = bytearray()
        self.counter = 0

    def writable(self) -> bool:
        """A write-only stream."""
        return True

    def write(self, data: typing.Any) -> int:
        """Buffer `data`, encrypting every full frame."""
        self.buffer += data
        while len(self.buffer) > FRAME:
            self._frame(bytes(self.buffer[:FRAME]), last=False)
            del self.buffer[:FRAME]
        return len(data)

    def _frame(self, plain: bytes, last: bool) -> None:
        sealed = self.aead.encrypt(_nonce(self.counter, last), plain, self.header)
        self.counter += 1
        self.sink.write(struct.pack(">I", len(sealed)) + sealed)

    def finish(self) -> None:
        """Write the last frame (possibly empty)."""
        self._frame(bytes(self.buffer), last=True)
        self.buffer.clear()


class DecryptReader(io.RawIOBase):
    """Reads the plaintext of an encrypted stream, each frame authenticated before it is returned."""

    def __init__(self, source: "ResponseReader", passphrase: str):
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: PLC0415

        super().__init__()
        self.source = source
        self.header = self._exact(len(MAGIC) + 19)
        if not self.header.startswith(MAGIC):
            raise ScriptError("not-a-backup", "the object is not a Synapse charm backup")
        salt, (log_n, r, p) = self.header[len(MAGIC) : len(MAGIC) + 16], self.header[-3:]
        if not (14 <= log_n <= 17 and r == SCRYPT_R and p == SCRYPT_P):  # at most 128 MiB of memory
            raise ScriptError("not-a-backup", "unsupported key derivation parameters")
        self.aead = AESGCM(_key(passphrase, salt, log_n, r, p))
        self.buffer = b""
        self.counter = 0
        self.done = False

    def _exact(self, size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = self.source.read(size - len(data))
            if not chunk:
                raise ScriptError("corrupt", "the backup is truncated")
            data += chunk
        return data

    def readable(self) -> bool:
        """A read-only stream."""
        return True

    def _next_frame(self) -> None:
        from cryptography.exceptions import InvalidTag  # noqa: PLC0415

        (length,) = struct.unpack(">I", self._exact(4))
        if length > FRAME + 16:
            raise ScriptError("corrupt", "the backup has an oversized frame")
        sealed = self._exact(length)
        for last in (False, True):
            try:
                self.buffer = self.aead.decrypt(_nonce(self.counter, last), sealed, self.header)
            except InvalidTag:
                continue
            self.counter += 1
            self.done = last
            if last and self.source.read(1):
                raise ScriptError("corrupt", "the backup has data after its last frame")
            return
        if self.counter == 0:
            raise ScriptError("wrong-passphrase", "the passphrase does not decrypt this backup (or it is damaged)")
        raise ScriptError("corrupt", f"frame {self.counter} of the backup fails authentication")

    def readinto(self, target: typing.Any) -> int:
        """Fill `target` with authenticated plaintext; 0 at the end of the last frame."""
        while not self.buffer and not self.done:
            self._next_frame()
        size = min(len(target), len(self.buffer))
        target[:size] = self.buffer[:size]
        self.buffer = self.buffer[size:]
        return size


class ResponseReader:
    """The body of a streamed S3 GET."""

    def __init__(self, response: http.client.HTTPResponse):
        self.response = response

    def read(self, size: int) -> bytes:
        """Up to `size` bytes of the body."""
        try:
            return self.response.read(size)
        except (OSError, http.client.HTTPException) as exc:
            raise ScriptError("s3-unreachable", f"reading the backup failed: {exc}") from None


# -- create -------------------------------------------------------------------------------


def _new_id() -> str:
    now = datetime.datetime.now(datetime.UTC)
    return now.strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


def _snapshot_sqlite(path: str, workdir: str) -> str:
    """A consistent copy of the SQLite database with SQLite's online backup API (Synapse keeps serving)."""
    target = os.path.join(workdir, "homeserver.db")
    source = sqlite3.connect(path, timeout=60)
    try:
        dest = sqlite3.connect(target)
        try:
            source.backup(dest)  # one step: a consistent snapshot (WAL readers do not block Synapse)
        finally:
            dest.close()
    finally:
        source.close()
    return target


def _add_tree(archive: tarfile.TarFile, root: str, name: str) -> int:
    """Add a directory tree under `name`; how many files."""
    count = 0
    archive.add(root, arcname=name, recursive=False)
    for directory, dirs, files in os.walk(root):
        dirs.sort()
        for entry in sorted(dirs):
            full = os.path.join(directory, entry)
            if not os.path.islink(full):
                archive.add(full, arcname=os.path.join(name, os.path.relpath(full, root)), recursive=False)
        for entry in sorted(files):
            full = os.path.join(directory, entry)
            if os.path.isfile(full) and not os.path.islink(full):
                archive.add(full, arcname=os.path.join(name, os.path.relpath(full, root)), recursive=False)
                count += 1
    return count


def _add_bytes(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o600, int(datetime.datetime.now(datetime.UTC).timestamp())
    archive.addfile(info, io.BytesIO(data))


def create(request: dict[str, typing.Any]) -> dict[str, typing.Any]:
    """Stream a new backup to S3; its manifest."""
    s3 = S3(request["s3"])
    s3.ensure_bucket()
    backup_id = _new_id()
    prefix = request["prefix"] + BACKUPS + backup_id + "/"
    sqlite_path = request.get("sqlite")
    contents = ["identity"]
    manifest: dict[str, typing.Any] = {
        "format": FORMAT,
        "id": backup_id,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "server_name": request["server_name"],
        "database": "sqlite" if sqlite_path else "postgresql (not included)",
    }
    writer = MultipartWriter(s3, prefix + "archive")
    try:
        # runs as Synapse's uid: the snapshot goes next to the database, in a directory Synapse owns
        snapshot_dir = (
            tempfile.TemporaryDirectory(dir=os.path.dirname(sqlite_path), prefix=".backup-")
            if sqlite_path
            else contextlib.nullcontext("")
        )
        with snapshot_dir as workdir:
            encrypt = EncryptWriter(writer, request["passphrase"])
            with tarfile.open(fileobj=encrypt, mode="w|", format=tarfile.PAX_FORMAT) as archive:
                files = {}
                for name in request["secrets"]:
                    with open(os.path.join(DATA, "secrets", name), "rb") as handle:
                        files[name] = handle.read()
                for directory in request["directories"]:
                    if os.path.isdir(os.path.join(DATA, directory)):
                        contents.append(directory)
                if sqlite_path:
                    contents.append("sqlite-database")
                manifest["contents"] = contents
                _add_bytes(archive, "manifest.json", json.dumps(manifest).encode())
                for name, data in files.items():
                    _add_bytes(archive, f"secrets/{name}", data)
                counts = {}
                for directory in request["directories"]:
                    if os.path.isdir(os.path.join(DATA, directory)):
                        counts[directory] = _add_tree(archive, os.path.join(DATA, directory), directory)
                if sqlite_path:
                    archive.add(_snapshot_sqlite(sqlite_path, workdir), arcname="db/homeserver.db")
            encrypt.finish()
        manifest["size"] = writer.complete()
    except BaseException:
        writer.abort()
        raise
    manifest["files"] = counts
    s3.call("PUT", prefix + "manifest.json", body=json.dumps(manifest).encode())
    return manifest


# -- list, delete ---------------------------------------------------------------------------


def _manifest(s3: S3, prefix: str, backup_id: str) -> dict[str, typing.Any]:
    response = s3.request("GET", prefix + BACKUPS + backup_id + "/manifest.json")
    data = response.read()
    if response.status == 404:
        raise ScriptError("no-such-backup", backup_id)
    if response.status >= 300:
        raise ScriptError("s3-error", _s3_error(response.status, data))
    try:
        manifest = json.loads(data)
    except ValueError:
        raise ScriptError("corrupt", f"the manifest of backup {backup_id} is not JSON") from None
    if not isinstance(manifest, dict):
        raise ScriptError("corrupt", f"the manifest of backup {backup_id} is not an object")
    return manifest


def list_backups(request: dict[str, typing.Any]) -> dict[str, typing.Any]:
    """Every complete backup's manifest (a backup without a manifest is partial: not listed)."""
    s3 = S3(request["s3"])
    found = []
    for key, _ in s3.list(request["prefix"] + BACKUPS):
        if key.endswith("/manifest.json"):
            try:
                found.append(_manifest(s3, request["prefix"], key[len(request["prefix"] + BACKUPS) :].split("/")[0]))
            except ScriptError:
                continue
    return {"backups": found}


def delete(request: dict[str, typing.Any]) -> dict[str, typing.Any]:
    """Delete a backup: its manifest first, so it is never listed half-deleted."""
    s3 = S3(request["s3"])
    prefix = request["prefix"] + BACKUPS + request["id"] + "/"
    keys = [key for key, _ in s3.list(prefix)]
    if prefix + "manifest.json" not in keys:
        raise ScriptError("no-such-backup", request["id"])
    keys.sort(key=lambda key: not key.endswith("manifest.json"))
    for key in keys:
        s3.call("DELETE", key)
    return {"deleted": request["id"]}


# -- restore --------------------------------------------------------------------------------


def _safe_name(name: str, allowed: set[str]) -> str:
    parts = name.split("/")
    if name.startswith("/") or any(part in ("", ".", "..") for part in parts) or parts[0] not in allowed:
        raise ScriptError("corrupt", f"the backup holds an unexpected path {name!r}")
    return name


def _extract(archive: tarfile.TarFile, staging: str, allowed: set[str]) -> typing.Any:
    """Unpack regular files and directories under `allowed` top-level names; the manifest."""
    manifest = None
    for member in archive:
        name = _safe_name(member.name, allowed)
        target = os.path.join(staging, name)
        if member.isdir():
            os.makedirs(target, 0o750, exist_ok=True)
            continue
        source = archive.extractfile(member) if member.isfile() else None
        if source is None:
            raise ScriptError("corrupt", f"the backup holds a non-regular file {name!r}")
        os.makedirs(os.path.dirname(target), 0o750, exist_ok=True)
        with open(target, "wb") as out:
            shutil.copyfileobj(source, out, FRAME)
        os.chmod(target, 0o600 if name.startswith(("secrets/", "db/")) else 0o640)
        if name == "manifest.json":
            with open(target) as handle:
                manifest = json.load(handle)
    return manifest


def stage(request: dict[str, typing.Any]) -> dict[str, typing.Any]:
    """Download, decrypt and unpack a backup into /data/.backup-restore; nothing in use is touched.

    Every frame is authenticated before it is written, and the last frame must arrive, so a
    wrong passphrase or a damaged backup fails here and the staging directory is removed.
    """
    s3 = S3(request["s3"])
    listed = _manifest(s3, request["prefix"], request["id"])
    if listed.get("server_name") != request["server_name"]:
        raise ScriptError("other-server", str(listed.get("server_name")))
    staging = os.path.join(DATA, STAGING)
    shutil.rmtree(staging, ignore_errors=True)
    os.mkdir(staging, 0o700)
    response = s3.request("GET", request["prefix"] + BACKUPS + request["id"] + "/archive")
    if response.status >= 300:
        raise ScriptError("s3-error", _s3_error(response.status, response.read()))
    allowed = {"manifest.json", "secrets", "db", *request["directories"]}
    try:
        reader = io.BufferedReader(DecryptReader(ResponseReader(response), request["passphrase"]), FRAME)
        with tarfile.open(fileobj=reader, mode="r|") as archive:
            manifest = _extract(archive, staging, allowed)
        while reader.read(FRAME):  # read to the end: the last frame's tag must verify
            pass
    except tarfile.TarError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise ScriptError("corrupt", f"the backup's archive is damaged: {exc}") from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if not isinstance(manifest, dict) or manifest.get("server_name") != request["server_name"]:
        shutil.rmtree(staging, ignore_errors=True)
        raise ScriptError("other-server", str((manifest or {}).get("server_name")))
    for directory, _, files in os.walk(staging):
        os.chown(directory, SYNAPSE_UID, SYNAPSE_GID)
        for name in files:
            os.chown(os.path.join(directory, name), SYNAPSE_UID, SYNAPSE_GID)
    return {"manifest": manifest}


def _moves(request: dict[str, typing.Any], source: str) -> list[str]:
    """What a restore replaces, relative to /data, as found under `source`.

    Whole directories for the database (with its WAL files) and the media, single files in
    secrets/ (other files there, e.g. a database CA, stay).
    """
    found = [name for name in ("db", *request["directories"]) if os.path.isdir(os.path.join(source, name))]
    if os.path.isdir(os.path.join(source, "secrets")):
        found += [f"secrets/{name}" for name in sorted(os.listdir(os.path.join(source, "secrets")))]
    return found


def _replace(source: str, target: str, keep: str | None) -> None:
    """Move `source` to `target`, moving what `target` was to `keep` (or deleting it)."""
    if os.path.lexists(target):
        if keep is not None:
            os.makedirs(os.path.dirname(keep), 0o700, exist_ok=True)
            os.rename(target, keep)
        elif os.path.isdir(target) and not os.path.islink(target):
            shutil.rmtree(target)
        else:
            os.unlink(target)
    os.makedirs(os.path.dirname(target), 0o700, exist_ok=True)
    os.rename(source, target)


def swap(request: dict[str, typing.Any]) -> dict[str, typing.Any]:
    """With Synapse stopped: move the current data aside (to .backup-previous), the staged data in.

    Only what the backup holds is replaced (with PostgreSQL there is no db/ in it).
    """
    staging, previous = os.path.join(DATA, STAGING), os.path.join(DATA, PREVIOUS)
    if not os.path.isdir(staging):
        raise ScriptError("not-staged", "no staged restore")
    shutil.rmtree(previous, ignore_errors=True)
    os.mkdir(previous, 0o700)
    moved = _moves(request, staging)
    with open(os.path.join(previous, "moved.json"), "w") as handle:
        json.dump(moved, handle)
    for name in moved:
        _replace(os.path.join(staging, name), os.path.join(DATA, name), os.path.join(previous, name))
    shutil.rmtree(staging, ignore_errors=True)
    return {}


def revert(_: dict[str, typing.Any]) -> dict[str, typing.Any]:
    """Put back the data `swap` moved aside (the restore failed its check)."""
    previous = os.path.join(DATA, PREVIOUS)
    try:
        with open(os.path.join(previous, "moved.json")) as handle:
            moved = json.load(handle)
    except FileNotFoundError:
        return {}
    for name in moved:
        kept = os.path.join(previous, name)
        if os.path.lexists(kept):
            _replace(kept, os.path.join(DATA, name), None)
        elif os.path.lexists(os.path.join(DATA, name)):  # it did not exist before the restore
            _replace(os.path.join(DATA, name), os.path.join(previous, "dropped", name), None)
    shutil.rmtree(previous, ignore_errors=True)
    return {}


def commit(_: dict[str, typing.Any]) -> dict[str, typing.Any]:
    """Drop the previous data after a restore passed its check, and any staging left over."""
    shutil.rmtree(os.path.join(DATA, PREVIOUS), ignore_errors=True)
    shutil.rmtree(os.path.join(DATA, STAGING), ignore_errors=True)
    return {}


COMMANDS = {
    "create": create,
    "list": list_backups,
    "delete": delete,
    "stage": stage,
    "swap": swap,
    "revert": revert,
    "commit": commit,
}


def main() -> None:
    """Run the command of the request on stdin; answer one JSON document on stdout."""
    try:
        request = json.loads(sys.stdin.read())
        answer = {"ok": True, **COMMANDS[request["command"]](request)}
    except ScriptError as exc:
        answer = {"ok": False, "error": exc.code, "detail": exc.detail}
    except (OSError, sqlite3.Error) as exc:
        answer = {"ok": False, "error": "io", "detail": str(exc)}
    sys.stdout.write(json.dumps(answer) + "\n")


if __name__ == "__main__":
    main()
