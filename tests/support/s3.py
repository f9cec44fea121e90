"""S3 for the dead-letter store: moto as a real S3-compatible server on localhost, and what it holds."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

# moto accepts any credentials; these make boto3 sign requests without looking for real ones.
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


@contextmanager
def moto_server() -> Iterator[str]:
    """moto's server on 127.0.0.1, reached the way TOS or MinIO would be; yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    # Its werkzeug server prints a line per request on stderr (`make bench` sent thousands): warnings only.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def names(bucket: str, endpoint: str) -> list[str]:
    """The name of every object in the bucket."""
    import boto3

    pages = boto3.client("s3", endpoint_url=endpoint).get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


def objects(bucket: str, endpoint: str) -> dict[str, dict[str, Any]]:
    """Every object in the bucket, by name, as the JSON document it holds."""
    import boto3

    s3 = boto3.client("s3", endpoint_url=endpoint)
    return {k: json.loads(s3.get_object(Bucket=bucket, Key=k)["Body"].read()) for k in names(bucket, endpoint)}


def pending(bucket: str, endpoint: str, prefix: str = "") -> dict[str, dict[str, Any]]:
    """The stored callbacks (not the records of what was sent), by name."""
    return {
        name: doc
        for name, doc in objects(bucket, endpoint).items()
        if name.startswith(prefix) and "/sent/" not in f"/{name}"
    }


def stored_events(bucket: str, endpoint: str, prefix: str = "") -> list[dict[str, Any]]:
    """Every event still in the store, in either format."""
    events = []
    for doc in pending(bucket, endpoint, prefix).values():
        events += [item["event"] for item in doc.get("events", [])] + ([doc["event"]] if "event" in doc else [])
    return events
