"""A per-day lease so two loads of the same day never interleave (a Lambda retry beside a Dagster run).

The lease is one small JSON object, ``{pathoutput}/_leases/data_ref={day}.json`` in the destination
bucket, created with an S3 conditional write (``If-None-Match: *``): exactly one writer wins. It
carries an expiry; the holder renews it on a background thread while the load runs, and an expired
lease (its holder was killed) is taken over with ``If-Match`` on its ETag, so again only one taker wins.
The loser fails fast with a message naming the holder (:class:`LeaseHeld`, which also says what
source the holder is loading once it has picked it). Different days use different objects and never
wait on each other. The ``_leases`` folder is outside every partition and ignored by Hive-style readers.

Whatever goes wrong talking to S3 (an AWS error, a botocore too old for conditional writes, a dropped
connection, anything) is a lease that is unavailable (a ``lock`` error) or, while held, not renewed:
the renewal thread never dies of it; it retries until the lease expires, and an expired or lost lease
stops the load before its swap. A lease never outlives ``expires_by`` (the caller's deadline), so a
load killed at its deadline leaves a lease that expires then.

S3 answers a GET of a missing key with 403, not 404, when the caller lacks an unconditioned
``s3:ListBucket`` on the bucket (one limited by an ``s3:prefix`` condition does not count): a 403
on the lease is never read as "no lease". The conditional create is tried once more (it wins only
if there really is none); if it still meets a lease, the load fails naming the key and the
permission.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from .errors import LoadError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = ["DayLease", "LeaseHeld", "lease_key"]

log = logging.getLogger(__name__)

_CONFLICT = {"PreconditionFailed", "ConditionalRequestConflict", "412", "409"}
_MISSING = {"NoSuchKey", "404"}
_DENIED = {"AccessDenied", "403"}


def lease_key(table_root: str, data_ref: str) -> str:
    return f"{table_root}/_leases/data_ref={data_ref}.json"


def _code(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


def _what(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"


class LeaseHeld(LoadError):
    """The day's lease is held by another load (stage ``lock``).

    ``holder`` is the lease's body: ``load_id``, ``host``, ``pid``, ``acquired_at``, ``expires_at``
    and, once the holder has picked its export, ``source_uri`` and ``source_etag``. ``same_source`` is
    set by a caller that found its own export to be the one the holder is loading: an asynchronous
    caller may then end as "already being loaded" instead of failing.
    """

    def __init__(
        self, message: str, *, uri: str, holder: Mapping[str, Any], same_source: bool = False
    ) -> None:
        super().__init__("lock", message)
        self.uri = uri
        self.holder = dict(holder)
        self.same_source = same_source

    @property
    def source_etag(self) -> str | None:
        etag = self.holder.get("source_etag")
        return str(etag) if etag else None


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
    expires_by
        The latest moment the lease may last to (the caller's deadline), however often it is renewed.
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
        expires_by: datetime | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self._s3 = s3
        self.bucket = bucket
        self.key = key
        self.load_id = load_id
        self._ttl = ttl
        self._expires_by = expires_by
        self._extra = dict(extra or {})
        self._source: dict[str, str] = {}
        self._held: _Held | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()  # renew now (a new source to record) or stop
        self._thread: threading.Thread | None = None
        self.lost: str | None = None

    @property
    def _owner(self) -> dict[str, Any]:
        return {k: v for k, v in self._extra.items() if k == "ExpectedBucketOwner"}

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    @property
    def expires_at(self) -> datetime | None:
        """When the lease held now expires (``None``: not held)."""
        with self._lock:
            return self._held.expires_at if self._held else None

    def _expiry(self, now: datetime) -> datetime:
        expires = now + self._ttl
        return min(expires, self._expires_by) if self._expires_by is not None else expires

    def _body(self, now: datetime) -> bytes:
        return json.dumps(
            {
                "load_id": self.load_id,
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "acquired_at": now.isoformat(),
                "expires_at": self._expiry(now).isoformat(),
                **self._source,
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
        return _Held(etag=str(resp["ETag"]), expires_at=self._expiry(now))

    def _denied(self, operation: str) -> str:
        return (
            f"{operation} on the lease {self.uri} was denied (403). Grant s3:{operation} on "
            f"{self.key}; S3 also answers 403 instead of 404 for a missing key when the caller lacks an "
            "unconditioned s3:ListBucket on the bucket"
        )

    # -- taking the lease -------------------------------------------------------------------------
    def acquire(self) -> None:
        try:
            self._held = self._put({"IfNoneMatch": "*"})
        except ClientError as exc:
            if _code(exc) in _DENIED:
                raise LoadError("lock", self._denied("PutObject")) from exc
            if _code(exc) not in _CONFLICT:
                raise LoadError("lock", f"cannot write the lease {self.uri}: {exc}") from exc
            self._take_over_if_expired()
        except Exception as exc:  # a botocore too old for conditional writes, a dropped connection...
            raise LoadError("lock", f"cannot write the lease {self.uri}: {_what(exc)}") from exc
        log.info("holding lease %s as %s", self.uri, self.load_id)
        self._thread = threading.Thread(target=self._renew_loop, name="lease-renew", daemon=True)
        self._thread.start()

    def _create_again(self, after: ClientError) -> None:
        """The lease was not there when read (404), or the read was denied (403, which S3 also answers
        for a missing key without an unconditioned s3:ListBucket): try the conditional create once
        more. It wins only if there really is no lease; a 403 that meets one is a clear error, never
        "no lease"."""
        denied = _code(after) in _DENIED
        try:
            self._held = self._put({"IfNoneMatch": "*"})
        except ClientError as again:
            if denied and _code(again) in _CONFLICT:
                raise LoadError("lock", self._denied("GetObject")) from again
            raise LoadError("lock", f"lost the race for {self.uri}: {again}") from again
        except Exception as again:
            raise LoadError("lock", f"cannot write the lease {self.uri}: {_what(again)}") from again
        if denied:
            log.warning("%s; it was absent, and this load now holds it", self._denied("GetObject"))

    def _take_over_if_expired(self) -> None:
        etag = ""
        try:
            current = self._s3.get_object(Bucket=self.bucket, Key=self.key, **self._owner)
            etag = str(current["ETag"])
            info = json.loads(current["Body"].read())
            expires = datetime.fromisoformat(str(info["expires_at"]))
            live = expires > datetime.now(UTC)
        except ClientError as exc:
            if _code(exc) in _MISSING | _DENIED:  # released meanwhile, or a 403 that may mean it
                self._create_again(exc)
                return
            raise LoadError("lock", f"cannot read the lease {self.uri}: {exc}") from exc
        except (ValueError, KeyError, TypeError) as exc:
            # expired, but still taken over only with If-Match on the ETag read: one taker wins
            info, expires, live = (
                {"load_id": "unknown (unreadable lease)"},
                datetime.min.replace(tzinfo=UTC),
                False,
            )
            log.warning("lease %s is unreadable (%s); treating it as expired", self.uri, exc)
        except Exception as exc:
            raise LoadError("lock", f"cannot read the lease {self.uri}: {_what(exc)}") from exc
        if info.get("load_id") == self.load_id and etag:
            # our own conditional PUT was carried out but its answer was lost, and the retry met it
            self._held = _Held(etag=etag, expires_at=expires)
            return
        if live:
            raise self._refusal(info, expires)
        try:
            self._held = self._put({"IfMatch": etag})
        except ClientError as exc:
            if _code(exc) in _CONFLICT:
                raise LoadError("lock", f"another load took over the expired lease {self.uri} first") from exc
            raise LoadError("lock", f"cannot take over the expired lease {self.uri}: {exc}") from exc
        except Exception as exc:
            raise LoadError("lock", f"cannot take over the expired lease {self.uri}: {_what(exc)}") from exc
        log.warning("took over the expired lease of load %s at %s", info.get("load_id"), self.uri)

    def _refusal(self, info: Mapping[str, Any], expires: datetime) -> LeaseHeld:
        source = ""
        if info.get("source_etag"):
            source = f" from {info.get('source_uri')} (ETag {info.get('source_etag')})"
        return LeaseHeld(
            f"day is being loaded by load {info.get('load_id')} (host {info.get('host')}, pid "
            f"{info.get('pid')}) since {info.get('acquired_at')}{source}; its lease {self.uri} expires at "
            f"{expires.isoformat()}",
            uri=self.uri,
            holder=info,
        )

    # -- holding it -------------------------------------------------------------------------------
    def record_source(self, uri: str, etag: str) -> None:
        """Have the export this load reads written into the lease by a renewal right away (on the
        renewal thread, which handles its failures like any renewal's), so a load refused by the lease
        can tell whether it would have loaded the same one."""
        with self._lock:
            self._source = {"source_uri": uri, "source_etag": etag}
        self._wake.set()

    def _renew_loop(self) -> None:
        interval = max(self._ttl.total_seconds() / 3, 1.0)
        wait = interval
        while True:
            self._wake.wait(wait)
            if self._stop.is_set():
                return
            self._wake.clear()
            try:
                renewed = self._renew_once()
            except Exception as exc:  # never a dead thread: a renewal that cannot even be tried is a loss
                self._lose(f"lease {self.uri} could not be renewed: {_what(exc)}")
                return
            if renewed is None:
                return
            wait = interval if renewed else max(interval / 4, 0.25)

    def _renew_once(self) -> bool | None:
        """Renew the lease: ``True`` renewed, ``False`` failed but still held until its expiry (retry
        sooner), ``None`` released or lost (``lost`` says why)."""
        with self._lock:
            if self._held is None or self.lost:
                return None
            try:
                self._held = self._put({"IfMatch": self._held.etag})
            except Exception as exc:
                if _code(exc) in _CONFLICT:
                    if self._still_ours():
                        return True
                    self._lose(f"lease {self.uri} was lost: {exc}")
                    return None
                if self._held.expires_at <= datetime.now(UTC):
                    self._lose(f"lease {self.uri} expired: it could not be renewed ({_what(exc)})")
                    return None
                log.warning(
                    "lease %s: renewal failed (%s); retrying until it expires at %s",
                    self.uri,
                    _what(exc),
                    self._held.expires_at.isoformat(),
                )
                return False
            return True

    def _lose(self, why: str) -> None:
        self.lost = why
        log.error(why)

    def _still_ours(self) -> bool:
        """After a renewal met another ETag: if the lease still names this load, the renewal itself was
        carried out and only its answer was lost (then retried): adopt the current ETag and go on."""
        try:
            current = self._s3.get_object(Bucket=self.bucket, Key=self.key, **self._owner)
            info = json.loads(current["Body"].read())
            expires = datetime.fromisoformat(str(info["expires_at"]))
        except Exception as exc:  # unreadable or unavailable: it cannot be shown to be ours
            log.warning("lease %s: cannot read it back after a conflicting renewal: %s", self.uri, _what(exc))
            return False
        if not isinstance(info, dict) or info.get("load_id") != self.load_id:
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
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        with self._lock:
            held, self._held = self._held, None
        if held is None:
            return
        try:
            self._s3.delete_object(Bucket=self.bucket, Key=self.key, IfMatch=held.etag, **self._owner)
        except Exception as exc:  # taken over, gone, or S3 unavailable: it expires at its time anyway
            log.warning(
                "could not release lease %s (it expires at %s): %s", self.uri, held.expires_at, _what(exc)
            )

    def __enter__(self) -> DayLease:
        self.acquire()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
