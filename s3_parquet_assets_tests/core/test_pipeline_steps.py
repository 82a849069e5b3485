"""Every step of the load reports its own stage: an error raised while the stream encodes or uploads
says ``write``, one raised while it pulls rows from the export says ``read`` (with the object and the
line), whichever thread or loop they meet in. Either way the day stays exactly as it was."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import pandas as pd
import pytest
from botocore.exceptions import ClientError

from s3_parquet_assets.core import LoadError, Tuning, handle_event, make_clients
from s3_parquet_assets.core.stage import pulled_as, step

from ..helpers import DAY, TYPED, Lake, csv_rows, event
from ..reliability.support import BIG_ROWS, TUNE, by_id, noisy_csv, rows_of, session, snapshot

KEY = f"exports/{DAY}/sales.csv"
URI = f"s3://src-bucket/{KEY}"
BY_CUSTOMER = ["data_ref", "customer"]


# Transforms, imported by the loader as ``s3_parquet_assets_tests.core.test_pipeline_steps:<name>``.
def half_float_customer(df: pd.DataFrame) -> pd.DataFrame:
    """A partition column of half floats: a valid transform output (Glue calls it double) that the
    Parquet writer cannot split the day by (Arrow compares no half floats)."""
    return df.assign(customer=(df["id"].astype(int) % 7).astype("float16"))


def fails_past_row_1000(df: pd.DataFrame) -> pd.DataFrame:
    """Fails on the batch holding id 1000, after earlier batches have been encoded."""
    if (df["id"].astype(int) == 1000).any():
        raise RuntimeError("no row 1000 wanted")
    return df


def _load(lake: Lake, tuning: Tuning, sess: Any = None, **overrides: Any) -> dict[str, Any]:
    clients = make_clients(sess) if sess is not None else lake.clients
    return handle_event(event(**overrides), clients, tuning=tuning)


def _previous_day(lake: Lake, **overrides: Any) -> dict[str, Any]:
    lake.put(KEY, csv_rows(50))
    out = _load(lake, TUNE, **overrides)
    assert out["statusCode"] == 200, out
    return out


def _assert_untouched(lake: Lake, before: dict[str, Any], out: dict[str, Any], stage: str) -> None:
    assert out["statusCode"] == 500, out
    assert out["stage"] == stage, out["body"]
    assert out["body"].startswith(f"Error: {stage}: ")
    assert snapshot(lake) == before  # no object, upload, column or partition changed
    assert lake.multipart_uploads() == []


def test_an_encoder_error_is_a_write_error(lake: Lake) -> None:
    _previous_day(lake, partitions_cols=BY_CUSTOMER)
    before = snapshot(lake)
    transform = f"{__name__}:half_float_customer"

    out = _load(lake, TUNE, transform=transform, partitions_cols=BY_CUSTOMER)

    _assert_untouched(lake, before, out, "write")
    assert "ArrowNotImplementedError" in out["body"] and "halffloat" in out["body"]


def test_an_upload_error_that_is_not_an_aws_error_is_a_write_error(lake: Lake) -> None:
    _previous_day(lake)
    lake.put(KEY, noisy_csv(BIG_ROWS))  # several 5 MiB parts: the upload starts while rows stream
    before = snapshot(lake)
    sess = session()

    def refuse(**_kw: Any) -> None:
        raise RuntimeError("injected: the HTTP pool is gone")

    sess.events.register("before-call.s3.CreateMultipartUpload", refuse)

    out = _load(lake, TUNE, sess)

    _assert_untouched(lake, before, out, "write")
    assert "RuntimeError: injected: the HTTP pool is gone" in out["body"]


def test_a_bad_row_after_rows_were_encoded_is_a_read_error_naming_its_line(lake: Lake) -> None:
    _previous_day(lake, schema=TYPED)
    good = csv_rows(30_000)
    lake.put(KEY, good + b"30000,C0,not-a-number\n" + csv_rows(10, start=30_001))
    before = snapshot(lake)
    # small blocks and row groups: the writer has encoded row groups before the bad row is parsed
    tuning = Tuning(block_size=64 * 1024, row_group_rows=5_000, part_size=5 * 1024 * 1024)

    out = _load(lake, tuning, schema=TYPED)

    _assert_untouched(lake, before, out, "read")
    assert out["body"] == (
        f"Error: read: {URI}: line 30001: column 'amount': value 'not-a-number' does not fit type double"
    )


def test_a_transform_failing_mid_stream_is_a_read_error(lake: Lake) -> None:
    _previous_day(lake)
    lake.put(KEY, csv_rows(5_000))
    before = snapshot(lake)
    tuning = Tuning(block_size=16 * 1024, row_group_rows=500)

    out = _load(lake, tuning, transform=f"{__name__}:fails_past_row_1000")

    _assert_untouched(lake, before, out, "read")
    assert f"{URI}: transform failed on batch" in out["body"]
    assert "no row 1000 wanted" in out["body"]
    assert lake.read_catalog() == by_id(rows_of(50))


@step("write")
def _encode(rows: Iterable[int]) -> list[int]:
    out = []
    for row in rows:
        if row < 0:
            raise ValueError(f"cannot encode {row}")
        out.append(row)
    return out


def _rows(*values: int, then: Exception | None = None) -> Iterator[int]:
    yield from values
    if then is not None:
        raise then


def test_a_step_reports_its_stage_and_pulled_rows_keep_theirs() -> None:
    assert _encode(pulled_as("read", _rows(1, 2))) == [1, 2]
    with pytest.raises(LoadError) as err:
        _encode(pulled_as("read", _rows(1, -2)))
    assert (err.value.stage, err.value.message) == ("write", "ValueError: cannot encode -2")
    with pytest.raises(LoadError) as err:
        _encode(pulled_as("read", _rows(1, then=UnicodeDecodeError("utf-8", b"\xff", 0, 1, "bad"))))
    assert err.value.stage == "read" and err.value.message.startswith("UnicodeDecodeError: ")
    with pytest.raises(LoadError) as err:  # a LoadError keeps its own stage through any step
        _encode(pulled_as("read", _rows(1, then=LoadError("lock", "lease lost"))))
    assert (err.value.stage, err.value.message) == ("lock", "lease lost")
    denied = ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "GetObject")
    with pytest.raises(LoadError) as err:  # an AWS error takes the text the pull asks for
        _encode(
            pulled_as("read", _rows(then=denied), aws=lambda exc: LoadError("read", f"cannot read x: {exc}"))
        )
    assert err.value.stage == "read" and err.value.message.startswith(
        "cannot read x: An error occurred (AccessDenied)"
    )
