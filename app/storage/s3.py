"""The object store over the S3 API (``CLOSECAST_MODEL_STORE=s3://bucket/prefix``), with boto3.

Credentials, endpoint and region come from the standard AWS settings that boto3 reads itself
(``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION``, ``AWS_ENDPOINT_URL``, a profile or
an instance role), so AWS S3, MinIO, Ceph RGW and Cloudflare R2 all work unchanged. With an endpoint URL
(everything but AWS) requests use path-style addressing (``http://host/bucket/key``), which every
S3-compatible server accepts; AWS itself gets virtual-hosted addressing.

boto3 rather than s3fs: the calls needed are five plain blocking ones, boto3 is AWS's own SDK (the reference
for S3-compatible servers), it brings two packages (botocore, s3transfer: multipart uploads and parallel
downloads of big files) where s3fs brings fsspec, aiobotocore and aiohttp, and s3fs pins one botocore
range, which conflicts with any other boto3 user. Every failure becomes ``ObjectStoreError`` (an
``OSError``) whose message names the bucket and the cause, never a credential.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from closecast.objectstore import ObjectStoreError

SCHEME = "s3://"
_MISSING = {"404", "NoSuchKey", "NotFound"}
_TRANSFER = TransferConfig(max_concurrency=4, use_threads=True)


def parse_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> (``bucket``, ``some/prefix``); ValueError naming the value otherwise."""
    if not url.startswith(SCHEME) or not url[len(SCHEME) :].split("/", 1)[0]:
        raise ValueError(
            f"CLOSECAST_MODEL_STORE is {url[:80]!r}; use s3://bucket or s3://bucket/prefix "
            "(endpoint and credentials come from AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)"
        )
    bucket, _, prefix = url[len(SCHEME) :].partition("/")
    return bucket, prefix.strip("/")


def make_client() -> Any:
    """An S3 client from the standard AWS settings; path-style addressing when an endpoint URL is set."""
    custom = bool(os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL"))
    config = Config(
        connect_timeout=5,
        read_timeout=60,
        retries={"max_attempts": 4, "mode": "standard"},
        s3={"addressing_style": "path" if custom else "auto"},
    )
    return boto3.session.Session().client("s3", config=config)


class S3Store:
    """One bucket and prefix (implements ``closecast.objectstore.ObjectStore``); thread-safe (one client)."""

    def __init__(self, url: str, client: Any | None = None) -> None:
        self.bucket, self.prefix = parse_url(url)
        self.url = url
        self._client = client if client is not None else make_client()

    def _full(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    @contextmanager
    def _errors(self, what: str, key: str) -> Iterator[None]:
        try:
            yield
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "?")
            raise ObjectStoreError(
                f"object store s3://{self.bucket}: {what} {key!r} failed ({code})"
            ) from exc
        except BotoCoreError as exc:
            raise ObjectStoreError(
                f"object store s3://{self.bucket}: {what} {key!r} failed ({type(exc).__name__})"
            ) from exc

    def _maybe(self, what: str, key: str, call: Callable[[], Any]) -> Any:
        """``call()``, or None when the key does not exist."""
        try:
            return call()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in _MISSING:
                return None
            with self._errors(what, key):
                raise

    def get(self, key: str) -> bytes | None:
        response = self._maybe(
            "get", key, lambda: self._client.get_object(Bucket=self.bucket, Key=self._full(key))
        )
        if response is None:
            return None
        with self._errors("get", key):
            data: bytes = response["Body"].read()
        return data

    def put(self, key: str, data: bytes) -> None:
        with self._errors("put", key):
            self._client.put_object(Bucket=self.bucket, Key=self._full(key), Body=data)

    def download(self, key: str, path: Path) -> bool:
        """One GET streamed to ``path`` (``download_file`` would add a HEAD first: a round trip per file)."""
        response = self._maybe(
            "download", key, lambda: self._client.get_object(Bucket=self.bucket, Key=self._full(key))
        )
        if response is None:
            return False
        with self._errors("download", key), path.open("wb") as fh:
            for chunk in response["Body"].iter_chunks(1 << 20):
                fh.write(chunk)
        return True

    def upload(self, key: str, path: Path) -> None:
        with self._errors("upload", key):
            self._client.upload_file(str(path), self.bucket, self._full(key), Config=_TRANSFER)

    def keys(self, prefix: str) -> list[str]:
        full = self._full(prefix)
        strip = len(self._full(""))
        found: list[str] = []
        with self._errors("list", prefix):
            for page in self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=full
            ):
                found += [item["Key"][strip:] for item in page.get("Contents", ())]
        return sorted(found)

    def delete(self, keys: list[str]) -> None:
        for start in range(0, len(keys), 1000):  # DeleteObjects takes at most 1000 keys
            batch = [{"Key": self._full(k)} for k in keys[start : start + 1000]]
            with self._errors("delete", keys[start]):
                self._client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
