"""A per-day lease so two loads of the same day never interleave (a Lambda retry beside a Dagster run).

The lease is one small JSON object, ``{pathoutput}/_leases/data_ref={day}.json`` in the destination
bucket, created with an S3 conditional write (``If-None-Match: *``): exactly one writer wins. It
carries an expiry; the holder renews it on a background thread while the load runs, and an expired
lease (its holder was killed) is taken over with ``If-Match`` on its ETag, so again only one taker wins.
The loser fails fast with a message naming the holder. Different days use different objects and never
wait on each other. The ``_leases`` folder is outside every partition and ignored by Hive-style readers.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from .errors import LoadError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = ["DayLease", "lease_key"]

log = logging.getLogger(__name__)

_CONFLICT = {"PreconditionFailed", "ConditionalRequestConflict", "412", "409"}


def lease_key(table_root: str, data_ref: str) -> str:
    return f"{table_root}/_leases/data_ref={data_ref}.json"


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


@dataclass
class _Held:
    etag: str
    expires_at: datetime


class DayLease:
    """Context manager holding the lease of one day for one load.

    Parameters
    ----------
    s3, bucket, key
        Where the lease object lives.
    load_id
        The holder's id (shown to a load that loses the race).
    ttl
        How long the lease lasts without renewal; renewed every ``ttl / 3`` while held.
    extra
        Extra PutObject arguments (encryption, expected bucket owner).
    """

    def __init__(
        self,
        s3: S3Client,
        bucket: str,
        key: str,
        load_id: str,
        *,
        ttl: timedelta = timedelta(minutes=5),
        extra: dict[str, Any] | None = None,
    ) -> None:
        self._s3 = s3
        self.bucket = bucket
        self.key = key
        self.load_id = load_id
        self._ttl = ttl
        self._extra = dict(extra or {})
        self._held: _Held | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lost: str | None = None

    @property
    def _owner(self) -> dict[str, Any]:
        return {k: v for k, v in self._extra.items() if k == "ExpectedBucketOwner"}

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    def _body(self, now: datetime) -> bytes:
        return json.dumps(
            {
                "load_id": self.load_id,
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "acquired_at": now.isoformat(),
                "expires_at": (now + self._ttl).isoformat(),
            }
        ).encode()

    def _put(self, condition: dict[str, str]) -> _Held:
        now = datetime.now(UTC)
        resp = self._s3.put_object(
            Bucket=self.bucket,
            Key=self.key,
            Body=self._body(now),
            ContentType="application/json",
            **condition,  # type: ignore[arg-type]
            **self._extra,
        )
        return _Held(etag=str(resp["ETag"]), expires_at=now + self._ttl)

    def acquire(self) -> None:
        try:
            self._held = self._put({"IfNoneMatch": "*"})
        except ClientError as exc:
            if _code(exc) not in _CONFLICT:
                raise LoadError("lock", f"cannot write the lease {self.uri}: {exc}") from exc
            self._take_over_if_expired()
        log.info("holding lease %s as %s", self.uri, self.load_id)
        self._thread = threading.Thread(target=self._renew_loop, name="lease-renew", daemon=True)
        self._thread.start()

    def _take_over_if_expired(self) -> None:
        etag = ""
        try:
            current = self._s3.get_object(Bucket=self.bucket, Key=self.key, **self._owner)
            etag = str(current["ETag"])
            info = json.loads(current["Body"].read())
            expires = datetime.fromisoformat(str(info["expires_at"]))
        except ClientError as exc:
            if _code(exc) in ("NoSuchKey", "404"):  # released meanwhile: try once more from scratch
                try:
                    self._held = self._put({"IfNoneMatch": "*"})
                    return
                except ClientError as again:
                    raise LoadError("lock", f"lost the race for {self.uri}: {again}") from again
            raise LoadError("lock", f"cannot read the lease {self.uri}: {exc}") from exc
        except (ValueError, KeyError) as exc:
            # expired, but still taken over only with If-Match on the ETag read: one taker wins
            info, expires = {"load_id": "unknown (unreadable lease)"}, datetime.min.replace(tzinfo=UTC)
            log.warning("lease %s is unreadable (%s); treating it as expired", self.uri, exc)
        now = datetime.now(UTC)
        if info.get("load_id") == self.load_id and etag:
            # our own conditional PUT was carried out but its answer was lost, and the retry met it
            self._held = _Held(etag=etag, expires_at=expires)
            return
        if expires > now:
            raise LoadError(
                "lock",
                f"day is being loaded by load {info.get('load_id')} (host {info.get('host')}, pid "
                f"{info.get('pid')}) since {info.get('acquired_at')}; its lease {self.uri} expires at "
                f"{expires.isoformat()}",
            )
        try:
            self._held = self._put({"IfMatch": etag} if etag else {})
        except ClientError as exc:
            raise LoadError("lock", f"another load took over the expired lease {self.uri} first") from exc
        log.warning("took over the expired lease of load %s at %s", info.get("load_id"), self.uri)

    def _renew_loop(self) -> None:
        interval = max(self._ttl.total_seconds() / 3, 1.0)
        while not self._stop.wait(interval):
            with self._lock:
                if self._held is None:
                    return
                try:
                    self._held = self._put({"IfMatch": self._held.etag})
                except ClientError as exc:
                    if _code(exc) in _CONFLICT and self._still_ours():
                        continue
                    self.lost = f"lease {self.uri} was lost: {exc}"
                    log.error(self.lost)
                    return

    def _still_ours(self) -> bool:
        """After a renewal met another ETag: if the lease still names this load, the renewal itself was
        carried out and only its answer was lost (then retried): adopt the current ETag and go on."""
        try:
            current = self._s3.get_object(Bucket=self.bucket, Key=self.key, **self._owner)
            info = json.loads(current["Body"].read())
            expires = datetime.fromisoformat(str(info["expires_at"]))
        except (ClientError, ValueError, KeyError):
            return False
        if info.get("load_id") != self.load_id:
            return False
        self._held = _Held(etag=str(current["ETag"]), expires_at=expires)
        log.info("lease %s: a renewal's answer was lost; it holds, renewing on", self.uri)
        return True

    def check(self) -> None:
        """Fail if the lease was lost (checked before the swap, so a load never flips without it)."""
        if self.lost:
            raise LoadError("lock", self.lost)
        with self._lock:
            if self._held is None or self._held.expires_at <= datetime.now(UTC):
                raise LoadError("lock", f"lease {self.uri} expired before the swap")

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        with self._lock:
            held, self._held = self._held, None
        if held is None:
            return
        try:
            self._s3.delete_object(Bucket=self.bucket, Key=self.key, IfMatch=held.etag, **self._owner)
        except ClientError as exc:  # expired and taken over, or already gone: nothing of ours to remove
            log.warning("could not release lease %s: %s", self.uri, exc)

    def __enter__(self) -> DayLease:
        self.acquire()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
