"""Transient faults (503 SlowDown, 500, connection resets, refused connections, responses lost after the
server acted) on a fraction of every kind of S3 request, and a body that drops mid-stream: the load
retries (one adaptive retry policy for every client) and lands exactly the right rows."""

from __future__ import annotations

import pyarrow.csv as pacsv
import pytest

from ..helpers import DAY, SRC, Lake, csv_rows, zipped
from .support import (
    BIG_ROWS,
    TUNE,
    BodyDrops,
    Flaky,
    assert_clean_day,
    by_id,
    load,
    noisy_csv,
    rows_of,
    session,
)

KEY = f"exports/{DAY}/sales.csv"

WRITE_PATH = ("CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload")
READ_PATH = ("ListObjectsV2", "GetObject", "HeadObject")
OTHER = ("PutObject", "DeleteObjects", "ListMultipartUploads", "DeleteObject")


def expected_big() -> list[dict[str, str]]:
    table = pacsv.read_csv(
        pacsv_input(),
        read_options=pacsv.ReadOptions(column_names=["id", "customer", "amount"]),
        convert_options=pacsv.ConvertOptions(
            column_types={"id": "string", "customer": "string", "amount": "string"}
        ),
    )
    return sorted(table.to_pylist(), key=lambda r: r["id"])


def pacsv_input() -> object:
    import io

    return io.BytesIO(noisy_csv(BIG_ROWS))


@pytest.fixture(scope="module")
def big_expected() -> list[dict[str, str]]:
    return expected_big()


def previous_day(lake: Lake) -> dict[str, object]:
    """A complete earlier version of the day (so the faulty load replaces something)."""
    lake.put(KEY, csv_rows(50))
    out = load(lake)
    assert out["statusCode"] == 200, out
    return out["result"]


@pytest.mark.parametrize("kind", ["503", "500", "reset", "refused"])
def test_transient_s3_faults_on_every_request_kind(lake: Lake, kind: str, big_expected: list) -> None:
    """The first request of every kind fails, then a fraction of the rest. (SlowDown is drawn rarely:
    adaptive retries answer each one by slowing the client down, which costs test time, not rows.)"""
    previous_day(lake)
    lake.put(KEY, noisy_csv(BIG_ROWS))
    sess = session()
    flaky = Flaky(
        dict.fromkeys((*READ_PATH, *WRITE_PATH, *OTHER), (kind,)),
        rate=0.03 if kind == "503" else 0.2,
        seed=len(kind),
    ).install(sess)

    out = load(lake, sess)

    assert out["statusCode"] == 200, out
    assert out["result"]["rows"] == BIG_ROWS
    # every request kind of the load met at least one fault, and each was retried
    assert {op for op, _ in flaky.injected} >= {*READ_PATH, *WRITE_PATH, "PutObject", "DeleteObjects"}
    assert lake.read_catalog() == big_expected
    assert lake.read_day_folder() == big_expected
    assert_clean_day(lake, DAY, out["result"])
    assert 1 <= out["result"]["files"] <= TUNE.encoder_threads  # one file per encoder at most: none rolled


def test_mixed_faults_and_lost_responses(lake: Lake, big_expected: list) -> None:
    """Responses lost after the server carried the request out: the retry repeats a GET, a PUT, a part
    upload, a completion or a delete that already happened, and the load still ends exactly right."""
    previous_day(lake)
    lake.put(KEY, noisy_csv(BIG_ROWS))
    sess = session()
    idempotent = ("503", "500", "reset", "refused", "lost")
    ops = dict.fromkeys(
        ("GetObject", "HeadObject", "ListObjectsV2", "UploadPart", "DeleteObjects"), idempotent
    )
    ops |= dict.fromkeys(("CompleteMultipartUpload", "ListMultipartUploads"), idempotent)
    ops |= dict.fromkeys(("PutObject", "DeleteObject"), idempotent)  # the lease: acquire, renew, release
    ops |= {"CreateMultipartUpload": ("503", "500", "reset", "refused")}
    flaky = Flaky(ops, rate=0.4, seed=11, first_kind="lost").install(sess)

    out = load(lake, sess)

    assert out["statusCode"] == 200, out
    lost = {op for op, kind in flaky.injected if kind == "lost"}
    assert lost >= {"GetObject", "UploadPart", "CompleteMultipartUpload", "PutObject", "DeleteObjects"}
    assert lake.read_catalog() == big_expected
    assert_clean_day(lake, DAY, out["result"])


def test_lost_create_multipart_response_leaves_no_orphan(lake: Lake, big_expected: list) -> None:
    """CreateMultipartUpload carried out but its answer lost: the retry starts a second upload; the first
    one must not be left behind (orphaned parts are billed forever)."""
    previous_day(lake)
    lake.put(KEY, noisy_csv(BIG_ROWS))
    sess = session()
    flaky = Flaky({"CreateMultipartUpload": ("lost",)}, rate=0.0, seed=1).install(sess)

    out = load(lake, sess)

    assert out["statusCode"] == 200, out
    assert flaky.injected[("CreateMultipartUpload", "lost")] == 1
    assert lake.read_catalog() == big_expected
    assert_clean_day(lake, DAY, out["result"])


def test_lost_lease_response_is_not_a_conflict_with_itself(lake: Lake) -> None:
    """The lease's conditional PUT is carried out but its answer is lost; the retry then meets the lease
    this very load wrote. The load must not report itself as the other holder."""
    previous_day(lake)
    lake.put(KEY, csv_rows(80, start=1000))
    sess = session()
    flaky = Flaky({"PutObject": ("lost",)}, rate=0.0, seed=1).install(sess)

    out = load(lake, sess)

    assert flaky.injected[("PutObject", "lost")] == 1
    assert out["statusCode"] == 200, out
    assert lake.read_catalog() == by_id(rows_of(80, start=1000))
    assert_clean_day(lake, DAY, out["result"])


@pytest.mark.parametrize(("suffix", "data"), [("sales.csv", None), ("sales.csv.gz", "gz")])
def test_connection_drop_mid_body_resumes_with_a_ranged_get(
    lake: Lake, suffix: str, data: str | None, big_expected: list
) -> None:
    import gzip

    previous_day(lake)
    body = noisy_csv(BIG_ROWS)
    if data == "gz":
        body = gzip.compress(body, compresslevel=1)
        lake.clients.s3.delete_object(Bucket=SRC, Key=KEY)
    key = f"exports/{DAY}/{suffix}"
    lake.put(key, body)
    sess = session()
    drops = BodyDrops(key_suffix=suffix, after=3 * 1024 * 1024 + 17, times=2).install(sess)

    out = load(lake, sess)

    assert out["statusCode"] == 200, out
    assert drops.dropped == 2
    # the first GET reads from the start, each resume continues where the stream broke
    assert drops.ranges[0] == ""
    assert drops.ranges[1] == f"bytes={3 * 1024 * 1024 + 17}-"
    assert drops.ranges[2] == f"bytes={2 * (3 * 1024 * 1024 + 17)}-"
    assert out["result"]["bytes_read"] == len(body)
    assert lake.read_catalog() == big_expected
    assert_clean_day(lake, DAY, out["result"])


@pytest.mark.parametrize("after", [100, 3 * 1024 * 1024 + 17], ids=["in-directory-reads", "mid-member"])
def test_connection_drops_while_reading_a_zip(lake: Lake, after: int, big_expected: list) -> None:
    """A zip is read through ranged GETs (the directory, then the member as a stream): drops during the
    small directory reads and during the member stream are both survived."""
    previous_day(lake)
    lake.clients.s3.delete_object(Bucket=SRC, Key=KEY)
    lake.put(f"exports/{DAY}/sales.zip", zipped({"sales.csv": noisy_csv(BIG_ROWS)}))
    sess = session()
    drops = BodyDrops(key_suffix="sales.zip", after=after, times=2).install(sess)

    out = load(lake, sess)

    assert out["statusCode"] == 200, out
    assert drops.dropped == 2
    assert lake.read_catalog() == big_expected
    assert_clean_day(lake, DAY, out["result"])
