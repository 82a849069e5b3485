"""Bad input: every malformed export or event fails with a clear error naming the object and line (or
the field and rule), and leaves the destination exactly as it was (objects, multipart uploads, Glue
table and partitions). Event errors are caught before any AWS call."""

from __future__ import annotations

import gzip
from dataclasses import dataclass, field
from typing import Any

import pytest

from ..helpers import DAY, SRC, TYPED, Lake, csv_rows, zipped
from .support import TALLY, Recorder, load, session, snapshot

P = f"exports/{DAY}/"
URI = f"s3://{SRC}/{P}"


@dataclass
class Case:
    id: str
    objects: dict[str, bytes] = field(default_factory=dict)
    overrides: dict[str, Any] = field(default_factory=dict)
    stage: str = "read"
    mentions: tuple[str, ...] = ()
    raw_event: dict[str, Any] | None = None  # replaces the event entirely
    baseline: bytes = b""  # the previous, good export (loaded with the same overrides)


def lines(*rows: str) -> bytes:
    return "".join(r + "\n" for r in rows).encode()


TEN_MB = 10 * 1024 * 1024
GOOD = csv_rows(2000)

SOURCE_CASES = [
    Case("empty object", {P + "sales.csv": b""}, mentions=(URI + "sales.csv", "no data rows")),
    Case(
        "only a header",
        {P + "sales.csv": b"id,customer,amount\n"},
        {"header": True},
        mentions=(URI + "sales.csv", "no data rows"),
    ),
    Case(
        "truncated gzip",
        {P + "sales.csv.gz": gzip.compress(GOOD)[: len(gzip.compress(GOOD)) // 2]},
        mentions=(URI + "sales.csv.gz", "corrupt or truncated"),
    ),
    Case(
        "gzip that is not gzip",
        {P + "sales.csv.gz": GOOD},
        mentions=(URI + "sales.csv.gz",),
    ),
    Case(
        "corrupt zip",
        {P + "sales.zip": b"PK\x03\x04" + b"\x00garbage" * 50},
        mentions=(URI + "sales.zip", "not a readable zip"),
    ),
    Case(
        "zip with a damaged member",
        {P + "sales.zip": zipped({"sales.csv": GOOD})[:-200] + b"\x00" * 200},
        mentions=(URI + "sales.zip",),
    ),
    Case("empty zip", {P + "sales.zip": zipped({})}, mentions=(URI + "sales.zip", "holds no file")),
    Case(
        "zip with no CSV",
        {P + "sales.zip": zipped({"README.txt": b"This archive holds no export today.\n"})},
        mentions=(URI + "sales.zip", "line 1"),
    ),
    Case(
        "zip with several CSVs and no member chosen",
        {P + "sales.zip": zipped({"a.csv": GOOD, "b.csv": GOOD})},
        mentions=(URI + "sales.zip", "'a.csv'", "'b.csv'", "zip_member"),
    ),
    Case(
        "zip_member not in the archive",
        {P + "sales.zip": zipped({"a.csv": GOOD, "b.csv": GOOD})},
        {"zip_member": "c.csv"},
        mentions=(URI + "sales.zip", "'c.csv'", "'a.csv'"),
    ),
    Case(
        "too few fields",
        {P + "sales.csv": csv_rows(10) + b"10,only-two\n" + csv_rows(5, start=11)},
        mentions=(URI + "sales.csv", "line 11", "3 columns"),
    ),
    Case(
        "too many fields",
        {P + "sales.csv": csv_rows(3) + b"3,a,4.5,extra\n"},
        mentions=(URI + "sales.csv", "line 4", "3 columns"),
    ),
    Case(
        "too few fields with a header",
        {P + "sales.csv": b"id,customer,amount\n" + csv_rows(4) + b"4,x\n"},
        {"header": True},
        mentions=(URI + "sales.csv", "line 6"),
    ),
    Case(
        "unterminated quote",
        {P + "sales.csv": lines("1,a,2", '2,"b,3', "3,c,4")},
        mentions=(URI + "sales.csv", "line 2"),
    ),
    Case(
        "invalid UTF-8",
        {P + "sales.csv": csv_rows(6) + b"6,\xff\xfeoops,9\n"},
        mentions=(URI + "sales.csv", "line 7", "'customer'", "UTF-8"),
    ),
    Case(
        "value not a double",
        {P + "sales.csv": lines("1,a,2.5", "2,b,notanumber")},
        {"schema": TYPED},
        mentions=(URI + "sales.csv", "line 2", "'amount'", "'notanumber'", "double"),
        baseline=csv_rows(25),
    ),
    Case(
        "bigint overflow",
        {P + "sales.csv": lines("1,a,2.5", "99999999999999999999,b,1")},
        {"schema": TYPED},
        mentions=(URI + "sales.csv", "line 2", "'id'", "bigint"),
        baseline=csv_rows(25),
    ),
    Case(
        "not a date",
        {P + "sales.csv": lines("1,2024-01-31", "2,2024-02-30")},
        {"schema": [{"name": "id", "type": "int"}, {"name": "day", "type": "date"}]},
        mentions=(URI + "sales.csv", "line 2", "'day'", "date"),
        baseline=lines("1,2024-01-31", "2,2024-02-29"),
    ),
    Case(
        "decimal too wide",
        {P + "sales.csv": lines("1,12.34", "2,12345.67")},
        {"schema": [{"name": "id", "type": "int"}, {"name": "price", "type": "decimal(4,2)"}]},
        mentions=(URI + "sales.csv", "line 2", "'price'", "decimal(4,2)"),
        baseline=lines("1,12.34", "2,99.99"),
    ),
    Case(
        "not a boolean",
        {P + "sales.csv": lines("1,true", "2,maybe")},
        {"schema": [{"name": "id", "type": "int"}, {"name": "flag", "type": "boolean"}]},
        mentions=(URI + "sales.csv", "line 2", "'flag'", "boolean"),
        baseline=lines("1,true", "2,false"),
    ),
    Case(
        "wrong delimiter",
        {P + "sales.csv": b"1;a;2.5\n2;b;3.5\n"},
        mentions=(URI + "sales.csv", "line 1", "3 columns"),
    ),
    Case(
        "a 10 MB single line",
        {P + "sales.csv": b"1;" * (TEN_MB // 2)},
        mentions=(URI + "sales.csv", "line 1"),
    ),
]

EVENT_CASES = [
    Case(
        "schema with duplicate names",
        overrides={"schema": ["id", "id", "amount"]},
        stage="validate",
        mentions=("'schema'", "'id' appears more than once"),
    ),
    Case(
        "schema with an upper-case name",
        overrides={"schema": ["Id", "customer", "amount"]},
        stage="validate",
        mentions=("'schema[0]'", "'Id'", "Glue name"),
    ),
    Case(
        "schema with a dash",
        overrides={"schema": ["id", "cust-omer", "amount"]},
        stage="validate",
        mentions=("'schema[1]'", "'cust-omer'"),
    ),
    Case(
        "schema with an empty name",
        overrides={"schema": ["id", "", "amount"]},
        stage="validate",
        mentions=("'schema[1]'",),
    ),
    Case(
        "schema declaring the partition key",
        overrides={"schema": ["id", "data_ref"]},
        stage="validate",
        mentions=("'schema'", "data_ref"),
    ),
    Case(
        "schema with an unknown type",
        overrides={"schema": [{"name": "id", "type": "uuid"}]},
        stage="validate",
        mentions=("'schema[0].type'", "'uuid'"),
    ),
    Case(
        "schema not a list",
        overrides={"schema": "id,customer,amount"},
        stage="validate",
        mentions=("'schema'",),
    ),
    Case(
        "a date that does not exist",
        overrides={"data_ref": "20230229"},
        stage="validate",
        mentions=("'data_ref'", "'20230229'", "calendar date"),
    ),
    Case("month 13", overrides={"data_ref": "20241301"}, stage="validate", mentions=("'data_ref'",)),
    Case(
        "a dashed date",
        overrides={"data_ref": "2024-01-15"},
        stage="validate",
        mentions=("'data_ref'", "YYYYMMDD"),
    ),
    Case(
        "source bucket that does not exist",
        overrides={"bucket_src": "no-such-bucket-here"},
        stage="list",
        mentions=("'no-such-bucket-here'", "does not exist"),
    ),
    Case(
        "destination bucket that does not exist",
        overrides={"bucket_dstn": "no-such-dst-here"},
        stage="lock",
        mentions=("s3://no-such-dst-here/",),
    ),
    Case(
        "invalid bucket name",
        overrides={"bucket_src": "Bad_Bucket"},
        stage="validate",
        mentions=("'bucket_src'", "'Bad_Bucket'"),
    ),
    Case(
        "bucket name like an IP",
        overrides={"bucket_dstn": "192.168.1.1"},
        stage="validate",
        mentions=("'bucket_dstn'",),
    ),
    Case(
        "prefix that does not exist",
        overrides={"prefix": "nothing/here/"},
        stage="list",
        mentions=(f"s3://{SRC}/nothing/here/", "'sales'"),
    ),
    Case(
        "no object matching",
        overrides={"substr": "invoices"},
        stage="list",
        mentions=(f"s3://{SRC}/{P}", "'invoices'"),
    ),
    Case(
        "prefix that escapes",
        overrides={"prefix": "../exports/"},
        stage="validate",
        mentions=("'prefix'", "'..'"),
    ),
    Case(
        "unknown field",
        overrides={"bucket_source": "src-bucket"},
        stage="validate",
        mentions=("unknown field", "'bucket_source'"),
    ),
    Case(
        "unknown field by case",
        overrides={"Schema": ["id"]},
        stage="validate",
        mentions=("unknown field", "'Schema'"),
    ),
    Case(
        "missing required field",
        raw_event={"bucket_src": SRC, "bucket_dstn": "dst-bucket"},
        stage="validate",
        mentions=("'substr'", "required"),
    ),
    Case(
        "event not an object",
        raw_event=["not", "an", "object"],
        stage="validate",  # type: ignore[arg-type]
        mentions=("JSON object",),
    ),
    Case(
        "multi-character delimiter",
        overrides={"delimiter": "||"},
        stage="validate",
        mentions=("'delimiter'",),
    ),
    Case("unknown encoding", overrides={"encoding": "utf-99"}, stage="validate", mentions=("'encoding'",)),
    Case(
        "kms key without SSE-KMS",
        overrides={"kms_key_id": "alias/x"},
        stage="validate",
        mentions=("'kms_key_id'",),
    ),
    Case(
        "bad bucket owner",
        overrides={"expected_bucket_owner": "me"},
        stage="validate",
        mentions=("'expected_bucket_owner'",),
    ),
    Case(
        "partitions not starting with the day",
        overrides={"partitions_cols": ["customer"]},
        stage="validate",
        mentions=("'partitions_cols'",),
    ),
    Case(
        "transform that is not a path",
        overrides={"transform": "os.system('rm -rf /')"},
        stage="validate",
        mentions=("'transform'",),
    ),
]

ESCAPES = [
    ("pathoutput", "../etc"),
    ("pathoutput", "tables/../../other"),
    ("pathoutput", "/abs/path"),
    ("pathoutput", "tables//sales"),
    ("pathoutput", "tables/./sales"),
    ("pathoutput", ".."),
    ("pathoutput", "tables/sa'les"),
    ("pathoutput", 'tables/sa"les'),
    ("pathoutput", "tables/sa les"),
    ("pathoutput", "tables/*"),
    ("pathoutput", "tables\\sales"),
    ("pathoutput", "tables/data_ref=20240115"),
    ("table", "../sales"),
    ("table", "a/b"),
    ("table", "sales'"),
    ("table", 'sa"les'),
    ("table", "sales; drop table x"),
    ("table", "Sales"),
    ("table", "sales`"),
    ("database", "../analytics"),
    ("database", "analytics/x"),
    ("database", "analytics'"),
    ("database", "analytics.sales"),
]
EVENT_CASES += [
    Case(f"{name} {value!r}", overrides={name: value}, stage="validate", mentions=(f"'{name}'",))
    for name, value in ESCAPES
]

ALL = SOURCE_CASES + EVENT_CASES


@pytest.mark.parametrize("case", ALL, ids=[c.id for c in ALL])
def test_bad_input_is_named_and_touches_nothing(lake: Lake, case: Case) -> None:
    lake.put(P + "sales.csv", case.baseline or csv_rows(25))
    prev = load(lake, **(case.overrides if case.baseline else {}))
    assert prev["statusCode"] == 200, prev
    served = lake.read_catalog()
    assert len(served) == prev["result"]["rows"]
    if case.objects:
        lake.clients.s3.delete_object(Bucket=SRC, Key=P + "sales.csv")
        for key, body in case.objects.items():
            lake.put(key, body)
    before = snapshot(lake)
    sess = session()
    calls = Recorder().install(sess)
    Recorder.install(calls, sess, "glue")

    if case.raw_event is not None:
        from s3_parquet_assets.core import handle_event, make_clients

        out = handle_event(case.raw_event, make_clients(sess))
    else:
        out = load(lake, sess, **case.overrides)

    assert out["statusCode"] == 500, out
    TALLY["bad input (named cases)"] += 1
    assert out["stage"] == case.stage, out
    assert out["body"].startswith(f"Error: {case.stage}: ")
    for text in case.mentions:
        assert text in out["body"], (text, out["body"])
    assert snapshot(lake) == before
    assert lake.read_catalog() == served
    if case.stage == "validate":
        assert calls.calls == []  # rejected before any AWS call


def test_ten_mb_single_valid_line_loads_or_fails_cleanly(lake: Lake) -> None:
    """One 10 MB row that is well formed: either it loads exactly, or the error names the object and
    line and the destination is untouched."""
    lake.put(P + "sales.csv", csv_rows(25))
    assert load(lake)["statusCode"] == 200
    big = "y" * TEN_MB
    lake.put(P + "sales.csv", f"1,{big},2.5\n2,b,3.5\n".encode())
    before = snapshot(lake)
    out = load(lake)
    if out["statusCode"] == 200:
        assert lake.read_catalog() == [
            {"id": "1", "customer": big, "amount": "2.5"},
            {"id": "2", "customer": "b", "amount": "3.5"},
        ]
    else:
        assert out["stage"] == "read"
        assert f"{URI}sales.csv" in out["body"]
        assert "line 1" in out["body"]
        assert snapshot(lake) == before


def test_quoted_line_breaks_across_read_blocks_load_exactly(lake: Lake) -> None:
    """Not bad input: a well-formed export whose quoted values hold line breaks, several read blocks
    long, so block boundaries fall inside quoted values. It must load exactly, not fail."""
    n = 40_000
    body = "".join(f'{i},"line one of {i}\nline two, with a comma",{i}.5\n' for i in range(n)).encode()
    assert len(body) > 2 * 1024 * 1024  # more than two of the suite's 1 MiB read blocks
    lake.put(P + "sales.csv", body)
    out = load(lake)
    assert out["statusCode"] == 200, out
    rows = lake.read_catalog()
    assert len(rows) == n
    assert all(r["customer"] == f"line one of {r['id']}\nline two, with a comma" for r in rows)
    assert all(r["amount"] == f"{r['id']}.5" for r in rows)
