"""Run one load in this process and SIGKILL it at a chosen point.

usage: python -m s3_parquet_assets_tests.reliability.killer POINT NTH '<event json>' [SECONDS_LEFT]

POINT is a botocore event name (``before-call.s3.UploadPart``: killed the NTH time it fires), optionally
``EVENT@after=OTHER`` (count EVENT only once OTHER has fired: a point pinned to a phase of the load
whatever calls come before it), or ``read-bytes`` (killed once NTH bytes of the source body have been
read: mid-read). Endpoint and
credentials come from the environment. The lease is short so the rerun can take it over soon; with
SECONDS_LEFT the load runs as a Lambda would, with a deadline that many seconds away and the default
5-minute lease (which the deadline caps), stopping 1 s before the deadline.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from typing import Any

import boto3
from botocore.response import StreamingBody

from s3_parquet_assets.core import Tuning, deadline_from_remaining_ms, handle_event, make_clients

from ..faults import install_kill

LEASE_TTL = 2.0


class _KillingRaw:
    def __init__(self, raw: Any, limit: int) -> None:
        self._raw = raw
        self._left = limit

    def read(self, amt: int | None = None) -> bytes:
        if self._left <= 0:
            os.kill(os.getpid(), signal.SIGKILL)
        data: bytes = self._raw.read(amt)
        self._left -= len(data)
        return data

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self._raw.close()


def kill_mid_read(session: boto3.Session, limit: int) -> None:
    def hook(http_response: Any, parsed: dict[str, Any], **_kw: Any) -> None:
        body = parsed.get("Body")
        if body is not None and http_response.status_code < 300 and "/_leases/" not in http_response.url:
            parsed["Body"] = StreamingBody(_KillingRaw(body._raw_stream, limit), parsed.get("ContentLength"))

    session.events.register("after-call.s3.GetObject", hook)


def kill_after(session: boto3.Session, event_name: str, nth: int, after: str) -> None:
    armed: list[int] = []
    seen: list[int] = []

    def arm(**_kw: Any) -> None:
        armed.append(1)

    def hook(**_kw: Any) -> None:
        if armed:
            seen.append(1)
            if len(seen) == nth:
                os.kill(os.getpid(), signal.SIGKILL)

    session.events.register(after, arm)
    session.events.register(event_name, hook)


def main() -> int:
    point, nth, raw = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    session = boto3.Session()
    if point == "read-bytes":
        kill_mid_read(session, nth)
    elif "@after=" in point:
        event_name, after = point.split("@after=", 1)
        kill_after(session, event_name, nth, after)
    else:
        install_kill(session, point, nth)
    left = float(sys.argv[4]) if len(sys.argv) > 4 else None
    tuning = Tuning(
        part_size=5 * 1024 * 1024,
        row_group_rows=20_000,
        block_size=1024 * 1024,
        lease_ttl_seconds=LEASE_TTL if left is None else Tuning.lease_ttl_seconds,
        stop_margin_seconds=1.0,
    )
    clients = make_clients(session)
    deadline = None if left is None else deadline_from_remaining_ms(int(left * 1000))
    out = handle_event(json.loads(raw), clients, tuning=tuning, deadline=deadline)
    print(json.dumps(out, default=str))
    return 0 if out["statusCode"] == 200 else 1


if __name__ == "__main__":
    sys.exit(main())
