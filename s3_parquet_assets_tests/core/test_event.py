"""The event contract: defaults, and a clear error naming the field and the rule for each bad input."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from s3_parquet_assets.core import Column, LoadError, parse_event, yesterday

from ..helpers import event


def test_defaults_and_template() -> None:
    ev = parse_event(event(data_ref=None, partitions_cols=None), now=datetime(2024, 3, 1, 0, 30, tzinfo=UTC))
    assert ev.data_ref == "20240229"  # yesterday in UTC, across a leap day
    assert ev.partitions_cols == ("data_ref",)
    assert ev.source_prefix == "exports/20240229/"
    assert ev.day_prefix == "tables/sales/data_ref=20240229/"
    assert ev.schema == (Column("id"), Column("customer"), Column("amount"))
    assert (ev.delimiter, ev.encoding, ev.header, ev.allow_empty, ev.sse) == (
        ",",
        "utf-8",
        False,
        False,
        "AES256",
    )


def test_yesterday_uses_utc() -> None:
    # 23:30 at UTC-5 on Jan 1 is already Jan 2 in UTC, so "yesterday" is Jan 1.
    from datetime import timedelta, timezone

    local = datetime(2024, 1, 1, 23, 30, tzinfo=timezone(timedelta(hours=-5)))
    assert yesterday(local) == "20240101"


def test_typed_schema_and_extra_partitions() -> None:
    ev = parse_event(
        event(
            schema=[
                {"name": "id", "type": "BIGINT"},
                {"name": "price", "type": "decimal(10, 2)"},
                {"name": "region", "type": "string"},
            ],
            partitions_cols=["data_ref", "region"],
        )
    )
    assert [c.glue_type for c in ev.schema] == ["bigint", "decimal(10,2)", "string"]
    assert ev.extra_partitions == ("region",)
    assert [c.name for c in ev.data_columns] == ["id", "price"]


def test_data_ref_as_int_is_accepted() -> None:
    assert parse_event(event(data_ref=20240115)).data_ref == "20240115"


BAD: list[tuple[dict[str, Any], str]] = [
    ({"bucket_src": None}, "field 'bucket_src': is required"),
    ({"bucket_src": "My_Bucket"}, "field 'bucket_src': 'My_Bucket' is not a valid S3 bucket name"),
    ({"bucket_dstn": "ab"}, "field 'bucket_dstn'"),
    ({"bucket_dstn": "192.168.1.1"}, "must not look like an IP address"),
    ({"bucket_dstn": "a..b"}, "adjacent dots"),
    ({"table": "Sales"}, "field 'table': 'Sales' is not a valid Glue name"),
    ({"table": "sales;drop"}, "field 'table'"),
    ({"database": "an'alytics"}, "field 'database'"),
    ({"pathoutput": "/tables/sales"}, "field 'pathoutput': '/tables/sales' must not start with '/'"),
    ({"pathoutput": "tables/../secret"}, "must not contain '.' or '..' path segments"),
    ({"pathoutput": "tables/sa'les"}, "may only hold letters"),
    ({"pathoutput": "tables/sales/data_ref=1"}, "must be the table root"),
    ({"data_ref": "20230230"}, "field 'data_ref': '20230230' is not a real calendar date"),
    ({"data_ref": "2023-01-01"}, "must be a day as YYYYMMDD"),
    ({"schema": []}, "field 'schema': must be a non-empty list"),
    ({"schema": ["id", "id"]}, "column name 'id' appears more than once"),
    ({"schema": ["id", "Bad Name"]}, "field 'schema[1]'"),
    ({"schema": ["id", {"name": "x", "type": "int"}]}, "mixes plain names"),
    ({"schema": [{"name": "id", "type": "uuid"}]}, "field 'schema[0].type': 'uuid' is not a supported type"),
    ({"schema": [{"name": "id", "type": "decimal(40,2)"}]}, "decimal needs 1 <= p <= 38"),
    ({"schema": ["data_ref", "x"]}, "must not declare 'data_ref'"),
    ({"partitions_cols": ["region"]}, "must start with 'data_ref'"),
    ({"partitions_cols": ["data_ref", "nope"]}, "'nope' is not a column of the schema"),
    ({"prefix": "exports/{day}/"}, "the only placeholder allowed is {data_ref}"),
    ({"prefix": "/exports/"}, "field 'prefix'"),
    ({"delimiter": ";;"}, "field 'delimiter'"),
    ({"encoding": "klingon"}, "field 'encoding': 'klingon' is not a known text encoding"),
    ({"header": "yes"}, "field 'header': must be true or false"),
    ({"transform": "not a path!"}, "field 'transform'"),
    ({"sse": "none"}, "field 'sse'"),
    ({"kms_key_id": "abc"}, "field 'kms_key_id': is only allowed with sse 'aws:kms'"),
    ({"expected_bucket_owner": "me"}, "field 'expected_bucket_owner'"),
    ({"colour": "blue"}, "unknown field(s) ['colour']"),
]


@pytest.mark.parametrize(("overrides", "message"), BAD, ids=[m[:40] for _, m in BAD])
def test_bad_fields_are_named(overrides: dict[str, Any], message: str) -> None:
    raw = event()
    for k, v in overrides.items():
        if v is None:
            raw.pop(k, None)
        else:
            raw[k] = v
    with pytest.raises(LoadError) as info:
        parse_event(raw)
    assert info.value.stage == "validate"
    assert message in str(info.value)


def test_not_an_object() -> None:
    with pytest.raises(LoadError, match="must be a JSON object"):
        parse_event(["x"])  # type: ignore[arg-type]


def test_to_dict_round_trips() -> None:
    ev = parse_event(event(schema=[{"name": "id", "type": "bigint"}], zip_member="a.csv"))
    again = parse_event(ev.to_dict())
    assert again == ev
