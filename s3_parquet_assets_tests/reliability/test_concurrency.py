"""Concurrent loads. Two loads of the same day (a Lambda retry beside a Dagster run) end in one complete
version, never a mix or duplicates: the loser fails fast at the lease, naming the holder. Loads of
different days hold their leases at the same time and never wait on each other."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ConnectionClosedError
from botocore.httpsession import URLLib3Session

from s3_parquet_assets.core import Tuning, handle_event, make_clients

from ..helpers import DAY, DST, PATHOUT, Lake, csv_rows, event
from .support import TUNE, assert_clean_day, by_id, day_versions, rows_of, session, snapshot

KEY = f"exports/{DAY}/sales.csv"
LEASE = f"{PATHOUT}/_leases/data_ref={DAY}.json"


def run_at_once(
    n: int, hook: Any = None, events: list[dict[str, Any]] | None = None, tuning: Tuning = TUNE
) -> list[dict[str, Any]]:
    """Start ``n`` loads together (each with its own session and clients, as separate runs would be)."""
    barrier = threading.Barrier(n, timeout=30)
    done = [threading.Event() for _ in range(n)]

    def one(i: int) -> dict[str, Any]:
        sess = session()
        if hook is not None:
            sess.events.register("before-call.s3.ListObjectsV2", hook(i, done))
        clients = make_clients(sess)
        barrier.wait()
        try:
            return handle_event((events or [event()] * n)[i], clients, tuning=tuning)
        finally:
            done[i].set()

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(one, range(n)))


def hold_until_others_finish(i: int, done: list[threading.Event]) -> Any:
    """Inside its lease, a load waits for the other loads to finish: the overlap is certain. (If two
    loads of one day ever both got past the lease, each would wait for the other until the timeout,
    and both would then succeed: the test below fails on that.)"""
    fired = []

    def hook(**_kw: Any) -> None:
        if not fired:
            fired.append(1)
            for j, ev in enumerate(done):
                if j != i:
                    ev.wait(timeout=20)

    return hook


def test_same_day_twice_at_once_one_wins_the_other_names_it(lake: Lake) -> None:
    lake.put(KEY, csv_rows(50))
    first = handle_event(event(), lake.clients, tuning=TUNE)
    assert first["statusCode"] == 200
    lake.put(KEY, csv_rows(200, start=1000))

    outs = run_at_once(2, hook=hold_until_others_finish)

    won = [o for o in outs if o["statusCode"] == 200]
    lost = [o for o in outs if o["statusCode"] != 200]
    assert len(won) == 1, outs
    assert len(lost) == 1, outs
    assert lost[0]["stage"] == "lock"
    assert won[0]["result"]["load_id"] in lost[0]["body"]
    assert "is being loaded by load" in lost[0]["body"]
    assert lake.read_catalog() == by_id(rows_of(200, start=1000))
    assert lake.read_day_folder() == by_id(rows_of(200, start=1000))  # one version, no duplicates
    assert_clean_day(lake, DAY, won[0]["result"])


def test_three_racing_loads_leave_exactly_one_version(lake: Lake) -> None:
    """No forced overlap: whatever the interleaving, every load either succeeds or is refused at the
    lease, and the day ends as one complete version."""
    lake.put(KEY, csv_rows(300))
    for _ in range(2):
        outs = run_at_once(3)
        assert all(o["statusCode"] == 200 or o["stage"] == "lock" for o in outs), outs
        ok = [o for o in outs if o["statusCode"] == 200]
        assert ok
        assert lake.read_catalog() == by_id(rows_of(300))
        assert lake.read_day_folder() == by_id(rows_of(300))
        assert len(day_versions(lake, DAY)) == 1
        assert lake.multipart_uploads() == []
        assert lake.keys(f"{PATHOUT}/_leases/") == []
        assert lake.partition()["Parameters"]["s3pa.load_id"] in {o["result"]["load_id"] for o in ok}


def test_different_days_run_in_parallel(lake: Lake) -> None:
    days = ["20240115", "20240116", "20240117"]
    for n, day in enumerate(days):
        lake.put(f"exports/{day}/sales.csv", csv_rows(40 + n, start=100 * n))
    inside = threading.Barrier(len(days), timeout=20)

    def all_inside_together(i: int, done: list[threading.Event]) -> Any:
        fired = []

        def hook(**_kw: Any) -> None:
            if not fired:
                fired.append(1)
                inside.wait()  # every load holds its day's lease at this moment

        return hook

    outs = run_at_once(len(days), hook=all_inside_together, events=[event(data_ref=d) for d in days])

    assert [o["statusCode"] for o in outs] == [200] * len(days), outs
    for n, (day, out) in enumerate(zip(days, outs, strict=True)):
        assert lake.read_catalog(day) == by_id(rows_of(40 + n, start=100 * n))
        assert_clean_day(lake, day, out["result"])


def put_lease(lake: Lake, load_id: str, expires: datetime) -> None:
    body = {
        "load_id": load_id,
        "host": "elsewhere",
        "pid": 4242,
        "acquired_at": (expires - timedelta(minutes=5)).isoformat(),
        "expires_at": expires.isoformat(),
    }
    lake.put(LEASE, json.dumps(body).encode(), bucket=DST)


def test_a_live_lease_refuses_and_touches_nothing(lake: Lake) -> None:
    lake.put(KEY, csv_rows(50))
    assert handle_event(event(), lake.clients, tuning=TUNE)["statusCode"] == 200
    put_lease(lake, "20990101T000000Z-feedbeef", datetime.now(UTC) + timedelta(minutes=5))
    lake.put(KEY, csv_rows(80, start=500))
    before = snapshot(lake)

    out = handle_event(event(), lake.clients, tuning=TUNE)

    assert out["statusCode"] == 500
    assert out["stage"] == "lock"
    assert "20990101T000000Z-feedbeef" in out["body"]
    assert "host elsewhere" in out["body"]
    assert snapshot(lake) == before


@pytest.mark.parametrize("lease_body", ["expired", "garbage"])
def test_an_expired_or_unreadable_lease_is_taken_over(lake: Lake, lease_body: str) -> None:
    lake.put(KEY, csv_rows(50))
    if lease_body == "expired":
        put_lease(lake, "dead-load", datetime.now(UTC) - timedelta(seconds=1))
    else:
        lake.put(LEASE, b"{not json", bucket=DST)
    out = handle_event(event(), lake.clients, tuning=TUNE)
    assert out["statusCode"] == 200, out
    assert lake.read_catalog() == by_id(rows_of(50))
    assert_clean_day(lake, DAY, out["result"])


def test_a_load_that_loses_its_lease_never_flips(lake: Lake) -> None:
    """The load stalls (renewals included) past its lease's expiry, another load takes the lease over,
    then this one wakes up: it must stop before the swap, keep the previous day, remove its own folder
    and leave the taker's lease alone."""
    lake.put(KEY, csv_rows(50))
    prev = handle_event(event(), lake.clients, tuning=TUNE)
    assert prev["statusCode"] == 200
    lake.put(KEY, csv_rows(80, start=500))

    sess = session()
    taken = threading.Event()
    renewal_answered = threading.Event()

    def is_lease(params: Any) -> bool:
        return "/_leases/" in str(params.get("url_path", "")) and "If-Match" in params.get("headers", {})

    stalled = []

    def renewal_stalls(params: Any, **_kw: Any) -> None:
        if is_lease(params) and not taken.is_set():
            stalled.append(1)
            assert taken.wait(timeout=20)

    def renewal_answer(http_response: Any, **_kw: Any) -> None:
        if "/_leases/" in http_response.url and http_response.status_code == 412:
            renewal_answered.set()

    verified = threading.Event()

    def stall_before_swap(**_kw: Any) -> None:
        if not verified.is_set():
            return  # a look at the partitions before the lease, not the one before the swap
        body = json.loads(lake.clients.s3.get_object(Bucket=DST, Key=LEASE)["Body"].read())
        expires = datetime.fromisoformat(body["expires_at"])
        wait = (expires - datetime.now(UTC)).total_seconds() + 0.2
        threading.Event().wait(max(wait, 0))
        put_lease(lake, "the-taker", datetime.now(UTC) + timedelta(minutes=5))
        taken.set()
        renewal_answered.wait(timeout=20)

    sess.events.register("after-call.s3.HeadObject", lambda **_kw: verified.set())
    sess.events.register("before-call.s3.PutObject", renewal_stalls)
    sess.events.register("after-call.s3.PutObject", renewal_answer)
    sess.events.register("before-call.glue.GetPartitions", stall_before_swap)
    tuning = Tuning(part_size=TUNE.part_size, row_group_rows=TUNE.row_group_rows, lease_ttl_seconds=1.5)

    out = handle_event(event(), make_clients(sess), tuning=tuning)

    assert taken.is_set()
    assert stalled  # a renewal was held back past the expiry
    assert out["statusCode"] == 500, out
    assert out["stage"] == "lock"
    assert lake.read_catalog() == by_id(rows_of(50))
    assert day_versions(lake, DAY) == {f"load-{prev['result']['load_id']}"}
    assert lake.multipart_uploads() == []
    # the taker's lease is not removed by the loser
    lease = json.loads(lake.clients.s3.get_object(Bucket=DST, Key=LEASE)["Body"].read())
    assert lease["load_id"] == "the-taker"


def test_a_renewal_whose_answer_is_lost_keeps_the_lease(lake: Lake) -> None:
    """A renewal is carried out but its answer is lost; botocore retries it and meets the lease this
    load itself just renewed (new ETag). That is not a lost lease: renewals go on, the load finishes
    and releases the lease."""
    lake.put(KEY, csv_rows(50))
    sess = session()
    http = URLLib3Session()
    renewals: list[str] = []
    renewing_on = threading.Event()

    def lose_first_renewal(request: Any, **_kw: Any) -> None:
        if "/_leases/" not in request.url or "If-Match" not in request.headers:
            return
        renewals.append(request.url)
        if len(renewals) == 1:
            http.send(request).content  # the server renews; the answer never arrives
            raise ConnectionClosedError(endpoint_url=request.url, request=request)
        if len(renewals) >= 3:  # the retry, then a later renewal: the lease was kept
            renewing_on.set()

    def stall_before_swap(**_kw: Any) -> None:
        if verified.is_set():  # the look at the partitions just before the swap
            renewing_on.wait(timeout=10)

    verified = threading.Event()
    sess.events.register("after-call.s3.HeadObject", lambda **_kw: verified.set())

    sess.events.register("before-send.s3.PutObject", lose_first_renewal)
    sess.events.register("before-call.glue.GetPartitions", stall_before_swap)
    tuning = Tuning(part_size=TUNE.part_size, row_group_rows=TUNE.row_group_rows, lease_ttl_seconds=1.5)

    out = handle_event(event(), make_clients(sess), tuning=tuning)

    assert len(renewals) >= 3
    assert out["statusCode"] == 200, out
    assert lake.read_catalog() == by_id(rows_of(50))
    assert_clean_day(lake, DAY, out["result"])  # the lease was released, not left to expire


def test_a_load_stalled_after_its_flip_never_removes_the_next_loads_version(lake: Lake) -> None:
    """Load A flips, then stalls (renewals included) past its lease's expiry; load B takes the lease
    over and completes. When A wakes up, its cleanup must not remove B's version, which the catalog
    now serves."""
    lake.put(KEY, csv_rows(50))
    assert handle_event(event(), lake.clients, tuning=TUNE)["statusCode"] == 200
    lake.put(KEY, csv_rows(60, start=100))

    sess = session()
    stalled = threading.Event()
    b_out: list[dict[str, Any]] = []

    def renewals_stall(params: Any, **_kw: Any) -> None:
        renewal = "/_leases/" in str(params.get("url_path", "")) and "If-Match" in params.get("headers", {})
        while renewal and stalled.is_set() and not b_out:  # A's whole process is stalled
            threading.Event().wait(0.05)

    def stall_after_flip(**_kw: Any) -> None:
        if stalled.is_set():
            return
        stalled.set()
        body = json.loads(lake.clients.s3.get_object(Bucket=DST, Key=LEASE)["Body"].read())
        expires = datetime.fromisoformat(body["expires_at"])
        threading.Event().wait(max((expires - datetime.now(UTC)).total_seconds() + 0.3, 0))
        lake.put(KEY, csv_rows(70, start=900))  # B loads a newer export
        b_out.append(handle_event(event(), make_clients(session()), tuning=TUNE))

    sess.events.register("before-call.s3.PutObject", renewals_stall)
    sess.events.register("after-call.glue.UpdatePartition", stall_after_flip)
    tuning = Tuning(part_size=TUNE.part_size, row_group_rows=TUNE.row_group_rows, lease_ttl_seconds=1.5)

    a_out = handle_event(event(), make_clients(sess), tuning=tuning)

    assert b_out and b_out[0]["statusCode"] == 200, b_out
    assert lake.read_catalog() == by_id(rows_of(70, start=900))  # B's version, complete
    assert lake.partition()["Parameters"]["s3pa.load_id"] == b_out[0]["result"]["load_id"]
    assert f"load-{b_out[0]['result']['load_id']}" in day_versions(lake, DAY)
    # A tells the truth: it lost the day after its swap and left the cleanup to the next load
    assert a_out["statusCode"] == 500, a_out
    assert a_out["stage"] == "lock"
    assert "cleanup is left to the next load" in a_out["body"]


def test_two_loads_meeting_an_unreadable_lease_do_not_both_take_it(lake: Lake) -> None:
    """Taking over a lease, even an unreadable one, is conditional on the ETag that was read: of two
    loads that meet it together, one takes it and the other is refused."""
    lake.put(KEY, csv_rows(200, start=1000))
    lake.put(LEASE, b"{not json", bucket=DST)

    outs = run_at_once(2, hook=hold_until_others_finish)

    won = [o for o in outs if o["statusCode"] == 200]
    lost = [o for o in outs if o["statusCode"] != 200]
    assert len(won) == 1, outs
    assert len(lost) == 1, outs
    assert lost[0]["stage"] == "lock"
    assert lake.read_day_folder() == by_id(rows_of(200, start=1000))
    assert_clean_day(lake, DAY, won[0]["result"])
