"""Property (hypothesis): with ``header: true``, any order of the export's columns loads the same table.

Each example writes the same rows with the header's columns in a drawn order (any case, blanks around
the names, a ``source`` name with spaces), as a plain, gzip or zip object, loads it against the moto
server and reads the day back through the Glue partition: always the rows by name, never a value under
another column's name.
"""

from __future__ import annotations

import csv
import io
from typing import Any

import boto3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from s3_parquet_assets.core import AwsClients, handle_event, make_clients

from ..helpers import DAY, Lake, event, gz, zipped
from .support import TALLY, TUNE, day_versions, reset_moto

SCHEMA: list[dict[str, Any]] = [
    {"name": "id", "type": "bigint"},
    {"name": "customer", "type": "string"},
    {"name": "amount", "type": "double"},
    {"name": "phone", "type": "string", "source": "Contact Phone"},
]
HEADERS = {"id": "id", "customer": "customer", "amount": "amount", "phone": "Contact Phone"}
CONTAINERS = {"sales.csv": lambda b: b, "sales.csv.gz": gz, "sales.zip": lambda b: zipped({"sales.csv": b})}

EXAMPLES = settings(
    max_examples=30,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\ufeff\x00"), max_size=10)
rows = st.lists(
    st.fixed_dictionaries(
        {
            "id": st.integers(-(2**62), 2**62),
            "customer": text,
            "amount": st.floats(allow_nan=False, allow_infinity=False, width=32),
            "phone": text,
        }
    ),
    min_size=1,
    max_size=30,
)
spelling = st.sampled_from([str, str.upper, str.title, lambda s: f" {s}  "])


@pytest.fixture(scope="module")
def shared(moto_endpoint: str) -> tuple[str, AwsClients]:
    return moto_endpoint, make_clients(boto3.Session(region_name="us-east-1"))


def export(order: list[str], spell: list[Any], data: list[dict[str, Any]]) -> bytes:
    buf = io.StringIO()
    out = csv.writer(buf, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)
    out.writerow([fn(HEADERS[name]) for name, fn in zip(order, spell, strict=True)])
    out.writerows([[repr(r[name]) if name == "amount" else r[name] for name in order] for r in data])
    return buf.getvalue().encode()


@EXAMPLES
@given(
    order=st.permutations(list(HEADERS)),
    spell=st.lists(spelling, min_size=4, max_size=4),
    data=rows,
    name=st.sampled_from(sorted(CONTAINERS)),
)
def test_any_order_of_the_header_loads_the_same_table(
    shared: tuple[str, AwsClients], order: list[str], spell: list[Any], data: list[dict[str, Any]], name: str
) -> None:
    TALLY["header order (hypothesis)"] += 1
    endpoint, clients = shared
    reset_moto(endpoint)
    lake = Lake(clients)
    lake.setup()
    lake.put(f"exports/{DAY}/{name}", CONTAINERS[name](export(order, spell, data)))

    out = handle_event(event(schema=SCHEMA, header=True), clients, tuning=TUNE)

    assert out["statusCode"] == 200, out
    assert out["result"]["file_columns"] == [
        fn(HEADERS[n]).strip() for n, fn in zip(order, spell, strict=True)
    ]
    columns = [c["name"] for c in SCHEMA]
    got = [tuple(r.items()) for r in lake.read_catalog()]
    assert sorted(got) == sorted(tuple((c, r[c]) for c in columns) for r in data)
    assert len(day_versions(lake, DAY)) == 1
