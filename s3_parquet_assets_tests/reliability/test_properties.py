"""Property-based tests (hypothesis) of the two parsers a load trusts: the event and the CSV.

Any event gives either a valid LoadEvent (whose names cannot escape and which round-trips) or a clean
validate error; any export gives either exactly its rows in the catalog or a clean read error with the
destination untouched. Never a crash, never a partial write. One moto server for everything; the
emulator is reset per example.
"""

from __future__ import annotations

import csv
import io
import re
from datetime import date
from typing import Any

import boto3
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from s3_parquet_assets.core import AwsClients, LoadError, LoadEvent, handle_event, make_clients, parse_event
from s3_parquet_assets.core.contract import event_fields

from ..helpers import DAY, SRC, TYPED, Lake, csv_rows, event, gz, zipped
from .support import TALLY, TUNE, day_versions, reset_moto, snapshot

KEY = f"exports/{DAY}/sales.csv"

FAST = settings(max_examples=300, deadline=None, database=None, derandomize=True)
SLOW = settings(
    max_examples=40,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

# -------------------------------------------------------------------------------------------------
# The event
# -------------------------------------------------------------------------------------------------
json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**12), 10**12),
    st.floats(allow_nan=False),
    st.text(max_size=30),
    st.sampled_from(["..", "/", "../x", "a/../b", "x'y", 'x"y', "data_ref=1", "{data_ref}", "20240229"]),
)
json_value = st.recursive(
    json_leaf,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=8,
)
field_names = st.sampled_from(sorted(f.name for f in event_fields()))


@st.composite
def events(draw: st.DrawFn) -> Any:
    """Either noise, or a valid event with a few fields replaced, removed or added."""
    if draw(st.booleans()):
        return draw(st.dictionaries(field_names | st.text(max_size=10), json_value, max_size=8))
    ev: dict[str, Any] = event()
    for _ in range(draw(st.integers(1, 3))):
        action = draw(st.sampled_from(["replace", "remove", "add", "schema"]))
        name = draw(field_names)
        if action == "replace":
            ev[name] = draw(json_value)
        elif action == "remove":
            ev.pop(name, None)
        elif action == "add":
            ev[draw(st.text(min_size=1, max_size=10))] = draw(json_value)
        else:
            ev["schema"] = draw(
                st.lists(
                    st.text(max_size=6)
                    | st.fixed_dictionaries({"name": st.text(max_size=6), "type": json_value}),
                    max_size=4,
                )
            )
    return ev


SAFE_PATH = re.compile(r"^[A-Za-z0-9._\-/=+]+$")
GLUE = re.compile(r"^[a-z0-9_]{1,255}$")


def check_valid(ev: LoadEvent) -> None:
    segments = ev.pathoutput.split("/")
    assert SAFE_PATH.match(ev.pathoutput)
    assert not ev.pathoutput.startswith("/")
    assert ".." not in segments and "." not in segments and "" not in segments
    assert "data_ref=" not in ev.pathoutput
    assert ev.day_prefix.startswith(ev.table_root + "/data_ref=")
    assert GLUE.match(ev.table) and GLUE.match(ev.database)
    for col in ev.schema:
        assert GLUE.match(col.name)
    assert len({c.name for c in ev.schema}) == len(ev.schema)
    date(int(ev.data_ref[:4]), int(ev.data_ref[4:6]), int(ev.data_ref[6:]))
    assert ".." not in ev.source_prefix.split("/")
    assert len(ev.delimiter) == 1 and len(ev.quotechar) == 1
    assert parse_event(ev.to_dict()) == ev


@FAST
@given(events())
def test_any_event_parses_or_fails_validation_cleanly(raw: Any) -> None:
    TALLY["event (hypothesis)"] += 1
    try:
        ev = parse_event(raw)
    except LoadError as exc:
        error = exc
    else:
        check_valid(ev)
        return
    assert error.stage == "validate"
    assert error.message


@FAST
@given(st.one_of(json_value, st.lists(json_value), st.text()))
def test_non_objects_are_rejected(raw: Any) -> None:
    assume(not isinstance(raw, dict))
    with pytest.raises(LoadError) as info:
        parse_event(raw)
    assert info.value.stage == "validate"


# -------------------------------------------------------------------------------------------------
# The CSV, through real loads against the moto server
# -------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def shared(moto_endpoint: str) -> tuple[str, AwsClients]:
    return moto_endpoint, make_clients(boto3.Session(region_name="us-east-1"))


def fresh(shared: tuple[str, AwsClients], schema: Any) -> tuple[Lake, dict[str, Any]]:
    """A reset emulator holding a complete previous version of the day."""
    endpoint, clients = shared
    reset_moto(endpoint)
    lake = Lake(clients)
    lake.setup()
    lake.put(KEY, csv_rows(5) if schema == TYPED else b"a,b,c\n")
    prev = handle_event(event(schema=schema), clients, tuning=TUNE)
    assert prev["statusCode"] == 200, prev
    return lake, prev


# Any text a CSV cell can hold, line breaks included (the writer quotes them). U+FEFF is left out: a
# byte-order mark at the very start of a file is taken as a BOM, which is what exports mean by it.
# Surrogates cannot be encoded.
cell = st.text(
    alphabet=st.one_of(
        st.sampled_from(",;|\t\"' \n\r"),
        st.characters(blacklist_categories=("Cs",), blacklist_characters="\ufeff"),
    ),
    max_size=12,
)


# How the export is written. A value holding a bare CR must be quoted to be well formed: the csv module
# quotes only characters of its line terminator, so "\n" endings go with quoting everything.
STYLES = [("\r\n", csv.QUOTE_MINIMAL), ("\r\n", csv.QUOTE_ALL), ("\n", csv.QUOTE_ALL)]


def write_csv(rows: list[list[str]], delimiter: str, style: tuple[str, int] = STYLES[0]) -> bytes:
    buf = io.StringIO()
    csv.writer(buf, delimiter=delimiter, lineterminator=style[0], quoting=style[1]).writerows(rows)
    return buf.getvalue().encode()


@SLOW
@given(
    rows=st.lists(st.lists(cell, min_size=3, max_size=3), min_size=1, max_size=40),
    delimiter=st.sampled_from([",", ";", "|", "\t"]),
    header=st.booleans(),
    style=st.sampled_from(STYLES),
)
def test_any_well_formed_csv_loads_exactly(
    shared: tuple[str, AwsClients], rows: list[list[str]], delimiter: str, header: bool, style: Any
) -> None:
    TALLY["well-formed export (hypothesis)"] += 1
    schema = ["id", "customer", "amount"]
    lake, _ = fresh(shared, schema)
    body = write_csv(([schema] if header else []) + rows, delimiter, style)
    lake.put(KEY, body)

    out = handle_event(event(schema=schema, delimiter=delimiter, header=header), lake.clients, tuning=TUNE)

    assert out["statusCode"] == 200, (out, body)
    expected = [dict(zip(schema, r, strict=True)) for r in rows]
    got = lake.read_catalog()
    assert sorted(got, key=repr) == sorted(expected, key=repr)
    assert out["result"]["rows"] == len(rows)
    assert len(day_versions(lake, DAY)) == 1


def mutate(data: bytes, edits: list[tuple[int, bytes]]) -> bytes:
    out = bytearray(data)
    for pos, piece in edits:
        at = pos % (len(out) + 1)
        out[at:at] = piece
    return bytes(out)


noise = st.sampled_from([b",", b'"', b"\n", b"\r", b"\xff", b"\xc3", b"x", b"-1e999", b"", b"\x00", b",,,"])


EDITS = st.lists(st.tuples(st.integers(0, 10_000), noise), min_size=1, max_size=4)
CONTAINERS = {"sales.csv": lambda b: b, "sales.csv.gz": gz, "sales.zip": lambda b: zipped({"sales.csv": b})}


@SLOW
@given(
    name=st.sampled_from(sorted(CONTAINERS)),
    body=st.one_of(st.binary(max_size=300), st.builds(mutate, st.just(csv_rows(30)), EDITS)),
    wrap=st.sampled_from(["raw", "wrapped", "wrapped-then-mutated"]),
    edits=EDITS,
    typed=st.booleans(),
)
def test_any_bytes_load_exactly_or_fail_cleanly(
    shared: tuple[str, AwsClients], name: str, body: bytes, wrap: str, edits: Any, typed: bool
) -> None:
    """Any bytes (noise, or a valid export with a few bytes inserted), as a plain, gzip or zip object,
    possibly damaged after compression."""
    TALLY["export bytes (hypothesis)"] += 1
    schema: Any = TYPED if typed else ["id", "customer", "amount"]
    lake, _ = fresh(shared, schema)
    served = lake.read_catalog()
    if wrap != "raw":
        body = CONTAINERS[name](body)
    if wrap == "wrapped-then-mutated":
        body = mutate(body, edits)
    key = f"exports/{DAY}/{name}"
    lake.clients.s3.delete_object(Bucket=SRC, Key=KEY)
    lake.put(key, body)
    before = snapshot(lake)

    out = handle_event(event(schema=schema), lake.clients, tuning=TUNE)

    if out["statusCode"] == 200:
        got = lake.read_catalog()
        assert len(got) == out["result"]["rows"] > 0
        assert day_versions(lake, DAY) == {f"load-{out['result']['load_id']}"}
        assert lake.read_day_folder() == got
        assert lake.multipart_uploads() == []
    else:
        assert out["stage"] == "read", out
        assert f"s3://{SRC}/{key}" in out["body"]
        assert snapshot(lake) == before
        assert lake.read_catalog() == served
