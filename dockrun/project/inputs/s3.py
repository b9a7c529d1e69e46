"""s3:// inputs: the thin adapter over boto3.

The endpoint, region and credentials are boto3's own (AWS_* variables, ~/.aws, instance roles);
MLFLOW_S3_ENDPOINT_URL is honoured too, as `mlflow run` users set it for MinIO and the like.
"""
from __future__ import annotations

import os
import posixpath
from collections.abc import Mapping
from typing import Callable

from ...errors import ParameterError
from .local import Download, Entry, Fetched, Fingerprint, sync


def fetch(d: Download, save: Callable[[Mapping[str, Fingerprint]], None]) -> Fetched:
    import botocore.exceptions  # lazy: boto3 takes ~0.5 s to import

    bucket, _, key = d.uri[len("s3://"):].partition("/")
    if not bucket:
        raise ParameterError(f"{d.where}: expected s3://BUCKET/KEY")
    client = _client()
    try:
        head = _head(client, bucket, key) if key and not key.endswith("/") else None
        if head is not None:
            name = posixpath.basename(key)
            entries = [Entry(key, name, {"etag": head["ETag"], "size": head["ContentLength"]})]
        else:
            prefix = key.rstrip("/") + "/" if key else ""
            name = posixpath.basename(key.rstrip("/")) or bucket
            entries = [Entry(obj["Key"], f"{name}/{obj['Key'][len(prefix):]}",
                             {"etag": obj.get("ETag"), "size": obj["Size"]})
                       for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
                       for obj in page.get("Contents", [])
                       if obj["Key"] != prefix and not obj["Key"].endswith("/")]  # folder markers
            if not entries:
                raise ParameterError(f"{d.where}: no such object or prefix")
        return sync(d, name, entries, lambda e, tmp: client.download_file(bucket, e.key, tmp), save)
    except botocore.exceptions.NoCredentialsError:
        raise ParameterError(f"{d.where}: no AWS credentials (set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY "
                             "or a profile)") from None
    except botocore.exceptions.ClientError as e:
        code = e.response.get("Error", {}).get("Code", "error")
        raise ParameterError(f"{d.where}: S3 refused the download ({code})") from None
    except botocore.exceptions.EndpointConnectionError as e:
        raise ParameterError(f"{d.where}: cannot reach S3 ({e})") from None


def _client():  # noqa: ANN202 - boto3's client type
    import boto3
    from botocore.config import Config

    endpoint = os.environ.get("MLFLOW_S3_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL") or None
    # A bucket others hammer answers 503 SlowDown: back off and go on rather than fail the run
    # (boto3's default gives up after 4 retries). A user's own AWS_MAX_ATTEMPTS / config still wins.
    retries = None if os.environ.get("AWS_MAX_ATTEMPTS") or os.environ.get("AWS_RETRY_MODE") else \
        {"mode": "standard", "max_attempts": 10}
    return boto3.client("s3", endpoint_url=endpoint, config=Config(retries=retries) if retries else None)


def _head(client, bucket: str, key: str) -> dict | None:  # noqa: ANN001
    """The object's metadata, or None when ``key`` is no object (then it may be a prefix)."""
    import botocore.exceptions

    try:
        return client.head_object(Bucket=bucket, Key=key)
    except botocore.exceptions.ClientError as e:
        if e.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return None
        raise
