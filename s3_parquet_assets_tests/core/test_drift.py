"""Header-aware reads and schema drift (issue 16), against the moto server.

With ``header: true`` columns are read by name (any order, BOM-safe, trimmed, any case, or a typed
column's ``source``); ``extra_columns`` (fail | ignore | add) and ``missing_columns`` (fail | null)
say what drift does. A refused load names the object and the columns and leaves the day exactly as it
was. Every case runs on a plain, a gzip and a zip export.
"""

from __future__ import annotations

import io
from typing import Any

import boto3
import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from s3_parquet_assets.core import AwsClients, LoadError, handle_event, make_clients, parse_event
from s3_parquet_assets.core.reader import arrow_type

from ..helpers import DAY, DB, PATHOUT, SRC, TABLE, Lake, event, gz, zipped
from ..reliability.support import snapshot

OLDER = "20240114"
KINDS = ["csv", "gz", "zip"]
TYPED = [
    {"name": "id", "type": "bigint"},
    {"name": "customer", "type": "string"},
    {"name": "amount", "type": "double"},
]
ROWS = [("1", "alice", "3.5"), ("2", "bob", "4.25"), ("3", "carol", "0.5")]


def csv_text(header: list[str], rows: list[tuple[str, ...]] | list[list[str]]) -> str:
    return "".join(",".join(r) + "\n" for r in [header, *rows])


def stage(lake: Lake, kind: str, text: str, day: str = DAY) -> str:
    """Make ``text`` the day's only export, as a plain, gzip or zip object; returns its s3:// URI."""
    folder = f"exports/{day}/"
    for key in lake.keys(folder, bucket=SRC):
        lake.clients.s3.delete_object(Bucket=SRC, Key=key)
    data = text.encode()
    key, body = {
        "csv": (f"{folder}sales.csv", data),
        "gz": (f"{folder}sales.csv.gz", gz(data)),
        "zip": (f"{folder}sales.zip", zipped({"sales.csv": data})),
    }[kind]
    lake.put(key, body)
    return f"s3://{SRC}/{key}"


def as_text(rows: list[tuple[str, ...]], names: list[str]) -> list[dict[str, Any]]:
    return [dict(zip(names, r, strict=True)) for r in rows]


def typed(rows: list[tuple[str, ...]]) -> list[dict[str, Any]]:
    return [{"id": int(i), "customer": c, "amount": float(a)} for i, c, a in rows]


def load(clients: AwsClients | None = None, **overrides: Any) -> dict[str, Any]:
    return handle_event(event(**{"header": True, **overrides}), clients)


def read_through_catalog(lake: Lake, days: list[str]) -> list[dict[str, Any]]:
    """What a catalog reader (Athena) sees for ``days`` together: each partition's Parquet files read by
    name with the Glue table's columns, so a column a file lacks reads as null."""
    table = lake.clients.glue.get_table(DatabaseName=DB, Name=TABLE)["Table"]
    columns = table["StorageDescriptor"]["Columns"]
    schema = pa.schema([(c["Name"], arrow_type(c["Type"])) for c in columns])
    rows: list[dict[str, Any]] = []
    for day in days:
        part = lake.partition(day)
        assert part is not None, day
        path = part["StorageDescriptor"]["Location"].removeprefix("s3://").rstrip("/")
        found = ds.dataset(path, filesystem=lake.fs(), format="parquet", schema=schema).to_table()
        rows += [{**r, "data_ref": day} for r in found.to_pylist()]
    return sorted(rows, key=lambda r: (r["data_ref"], str(r["id"])))


class Writes:
    """Records every request that writes to the destination's day folder."""

    def __init__(self, session: boto3.Session) -> None:
        self.keys: list[str] = []
        session.events.register("before-call.s3", self._hook)

    def _hook(self, params: dict[str, Any], event_name: str, **_: Any) -> None:
        op = event_name.rsplit(".", 1)[-1]
        path = str(params.get("url_path", ""))
        writes = ("PutObject", "CreateMultipartUpload", "UploadPart", "DeleteObjects")
        if op in writes and f"{PATHOUT}/data_ref=" in path:
            self.keys.append(f"{op} {path}")


def refused(lake: Lake, kind: str, text: str, **overrides: Any) -> tuple[str, str]:
    """Load a good day, then ``text``; the second load must fail having written nothing and leave the
    day exactly as it was. Returns the export's URI and the error body."""
    header = [["id", "customer", "amount"]] if overrides.get("header", True) else []
    stage(lake, kind, "".join(",".join(r) + "\n" for r in [*header, *ROWS]))
    first = load(**overrides)
    assert first["statusCode"] == 200, first
    served = lake.read_catalog()
    location = lake.partition()["StorageDescriptor"]["Location"]  # type: ignore[index]
    uri = stage(lake, kind, text)
    before = snapshot(lake)
    session = boto3.Session(region_name="us-east-1")
    writes = Writes(session)

    out = load(make_clients(session), **overrides)

    assert out["statusCode"] == 500, out
    assert writes.keys == []  # refused before anything was written
    assert snapshot(lake) == before
    assert lake.partition()["StorageDescriptor"]["Location"] == location  # type: ignore[index]
    assert lake.read_catalog() == served
    assert uri in out["body"]
    return uri, out["body"]


# ---------------------------------------------------------------------------------------------------
# Columns by name
# ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_a_reordered_header_loads_each_column_by_name_names_only(lake: Lake, kind: str) -> None:
    order = ["amount", "id", "customer"]
    stage(lake, kind, csv_text(order, [(a, i, c) for i, c, a in ROWS]))
    out = load()
    assert out["statusCode"] == 200, out
    assert lake.read_catalog() == as_text(ROWS, ["id", "customer", "amount"])
    result = out["result"]
    assert result["file_columns"] == order
    assert (result["ignored_columns"], result["added_columns"], result["null_columns"]) == ([], [], [])


@pytest.mark.parametrize("kind", KINDS)
def test_a_reordered_header_loads_each_column_by_name_typed(lake: Lake, kind: str) -> None:
    stage(lake, kind, csv_text(["customer", "amount", "id"], [(c, a, i) for i, c, a in ROWS]))
    out = load(schema=TYPED)
    assert out["statusCode"] == 200, out
    assert lake.read_catalog() == typed(ROWS)


@pytest.mark.parametrize("kind", KINDS)
def test_a_bad_value_in_a_reordered_file_names_its_line_and_column(lake: Lake, kind: str) -> None:
    rows = [(c, a, i) for i, c, a in ROWS] + [("dave", "not-a-number", "4")]
    uri = stage(lake, kind, csv_text(["customer", "amount", "id"], rows))
    out = load(schema=TYPED)
    assert (
        out["body"]
        == f"Error: read: {uri}: line 5: column 'amount': value 'not-a-number' does not fit type double"
    )


@pytest.mark.parametrize("kind", KINDS)
def test_source_names_headers_with_spaces_bom_blanks_and_any_case(lake: Lake, kind: str) -> None:
    schema = [
        {"name": "id", "type": "bigint", "source": "Customer ID"},
        {"name": "phone", "type": "string", "source": "Contact Phone Number"},
        {"name": "amount", "type": "double"},
    ]
    header = ["\ufeffcontact phone number", " AMOUNT ", "customer id"]
    stage(lake, kind, csv_text(header, [("555-0101", "2.5", "7"), ("555-0102", "1", "8")]))
    out = load(schema=schema)
    assert out["statusCode"] == 200, out
    assert lake.read_catalog() == [
        {"id": 7, "phone": "555-0101", "amount": 2.5},
        {"id": 8, "phone": "555-0102", "amount": 1.0},
    ]
    assert out["result"]["file_columns"] == ["contact phone number", "AMOUNT", "customer id"]
    glue = lake.clients.glue.get_table(DatabaseName=DB, Name=TABLE)["Table"]["StorageDescriptor"]["Columns"]
    assert [(c["Name"], c["Type"]) for c in glue] == [
        ("id", "bigint"),
        ("phone", "string"),
        ("amount", "double"),
    ]


@pytest.mark.parametrize("kind", KINDS)
def test_a_header_with_a_quoted_line_break_is_one_row(lake: Lake, kind: str) -> None:
    # the parser's skip_rows skips a line, not a record: the loader cuts the header off itself
    text = 'id,"Notes\r\n(free text)",customer,amount\r\n' + "".join(
        f'{i},"n\n{i}",{c},{a}\r\n' for i, c, a in ROWS
    )
    stage(lake, kind, text)
    out = load(extra_columns="ignore", schema=TYPED)
    assert out["statusCode"] == 200, out
    assert lake.read_catalog() == typed(ROWS)
    assert out["result"]["ignored_columns"] == ["Notes\r\n(free text)"]
    bad = text + "4,x,dave,many\r\n"
    uri = stage(lake, kind, bad)
    out = load(extra_columns="ignore", schema=TYPED)
    assert out["body"].startswith(f"Error: read: {uri}: line "), out
    assert "column 'amount': value 'many' does not fit type double" in out["body"]


# ---------------------------------------------------------------------------------------------------
# extra_columns
# ---------------------------------------------------------------------------------------------------
WITH_REGION = csv_text(["id", "region", "customer", "amount"], [(i, "eu", c, a) for i, c, a in ROWS])


@pytest.mark.parametrize("kind", KINDS)
def test_an_added_column_fails_by_default_before_anything_is_written(lake: Lake, kind: str) -> None:
    text = csv_text(
        ["id", "Region", "customer", "amount", "Sales Rep"], [(i, "eu", c, a, "x") for i, c, a in ROWS]
    )
    uri, body = refused(lake, kind, text)
    assert body == (
        f"Error: read: {uri}: the header has column(s) ['Region', 'Sales Rep'] the schema does not declare "
        "(extra_columns: fail; ignore drops them, add adds them to the table); "
        "header: ['id', 'Region', 'customer', 'amount', 'Sales Rep']"
    )


@pytest.mark.parametrize("kind", KINDS)
def test_an_added_column_is_dropped_with_ignore(lake: Lake, kind: str) -> None:
    stage(lake, kind, WITH_REGION)
    out = load(extra_columns="ignore")
    assert out["statusCode"] == 200, out
    assert lake.read_catalog() == as_text(ROWS, ["id", "customer", "amount"])
    assert out["result"]["ignored_columns"] == ["region"]
    assert out["result"]["file_columns"] == ["id", "region", "customer", "amount"]
    glue = lake.clients.glue.get_table(DatabaseName=DB, Name=TABLE)["Table"]["StorageDescriptor"]["Columns"]
    assert [c["Name"] for c in glue] == ["id", "customer", "amount"]


@pytest.mark.parametrize("kind", KINDS)
def test_an_added_column_extends_the_table_with_add_and_older_days_read_it_as_null(
    lake: Lake, kind: str
) -> None:
    stage(lake, kind, csv_text(["id", "customer", "amount"], ROWS[:1]), day=OLDER)
    assert load(schema=TYPED, data_ref=OLDER)["statusCode"] == 200
    stage(
        lake,
        kind,
        csv_text(["id", "Region", "customer", "amount"], [(i, "eu", c, a) for i, c, a in ROWS[1:]]),
    )

    out = load(schema=TYPED, extra_columns="add")

    assert out["statusCode"] == 200, out
    assert out["result"]["added_columns"] == ["region"]
    glue = lake.clients.glue.get_table(DatabaseName=DB, Name=TABLE)["Table"]["StorageDescriptor"]["Columns"]
    assert [(c["Name"], c["Type"]) for c in glue] == [
        ("id", "bigint"),
        ("customer", "string"),
        ("amount", "double"),
        ("region", "string"),
    ]
    assert read_through_catalog(lake, [OLDER, DAY]) == [
        {"id": 1, "customer": "alice", "amount": 3.5, "region": None, "data_ref": OLDER},
        {"id": 2, "customer": "bob", "amount": 4.25, "region": "eu", "data_ref": DAY},
        {"id": 3, "customer": "carol", "amount": 0.5, "region": "eu", "data_ref": DAY},
    ]


@pytest.mark.parametrize("kind", KINDS)
def test_add_refuses_a_header_that_is_no_glue_name(lake: Lake, kind: str) -> None:
    text = csv_text(["id", "customer", "amount", "Sales Rep"], [(i, c, a, "x") for i, c, a in ROWS])
    uri, body = refused(lake, kind, text, extra_columns="add")
    assert f"Error: read: {uri}: extra_columns: add cannot add header column(s) ['Sales Rep']" in body
    assert '"source"' in body and "extra_columns: ignore" in body


def test_add_refuses_a_column_the_table_has_with_another_type(lake: Lake) -> None:
    stage(lake, "csv", csv_text(["id", "customer", "amount", "region"], [(i, c, a, "1") for i, c, a in ROWS]))
    wider = [*TYPED, {"name": "region", "type": "int"}]
    assert load(schema=wider)["statusCode"] == 200
    text = csv_text(["id", "customer", "amount", "region"], [(i, c, a, "2") for i, c, a in ROWS])
    uri, body = refused(lake, "csv", text, schema=TYPED, extra_columns="add")
    assert body == (
        f"Error: catalog: {uri}: Glue table {DB}.{TABLE} has column(s) {{'region': 'int'}}: extra_columns: "
        "add cannot add them as string; declare them in the schema with their type"
    )


# ---------------------------------------------------------------------------------------------------
# missing_columns
# ---------------------------------------------------------------------------------------------------
WITHOUT_CUSTOMER = csv_text(["amount", "id"], [(a, i) for i, _, a in ROWS])


@pytest.mark.parametrize("kind", KINDS)
def test_a_missing_column_fails_by_default_naming_it(lake: Lake, kind: str) -> None:
    uri, body = refused(lake, kind, WITHOUT_CUSTOMER)
    assert body == (
        f"Error: read: {uri}: the header lacks the declared column(s) ['customer'] "
        "(missing_columns: fail; null loads them as nulls); header: ['amount', 'id']"
    )


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("schema", [["id", "customer", "amount"], TYPED], ids=["names", "typed"])
def test_a_missing_column_loads_as_nulls_with_null(lake: Lake, kind: str, schema: list[Any]) -> None:
    stage(lake, kind, WITHOUT_CUSTOMER)
    out = load(schema=schema, missing_columns="null")
    assert out["statusCode"] == 200, out
    assert out["result"]["null_columns"] == ["customer"]
    expected = as_text(ROWS, ["id", "customer", "amount"]) if schema != TYPED else typed(ROWS)
    assert lake.read_catalog() == [{**r, "customer": None} for r in expected]


def test_both_drifts_are_named_at_once_and_a_row_that_is_no_header_is_called_so(lake: Lake) -> None:
    uri, body = refused(lake, "csv", csv_text(["id", "client", "amount"], ROWS))
    assert "column(s) ['client'] the schema does not declare" in body
    assert "lacks the declared column(s) ['customer']" in body
    lake.clients.s3.delete_object(Bucket=SRC, Key=uri.removeprefix(f"s3://{SRC}/"))
    uri = stage(lake, "csv", csv_text(list(ROWS[0]), ROWS[1:]))
    out = load()
    assert out["body"] == (
        f"Error: read: {uri}: none of the schema's columns is in the header ['1', 'alice', '3.5']; "
        "is line 1 a header?"
    )


def test_a_missing_partition_column_cannot_be_null(lake: Lake) -> None:
    stage(lake, "csv", csv_text(["id", "amount"], [(i, a) for i, _, a in ROWS]))
    out = load(missing_columns="null", partitions_cols=["data_ref", "customer"])
    assert out["statusCode"] == 500
    assert "the header lacks the partition column(s) ['customer'], which cannot be null" in out["body"]
    assert lake.keys(f"{PATHOUT}/") == []


# ---------------------------------------------------------------------------------------------------
# A header where none is expected
# ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("schema", [["id", "customer", "amount"], TYPED], ids=["names", "typed"])
def test_a_header_row_in_a_headerless_export_is_refused_suggesting_header_true(
    lake: Lake, kind: str, schema: list[Any]
) -> None:
    text = csv_text([" Amount", "ID", "customer"], [(a, i, c) for i, c, a in ROWS])
    uri, body = refused(lake, kind, text, header=False, schema=schema)
    assert body == (
        f"Error: read: {uri}: line 1 [' Amount', 'ID', 'customer'] holds the schema's column names but "
        'header is false; set "header": true to read it as the header'
    )


# ---------------------------------------------------------------------------------------------------
# The contract
# ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"extra_columns": "keep"}, "field 'extra_columns': 'keep' must be one of fail, ignore, add"),
        ({"missing_columns": "skip"}, "field 'missing_columns': 'skip' must be one of fail, null"),
        (
            {"header": False, "extra_columns": "ignore"},
            "field 'extra_columns': 'ignore' only applies to an export with a header (header: true)",
        ),
        (
            {"header": False, "missing_columns": "null"},
            "field 'missing_columns': 'null' only applies to an export with a header (header: true)",
        ),
        (
            {"header": False, "schema": [{"name": "id", "type": "int", "source": "ID"}]},
            "field 'schema[0].source': names a header column; it needs header: true",
        ),
        (
            {"schema": [{"name": "id", "type": "int", "source": " "}]},
            "field 'schema[0].source': ' ' must be the column's name in the export's header (a non-empty string)",
        ),
        (
            {"schema": [{"name": "id", "type": "int"}, {"name": "key", "type": "int", "source": "ID"}]},
            "field 'schema': columns 'id' and 'key' would both be read from header 'id'",
        ),
        (
            {"schema": [{"name": "id", "type": "int", "origin": "x"}]},
            "field 'schema[0]': unknown key(s) ['origin']; allowed: name, type, source",
        ),
    ],
)
def test_the_contract_refuses_bad_drift_settings(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(LoadError) as info:
        parse_event(event(**{"header": True, **overrides}))
    assert info.value.stage == "validate"
    assert info.value.message == message


def test_the_drift_settings_round_trip_and_default_to_fail() -> None:
    ev = parse_event(event(header=True))
    assert (ev.extra_columns, ev.missing_columns) == ("fail", "fail")
    schema = [{"name": "phone", "type": "string", "source": "Contact Phone"}]
    full = parse_event(event(header=True, schema=schema, extra_columns="add", missing_columns="null"))
    assert full.to_dict()["schema"] == schema
    assert parse_event(full.to_dict()) == full


# ---------------------------------------------------------------------------------------------------
# The source is read once; the header in other encodings and shapes (in memory, no AWS)
# ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("header", [True, False])
def test_the_header_peek_reuses_the_stream_no_second_get(lake: Lake, kind: str, header: bool) -> None:
    rows = [(str(i), f"c{i}", f"{i}.5") for i in range(20_000)]
    stage(
        lake,
        kind,
        csv_text(["amount", "id", "customer"], [(a, i, c) for i, c, a in rows])[
            len("amount,id,customer\n") if not header else 0 :
        ],
    )
    session = boto3.Session(region_name="us-east-1")
    gets: list[str] = []
    session.events.register(
        "before-call.s3.GetObject",
        lambda params, **_: gets.append(str(params.get("headers", {}).get("Range", "whole"))),
    )
    overrides: dict[str, Any] = (
        {"header": header} if header else {"header": False, "schema": ["amount", "id", "customer"]}
    )
    out = load(make_clients(session), **overrides)
    assert out["statusCode"] == 200, out
    assert out["result"]["rows"] == len(rows)
    streams = [g for g in gets if g == "whole" or g.endswith("-")]  # GETs open to the end of the object
    assert len(streams) == 1, gets


def batches_of(data: bytes, **overrides: Any) -> list[dict[str, Any]]:
    from s3_parquet_assets.core.reader import iter_batches

    ev = parse_event(event(**{"header": True, **overrides}))
    return [r for b in iter_batches(lambda: io.BytesIO(data), ev, "mem://sales.csv") for r in b.to_pylist()]


def test_a_header_in_latin1_and_in_utf16_with_its_bom_matches_by_name() -> None:
    schema = [{"name": "cafe", "type": "string", "source": "Café"}, {"name": "id", "type": "int"}]
    assert batches_of(
        "Id;CAFÉ\n1;crème\n".encode("latin-1"), schema=schema, encoding="latin-1", delimiter=";"
    ) == [{"cafe": "crème", "id": 1}]
    assert batches_of("café,id\r\nnoir,2\r\n".encode("utf-16"), schema=schema, encoding="utf-16") == [
        {"cafe": "noir", "id": 2}
    ]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            b"id,customer,ID\n1,a,1\n",
            "mem://sales.csv: the header names column(s) ['ID', 'id'] more than once",
        ),
        (b"id,cust\xffomer,amount\n1,a,2\n", "mem://sales.csv: line 1 (the header) is not valid utf-8 text"),
        (
            b"id," + b"x" * (2 << 20) + b"\n1,2\n",
            "mem://sales.csv: line 1 (the header) does not end within 1048576 bytes",
        ),
    ],
    ids=["repeated", "not utf-8", "too long"],
)
def test_a_header_that_cannot_be_matched_is_named(data: bytes, message: str) -> None:
    with pytest.raises(LoadError) as info:
        batches_of(data)
    assert (info.value.stage, info.value.message) == ("read", message)
