"""Download remote path parameters (s3://) before a run: the thin adapter over boto3.

The endpoint, region and credentials are boto3's own (AWS_* variables, ~/.aws, instance roles);
MLFLOW_S3_ENDPOINT_URL is honoured too, as `mlflow run` users set it for MinIO and the like.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Callable

from ..errors import ParameterError


def download_inputs(downloads: Mapping[str, str], storage_dir: Path,
                    log: Callable[[str], None] = lambda line: None) -> dict[str, str]:
    """Fetch each URI into its own folder under ``storage_dir``; returns name -> local path."""
    return {name: _download(uri, storage_dir, name, log) for name, uri in downloads.items()}


def _download(uri: str, storage_dir: Path, name: str, log: Callable[[str], None]) -> str:
    bucket, _, key = uri[len("s3://"):].partition("/")
    where = f"parameter {name!r}: {uri}"
    if not bucket:
        raise ParameterError(f"{where}: expected s3://BUCKET/KEY")
    # One folder per URI: reruns overwrite it, different inputs never collide.
    target_dir = storage_dir / hashlib.sha256(uri.encode()).hexdigest()[:16]
    target_dir.mkdir(parents=True, exist_ok=True)
    log(f"downloading {uri}")
    try:
        return _download_into(uri, bucket, key, target_dir, where)
    except BaseException:
        if target_dir.is_dir() and not any(target_dir.iterdir()):
            target_dir.rmdir()  # nothing half-made left behind
        raise


def _download_into(uri: str, bucket: str, key: str, target_dir: Path, where: str) -> str:
    import botocore.exceptions

    client = _client()
    try:
        if key and not key.endswith("/") and _is_object(client, bucket, key):
            final = target_dir / os.path.basename(key)
            _fetch(client, bucket, key, final)
            return str(final)
        prefix = key.rstrip("/") + "/" if key else ""
        final = target_dir / (os.path.basename(key.rstrip("/")) or bucket)
        count = 0
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                rel = obj["Key"][len(prefix):]
                if rel and not rel.endswith("/"):
                    _fetch(client, bucket, obj["Key"], final / rel)
                    count += 1
        if count == 0:
            raise ParameterError(f"{where}: no such object or prefix")
        return str(final)
    except botocore.exceptions.NoCredentialsError:
        raise ParameterError(f"{where}: no AWS credentials (set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY "
                             "or a profile)") from None
    except botocore.exceptions.ClientError as e:
        code = e.response.get("Error", {}).get("Code", "error")
        raise ParameterError(f"{where}: S3 refused the download ({code})") from None
    except botocore.exceptions.EndpointConnectionError as e:
        raise ParameterError(f"{where}: cannot reach S3 ({e})") from None


def _client():  # noqa: ANN202 - boto3's client type
    import boto3  # lazy: boto3 takes ~0.5 s to import

    endpoint = os.environ.get("MLFLOW_S3_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL") or None
    return boto3.client("s3", endpoint_url=endpoint)


def _is_object(client, bucket: str, key: str) -> bool:  # noqa: ANN001
    import botocore.exceptions

    try:
        client.head_object(Bucket=bucket, Key=key)
        return True
    except botocore.exceptions.ClientError as e:
        if e.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return False
        raise


def _fetch(client, bucket: str, key: str, final: Path) -> None:  # noqa: ANN001
    """Download aside, then rename: an interrupted download never looks like a complete file."""
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=final.parent, prefix=".part-")
    os.close(fd)
    try:
        client.download_file(bucket, key, tmp)
        os.replace(tmp, final)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


