"""The packaged function (zip with the three-table file bundled, unpacked, layer-only Python,
subprocess) serving several tables: by name, by schedule (catch-up), by S3 key routing; the tables
file from the zip or from ``S3PA_TABLES``; a bad tables file refused."""

from __future__ import annotations

from pathlib import Path

from ..helpers import DAY, DST, Lake, csv_rows, event, gz
from ..three_tables import NAMES, source_keys, stage_day
from .packaged import PackagedLambda
from .tables_support import (
    FOUR_TABLES_YAML,
    as_text,
    day_rows,
    days_of,
    glue_tables,
    object_created,
    scheduled_for,
)
from .test_packaged import s3_record
from .test_pipes import pipes_params, tail_messages

DAYS = ("20240115", "20240116", "20240117")
TICK = "2024-01-18T06:00:00Z"  # the run for 20240117


def test_loads_each_table_by_name_from_the_bundled_tables_file(
    packaged_tables: PackagedLambda, lake: Lake, tables_code_dir: Path
) -> None:
    expected = stage_day(lake, DAY)
    stage_day(lake, "20240116")
    lake.put(f"exports/{DAY}/sales_1.csv", csv_rows(4))
    events = [
        *({"table": name, "data_ref": DAY} for name in NAMES),
        # fields beside the name override the file's: here the substring picks the partial decoy
        {"table": "sales", "data_ref": "20240116", "substr": "sales_20240116_partial"},
        {"table": "returns", "data_ref": DAY},
        # a full contract event is served as is, next to the tables file
        event(table="direct_sales", pathoutput="tables/direct_sales"),
        # Dagster (run_on: lambda) may send the name only: the day is the Pipes partition key
        {"table": "stock", **pipes_params("2024-01-16")},
    ]
    run = packaged_tables.run(events)
    payloads = [inv.payload for inv in run.invocations]
    assert [inv.function_error for inv in run.invocations] == [None] * len(events), run.output[-3000:]
    for name, payload in zip(NAMES, payloads, strict=False):
        assert payload["statusCode"] == 200, payload
        assert payload["result"]["table"] == f"analytics.{name}"
        assert payload["result"]["source_key"] == source_keys(DAY)[name]
        assert day_rows(lake, name, DAY) == as_text(expected[name]), name
    assert payloads[3]["statusCode"] == 200, payloads[3]
    assert payloads[3]["result"]["source_key"] == "sales/20240116/sales_20240116_partial.csv.gz"
    assert len(day_rows(lake, "sales", "20240116")) == 1
    bundled = (tables_code_dir / "s3pa_tables.yaml").resolve()
    assert payloads[4] == {
        "statusCode": 500,
        "body": f"Error: validate: table 'returns' is not declared in {bundled} (tables: sales, customers, stock)",
        "stage": "validate",
    }
    assert payloads[5]["statusCode"] == 200, payloads[5]
    assert payloads[5]["result"]["rows"] == 4
    piped = run.invocations[6]
    assert piped.payload["statusCode"] == 200, piped.payload
    assert piped.payload["result"]["data_ref"] == "20240116"
    assert piped.payload["result"]["table"] == "analytics.stock"
    (report,) = [m for m in tail_messages(piped) if m["method"] == "report_asset_materialization"]
    assert report["params"]["data_version"] == piped.payload["result"]["etag"]
    assert len(day_rows(lake, "stock", "20240116")) == 6
    assert glue_tables(lake) == ["customers", "direct_sales", "sales", "stock"]
    assert all(m.startswith("dagster_pipes") for m in run.dagster_loaded_after)


def test_scheduled_event_catches_up_the_named_table(packaged_tables: PackagedLambda, lake: Lake) -> None:
    """sales has catchup_days 3: the run for 20240117 checks 15, 16 and 17."""
    expected = {day: stage_day(lake, day) for day in DAYS}
    already = {"table": "sales", "data_ref": "20240116"}
    tick = scheduled_for("sales", TICK)
    run = packaged_tables.run([already, tick, tick, scheduled_for(None, TICK)])
    loaded, first, second, unnamed = run.invocations
    assert loaded.payload["statusCode"] == 200, loaded.payload
    # The missed days load, the current one is skipped.
    assert first.function_error is None, first.payload
    assert first.payload["statusCode"] == 200, first.payload
    assert first.payload["table"] == "sales"
    assert first.payload["days"] == {"20240115": "loaded", "20240116": "current", "20240117": "loaded"}
    assert days_of(first.payload) == ["20240115", "20240117"]
    for day in DAYS:
        assert day_rows(lake, "sales", day) == as_text(expected[day]["sales"]), day
    # The next run finds every day current: no load.
    assert second.payload["days"] == dict.fromkeys(DAYS, "current")
    assert second.payload["results"] == []
    # Only the named table was touched.
    assert glue_tables(lake) == ["sales"]
    # Several tables and no name: an error (raised: the invocation is asynchronous).
    assert unnamed.function_error == "Unhandled"
    assert unnamed.payload["errorType"] == "LoadFailedError"
    assert "scheduled event without a 'table', but " in unnamed.payload["errorMessage"]
    assert "declares 3 tables (sales, customers, stock)" in unnamed.payload["errorMessage"]

    # A re-export of an old day inside the window is picked up by the next run.
    lake.put("sales/20240115/sales_20240115_v2.csv.gz", gz(b"1,A,1.0\n"))
    again = packaged_tables.invoke_one(tick)
    assert again.payload["days"] == {"20240115": "loaded", "20240116": "current", "20240117": "current"}
    assert days_of(again.payload) == ["20240115"]
    assert day_rows(lake, "sales", "20240115") == [{"id": "1", "customer": "A", "amount": "1.0"}]


def test_s3_events_route_each_key_to_every_matching_table(
    packaged_tables: PackagedLambda, lake: Lake
) -> None:
    """The tables file from S3PA_TABLES (an s3:// URI) wins over the bundled one: its fourth table,
    sales_copy, reads the same exports as sales."""
    lake.put("config/tables.yaml", FOUR_TABLES_YAML.encode(), bucket=DST)
    env = {"S3PA_TABLES": f"s3://{DST}/config/tables.yaml"}
    expected = stage_day(lake, DAY)
    keys = source_keys(DAY)
    several = {"Records": [s3_record(keys["sales"])]}
    one = object_created(keys["customers"])
    none = {"Records": [s3_record(f"misc/{DAY}/readme.txt")]}
    twice = {"Records": [s3_record(keys["stock"]), s3_record(keys["stock"])]}
    run = packaged_tables.run([several, one, none, twice], env=env)
    assert [inv.function_error for inv in run.invocations] == [None] * 4, run.output[-3000:]
    both, customers, ignored, stock = (inv.payload for inv in run.invocations)

    assert both["statusCode"] == 200, both
    assert [r["table"] for r in both["results"]] == ["analytics.sales", "analytics.sales_copy"]
    assert days_of(both) == [DAY, DAY]
    assert day_rows(lake, "sales", DAY) == day_rows(lake, "sales_copy", DAY) == as_text(expected["sales"])

    assert customers["statusCode"] == 200, customers
    assert customers["result"]["table"] == "analytics.customers"
    assert day_rows(lake, "customers", DAY) == as_text(expected["customers"])

    assert ignored == {
        "statusCode": 200,
        "body": f"Ignored: s3://src-bucket/misc/{DAY}/readme.txt: matches no table's source "
        "(tables: sales, customers, stock, sales_copy)",
        "ignored": [
            f"s3://src-bucket/misc/{DAY}/readme.txt: matches no table's source "
            "(tables: sales, customers, stock, sales_copy)"
        ],
    }

    assert stock["statusCode"] == 200, stock
    assert "results" not in stock  # the same (table, day) twice in one notification: one load
    assert stock["result"]["table"] == "analytics.stock"
    assert day_rows(lake, "stock", DAY) == as_text(expected["stock"])
    assert glue_tables(lake) == ["customers", "sales", "sales_copy", "stock"]


def test_a_bad_tables_file_is_refused_naming_table_and_field(
    packaged_tables: PackagedLambda, lake: Lake
) -> None:
    bad = FOUR_TABLES_YAML.replace("{name: qty, type: int}", "{name: qty, type: integer32}")
    assert bad != FOUR_TABLES_YAML
    lake.put("config/bad.yaml", bad.encode(), bucket=DST)
    stage_day(lake, DAY)
    env = {"S3PA_TABLES": f"s3://{DST}/config/bad.yaml"}
    events = [
        {"table": "sales", "data_ref": DAY},
        scheduled_for("sales", "2024-01-16T06:00:00Z"),
        {"Records": [s3_record(source_keys(DAY)["sales"])]},
    ]
    run = packaged_tables.run(events, env=env)
    message = (
        "Error: validate: tables file s3://dst-bucket/config/bad.yaml: tables[stock].schema[1].type: "
        "'integer32' is not a supported type"
    )
    direct, sched, s3 = run.invocations
    assert direct.function_error is None
    assert direct.payload["statusCode"] == 500
    assert direct.payload["body"].startswith(message), direct.payload
    for inv in (sched, s3):
        assert inv.function_error == "Unhandled"
        assert inv.payload["errorType"] == "LoadFailedError"
        assert inv.payload["errorMessage"].startswith(message), inv.payload
    # Nothing written: no table data, no lease, no catalog entry.
    assert lake.keys() == ["config/bad.yaml"]
    assert glue_tables(lake) == []
