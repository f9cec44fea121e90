"""Post sample callbacks to a running relay and print its answers (standard library only).

python3 samples/post.py                          # every sample, to http://localhost:8080/
python3 samples/post.py samples/metric.json      # one sample
PORT=9000 python3 samples/post.py                # to `make run PORT=9000`'s relay
python3 samples/post.py --url https://<your function URL>/ --token <CALLBACK_TOKEN>
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
import uuid
from pathlib import Path

# Event states that end an event's alert, as the relay's defaults have them (EVENT_CLOSING_STATES).
ENDING_STATES = ("succeeded", "completed", "rejected", "canceled")


def closes(path: Path) -> bool:
    """Whether a sample may close an alert another opens: a metric recovery, or an event in an ending state."""
    callback = json.loads(path.read_text(encoding="utf-8"))
    event_type = str(callback.get("EventType") or "").lower()
    return str(callback.get("Type") or "").endswith("Recovered") or event_type.endswith(ENDING_STATES)


# Firings first: a recovery posted before its firing would leave the alert open in Flashduty.
def order(path: Path) -> tuple[bool, str]:
    return closes(path), path.name


SAMPLES = sorted(Path(__file__).parent.glob("*.json"), key=order)


def post(url: str, path: Path, token: str | None) -> int:
    headers = {"Content-Type": "application/json", "x-volc-trace-id": str(uuid.uuid4())}
    if token:
        headers["Token"] = token
    request = urllib.request.Request(url, data=path.read_bytes(), headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status, body = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, body = error.code, error.read()
    print(f"--- {path.name}: HTTP {status}")
    try:
        print(json.dumps(json.loads(body), ensure_ascii=False, indent=2))
    except ValueError:
        print(body.decode("utf-8", "replace"))
    return status


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("samples", nargs="*", type=Path, default=SAMPLES)
    # make run's port, from the same variable (`PORT ?= 8080` in the Makefile)
    parser.add_argument("--url", default=f"http://localhost:{os.environ.get('PORT') or 8080}/")
    parser.add_argument("--token", help="the relay's CALLBACK_TOKEN, sent in the Token header")
    args = parser.parse_args()
    try:
        statuses = [post(args.url, path, args.token) for path in sorted(args.samples, key=order)]
    except urllib.error.URLError as error:
        sys.exit(
            f"cannot reach {args.url}: {error.reason} (is the relay running? `make run`; started with PORT=<port>, "
            "post with PORT=<port> python3 samples/post.py, or --url)"
        )
    return 0 if all(200 <= s < 300 for s in statuses) else 1


if __name__ == "__main__":
    sys.exit(main())
