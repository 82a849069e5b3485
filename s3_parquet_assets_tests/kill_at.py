"""Run one load in this process and SIGKILL it at a chosen AWS call.

usage: python -m s3_parquet_assets_tests.kill_at EVENT_NAME NTH '<event json>'
(EVENT_NAME like ``before-call.s3.UploadPart``; endpoint and credentials from the environment)
"""

from __future__ import annotations

import json
import sys

import boto3

from s3_parquet_assets.core import Tuning, handle_event, make_clients

from .faults import install_kill


def main() -> int:
    event_name, nth, raw = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    session = boto3.Session()
    install_kill(session, event_name, nth)
    # small parts so a small test object still goes up in several parts; a short lease so the
    # rerun after the kill can take it over quickly
    tuning = Tuning(part_size=5 * 1024 * 1024, row_group_rows=50_000, lease_ttl_seconds=3)
    out = handle_event(json.loads(raw), make_clients(session), tuning=tuning)
    print(json.dumps(out, default=str))
    return 0 if out["statusCode"] == 200 else 1


if __name__ == "__main__":
    sys.exit(main())
