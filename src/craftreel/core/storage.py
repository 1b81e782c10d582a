"""Where media bytes live: local disk (default) or any S3-compatible store, behind one interface.

Object keys are always made by us (ids, rendition names), never taken from user file names.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import mimetypes
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote

from craftreel.core.errors import InvalidInput

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from craftreel.core.db import UnitOfWork

EXTRA_TYPES = {
    ".m3u8": "application/vnd.apple.mpegurl",
    ".m4s": "video/iso.segment",
    ".ts": "video/mp2t",
    ".vtt": "text/vtt",
    ".webp": "image/webp",
    ".mp4": "video/mp4",
    ".m4a": "audio/mp4",
    ".json": "application/json",
}
#: Types a browser may render inline; anything else is served as a download.
SAFE_INLINE = frozenset(
    {
        "application/vnd.apple.mpegurl",
        "video/iso.segment",
        "video/mp2t",
        "video/mp4",
        "audio/mp4",
        "audio/mpeg",
        "text/vtt",
        "image/jpeg",
        "image/png",
        "image/webp",
        "image/gif",
        "application/json",
    }
)


def content_type_for(key: str) -> str:
    """The served type for a key, from its (our own) extension."""
    suffix = Path(key).suffix.lower()
    return EXTRA_TYPES.get(suffix) or mimetypes.guess_type(key)[0] or "application/octet-stream"


@dataclass(frozen=True)
class ObjectInfo:
    size: int
    etag: str
    modified: float


class Storage(Protocol):
    """The operations every backend offers."""

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        """Store ``data`` at ``key`` atomically (readers never see half a file)."""
        ...

    async def put_file(self, key: str, path: Path, content_type: str, move: bool = False) -> None:
        """Store a local file at ``key`` without reading it whole into memory."""
        ...

    async def get_to_file(self, key: str, path: Path) -> None:
        """Copy the object at ``key`` to a local file (streamed)."""
        ...

    async def fetch(self, key: str, folder: Path) -> Path:
        """A local file with the object's bytes: the stored file itself on local disk, else a
        download into ``folder``."""
        ...

    async def stat(self, key: str) -> ObjectInfo | None:
        """Size and ETag of ``key``, or None when it does not exist."""
        ...

    async def delete(self, key: str) -> None:
        """Remove ``key``; removing a missing key is not an error."""
        ...

    async def delete_prefix(self, prefix: str) -> int:
        """Remove every object under ``prefix/``; returns how many."""
        ...

    def public_url(self, key: str) -> str:
        """The URL a browser fetches public ``key`` from."""
        ...

    def signed_url(self, key: str, ttl_seconds: int) -> str:
        """A short-lived URL for private ``key``."""
        ...

    async def start_multipart(self, key: str, content_type: str) -> str:
        """Begin a multipart upload; returns its id."""
        ...

    async def upload_part(self, key: str, upload_id: str, number: int, path: Path) -> str:
        """Upload one part from a local file, which may be consumed; returns the part's ETag."""
        ...

    async def complete_multipart(
        self, key: str, upload_id: str, parts: list[tuple[int, str]]
    ) -> None:
        """Join the parts, in order, into the object at ``key``."""
        ...

    async def abort_multipart(self, key: str, upload_id: str) -> None:
        """Drop a multipart upload and its parts."""
        ...


def check_key(key: str) -> str:
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise InvalidInput("Bad storage key.", key=key)
    return key


def remove_on_rollback(
    uow: UnitOfWork, storage: Storage, key: str, *, prefix: bool = False
) -> None:
    """Delete ``key`` (with ``prefix``, everything under ``key/``) if ``uow`` rolls back or its
    commit fails — and only then: for a file stored before the rows that name it commit, so
    a transaction that never lands leaves no stray file behind."""
    uow.on_rollback(storage.delete_prefix if prefix else storage.delete, key)


def signed_scope(key: str) -> str:
    """What a signature covers: the object's folder (``media/<id>``), so that the relative
    URLs inside an HLS playlist, which resolve under the same signed path, work too."""
    parts = check_key(key).split("/")
    return "/".join(parts[:2]) if len(parts) > 2 else key


def sign_scope(secret: bytes, scope: str, expires: int) -> str:
    mac = hmac.new(secret, f"media\n{scope}\n{expires}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).decode().rstrip("=")


def app_signed_url(secret: bytes, key: str, ttl_seconds: int, prefix: str = "/media/") -> str:
    """A short-lived URL the app itself serves (on S3 it hands out presigned URLs from there)."""
    expires = int(time.time()) + ttl_seconds
    signature = sign_scope(secret, signed_scope(key), expires)
    return f"{prefix}_s/{expires}/{signature}/{quote(key)}"


def verify_scope(secret: bytes, key: str, expires: int, signature: str) -> bool:
    if expires < int(time.time()):
        return False
    return hmac.compare_digest(sign_scope(secret, signed_scope(key), expires), signature)


class LocalStorage:
    """Files under a folder, served by the app at ``/media/`` (Range, ETag, long cache)."""

    def __init__(self, root: Path, secret: bytes, url_prefix: str = "/media/") -> None:
        self.root = root
        self.secret = secret
        self.url_prefix = url_prefix

    def path(self, key: str) -> Path:
        return self.root / check_key(key)

    def _tmp_for(self, path: Path) -> Path:
        return path.with_name(f".{path.name}.{os.getpid()}.{time.monotonic_ns()}.tmp")

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        path = self.path(key)

        def write() -> None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self._tmp_for(path)
            tmp.write_bytes(data)
            tmp.replace(path)

        await asyncio.to_thread(write)

    async def put_file(self, key: str, path: Path, content_type: str, move: bool = False) -> None:
        target = self.path(key)

        def copy() -> None:
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = self._tmp_for(target)
            if move:
                try:
                    path.replace(tmp)
                except OSError:  # another filesystem
                    shutil.copyfile(path, tmp)
                    path.unlink()
            else:
                shutil.copyfile(path, tmp)
            tmp.replace(target)

        await asyncio.to_thread(copy)

    async def get_to_file(self, key: str, path: Path) -> None:
        await asyncio.to_thread(shutil.copyfile, self.path(key), path)

    async def fetch(self, key: str, folder: Path) -> Path:
        return self.path(key)

    async def stat(self, key: str) -> ObjectInfo | None:
        try:
            st = await asyncio.to_thread(os.stat, self.path(key))
        except FileNotFoundError:
            return None
        etag = f'"{st.st_size:x}-{int(st.st_mtime_ns):x}"'
        return ObjectInfo(size=st.st_size, etag=etag, modified=st.st_mtime)

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self.path(key).unlink, missing_ok=True)

    async def delete_prefix(self, prefix: str) -> int:
        folder = self.path(prefix.rstrip("/"))

        def remove() -> int:
            if not folder.exists():
                return 0
            count = sum(1 for p in folder.rglob("*") if p.is_file())
            shutil.rmtree(folder, ignore_errors=True)
            return count

        return await asyncio.to_thread(remove)

    def public_url(self, key: str) -> str:
        return self.url_prefix + quote(check_key(key))

    def signed_url(self, key: str, ttl_seconds: int) -> str:
        return app_signed_url(self.secret, key, ttl_seconds, self.url_prefix)

    # Multipart on local disk: parts are files in a hidden folder, joined by streaming.
    def _parts_dir(self, key: str, upload_id: str) -> Path:
        return self.root / ".multipart" / upload_id

    async def start_multipart(self, key: str, content_type: str) -> str:
        upload_id = hashlib.sha256(f"{key}{time.time_ns()}".encode()).hexdigest()[:32]
        await asyncio.to_thread(self._parts_dir(key, upload_id).mkdir, parents=True)
        return upload_id

    async def upload_part(self, key: str, upload_id: str, number: int, path: Path) -> str:
        # Same disk: the part file is moved, not copied.
        target = self._parts_dir(key, upload_id) / f"{number:05d}"
        await asyncio.to_thread(path.replace, target)
        return str(number)

    async def complete_multipart(
        self, key: str, upload_id: str, parts: list[tuple[int, str]]
    ) -> None:
        folder = self._parts_dir(key, upload_id)
        target = self.path(key)

        def join() -> None:
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = self._tmp_for(target)
            with tmp.open("wb") as out:
                for number, _ in sorted(parts):
                    with (folder / f"{number:05d}").open("rb") as part:
                        shutil.copyfileobj(part, out, 1024 * 1024)
            tmp.replace(target)
            shutil.rmtree(folder, ignore_errors=True)

        await asyncio.to_thread(join)

    async def abort_multipart(self, key: str, upload_id: str) -> None:
        await asyncio.to_thread(shutil.rmtree, self._parts_dir(key, upload_id), True)


class S3Storage:
    """Any S3-compatible store; boto3 calls run in threads so the event loop never blocks."""

    def __init__(
        self,
        bucket: str,
        endpoint_url: str | None,
        region: str,
        access_key: str | None,
        secret_key: str | None,
        path_style: bool,
        public_base_url: str | None = None,
    ) -> None:
        import boto3
        from botocore.config import Config

        self.bucket = bucket
        self.public_base_url = public_base_url
        self.client: S3Client = boto3.client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=region,
            aws_access_key_id=access_key,
            aws_secret_access_key=secret_key,
            config=Config(
                s3={"addressing_style": "path" if path_style else "auto"},
                retries={"max_attempts": 5, "mode": "standard"},
                signature_version="s3v4",
            ),
        )

    async def _call(self, fn: Any, /, **kwargs: Any) -> Any:
        return await asyncio.to_thread(fn, **kwargs)

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        await self._call(
            self.client.put_object,
            Bucket=self.bucket,
            Key=check_key(key),
            Body=data,
            ContentType=content_type,
        )

    async def put_file(self, key: str, path: Path, content_type: str, move: bool = False) -> None:
        await self._call(
            self.client.upload_file,
            Filename=str(path),
            Bucket=self.bucket,
            Key=check_key(key),
            ExtraArgs={"ContentType": content_type},
        )
        if move:
            await asyncio.to_thread(path.unlink, missing_ok=True)

    async def get_to_file(self, key: str, path: Path) -> None:
        await self._call(
            self.client.download_file, Bucket=self.bucket, Key=check_key(key), Filename=str(path)
        )

    async def read(self, key: str) -> bytes:
        """A small object's bytes (playlists)."""
        result = await self._call(self.client.get_object, Bucket=self.bucket, Key=check_key(key))
        return await asyncio.to_thread(result["Body"].read)

    async def fetch(self, key: str, folder: Path) -> Path:
        await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
        path = folder / Path(key).name
        await self.get_to_file(key, path)
        return path

    async def stat(self, key: str) -> ObjectInfo | None:
        from botocore.exceptions import ClientError

        try:
            head = await self._call(self.client.head_object, Bucket=self.bucket, Key=check_key(key))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        return ObjectInfo(
            size=int(head["ContentLength"]),
            etag=str(head["ETag"]),
            modified=head["LastModified"].timestamp(),
        )

    async def delete(self, key: str) -> None:
        await self._call(self.client.delete_object, Bucket=self.bucket, Key=check_key(key))

    async def delete_prefix(self, prefix: str) -> int:
        prefix = check_key(prefix.rstrip("/")) + "/"
        removed = 0
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
            if token:
                kwargs["ContinuationToken"] = token
            page = await self._call(self.client.list_objects_v2, **kwargs)
            keys = [{"Key": obj["Key"]} for obj in page.get("Contents", [])]
            if keys:
                await self._call(
                    self.client.delete_objects, Bucket=self.bucket, Delete={"Objects": keys}
                )
                removed += len(keys)
            if not page.get("IsTruncated"):
                return removed
            token = page.get("NextContinuationToken")

    def public_url(self, key: str) -> str:
        if self.public_base_url:
            return f"{self.public_base_url.rstrip('/')}/{quote(check_key(key))}"
        return self.signed_url(key, 7 * 24 * 3600)

    def signed_url(self, key: str, ttl_seconds: int) -> str:
        return str(
            self.client.generate_presigned_url(
                "get_object",
                Params={"Bucket": self.bucket, "Key": check_key(key)},
                ExpiresIn=ttl_seconds,
            )
        )

    async def start_multipart(self, key: str, content_type: str) -> str:
        result = await self._call(
            self.client.create_multipart_upload,
            Bucket=self.bucket,
            Key=check_key(key),
            ContentType=content_type,
        )
        return str(result["UploadId"])

    async def upload_part(self, key: str, upload_id: str, number: int, path: Path) -> str:
        def send() -> str:
            with path.open("rb") as body:
                result = self.client.upload_part(
                    Bucket=self.bucket,
                    Key=check_key(key),
                    UploadId=upload_id,
                    PartNumber=number,
                    Body=body,
                )
            return str(result["ETag"])

        return await asyncio.to_thread(send)

    async def complete_multipart(
        self, key: str, upload_id: str, parts: list[tuple[int, str]]
    ) -> None:
        await self._call(
            self.client.complete_multipart_upload,
            Bucket=self.bucket,
            Key=check_key(key),
            UploadId=upload_id,
            MultipartUpload={
                "Parts": [{"PartNumber": n, "ETag": etag} for n, etag in sorted(parts)]
            },
        )

    async def abort_multipart(self, key: str, upload_id: str) -> None:
        from botocore.exceptions import ClientError

        try:
            await self._call(
                self.client.abort_multipart_upload,
                Bucket=self.bucket,
                Key=check_key(key),
                UploadId=upload_id,
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "NoSuchUpload":
                raise
