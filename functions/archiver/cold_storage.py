"""Cold storage for exported archive rows: a local directory or an S3 prefix, behind one small interface.

The S3 client is injected (moto in tests, the cached boto3 client in AWS). Errors come out as
``StorageError`` naming the operation and the object key (ids and dates only), never the data.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from .exceptions import ConfigError, StorageError


class ColdStorage(Protocol):
    url: str

    def put(self, key: str, data: bytes) -> None: ...
    def get(self, key: str) -> bytes: ...
    def exists(self, key: str) -> bool: ...
    def list(self, prefix: str) -> list[str]: ...
    def delete(self, key: str) -> None: ...


class LocalStorage:
    """A directory; writes go to a temporary file renamed into place, so a reader never sees half a file."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.url = str(root)

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise StorageError(f"key {key!r} leaves the export directory")
        return path

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        tmp = path.with_name(path.name + ".tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(data)
            os.replace(tmp, path)
        except OSError as exc:
            raise StorageError(f"cannot write {key}: {exc.strerror}") from None

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except OSError as exc:
            raise StorageError(f"cannot read {key}: {exc.strerror}") from None

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str) -> list[str]:
        base = self._path(prefix) if prefix else self.root
        if not base.is_dir():
            return []
        return sorted(str(p.relative_to(self.root)) for p in base.rglob("*") if p.is_file()
                      and not p.name.endswith(".tmp"))

    def delete(self, key: str) -> None:
        try:
            self._path(key).unlink(missing_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot delete {key}: {exc.strerror}") from None


class S3Storage:
    """``s3://bucket/prefix``. A rewrite (erasure) also removes the object's older versions, so an
    erased record does not live on in a versioned bucket."""

    def __init__(self, bucket: str, prefix: str, client: Any) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.client = client
        self.url = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _call(self, what: str, key: str, fn: Any, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn(Bucket=self.bucket, **kwargs)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "?")
            raise StorageError(f"cannot {what} {key} in s3://{self.bucket}: {code}") from None
        except BotoCoreError as exc:
            raise StorageError(f"cannot {what} {key} in s3://{self.bucket}: {type(exc).__name__}") from None

    def put(self, key: str, data: bytes) -> None:
        self._call("write", key, self.client.put_object, Key=self._key(key), Body=data)

    def get(self, key: str) -> bytes:
        body = self._call("read", key, self.client.get_object, Key=self._key(key))["Body"]
        return bytes(body.read())

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(key))
            return True
        except ClientError:
            return False

    def list(self, prefix: str) -> list[str]:
        out: list[str] = []
        token: dict[str, Any] = {}
        strip = len(self.prefix) + 1 if self.prefix else 0
        while True:
            page = self._call("list", prefix, self.client.list_objects_v2, Prefix=self._key(prefix), **token)
            out += [o["Key"][strip:] for o in page.get("Contents", [])]
            if not page.get("IsTruncated"):
                return sorted(out)
            token = {"ContinuationToken": page["NextContinuationToken"]}

    def delete(self, key: str) -> None:
        self._call("delete", key, self.client.delete_object, Key=self._key(key))

    def purge_old_versions(self, key: str) -> None:
        full = self._key(key)
        page = self._call("list versions of", key, self.client.list_object_versions, Prefix=full)
        for v in page.get("Versions", []) + page.get("DeleteMarkers", []):
            if v["Key"] == full and not v.get("IsLatest"):
                self._call("delete a version of", key, self.client.delete_object, Key=full, VersionId=v["VersionId"])


def open_storage(dest: str, s3_client: Any = None) -> ColdStorage:
    """``s3://bucket/prefix`` or a local directory."""
    if not dest or not dest.strip():
        raise ConfigError("--to/--from: a destination is needed (s3://bucket/prefix or a directory)")
    if dest.startswith("s3://"):
        parts = urlsplit(dest)
        if not parts.netloc:
            raise ConfigError(f"not an S3 location: {dest!r}; expected s3://bucket/prefix")
        if s3_client is None:
            from .aws import client

            s3_client = client("s3")
        return S3Storage(parts.netloc, parts.path, s3_client)
    if "://" in dest:
        raise ConfigError(f"unsupported destination {dest!r}: use s3://bucket/prefix or a directory")
    return LocalStorage(Path(dest))
