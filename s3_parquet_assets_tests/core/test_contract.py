"""The one contract: the field table drives event validation, table entries and environment settings."""

from __future__ import annotations

from dataclasses import fields

import pytest

from s3_parquet_assets.core import LoadError, LoadEvent, TableSpec, contract, parse_event

from ..helpers import event


def test_load_event_has_exactly_the_contracts_event_fields() -> None:
    own = {f.name for f in fields(LoadEvent)} - {"raw"}
    assert own == {f.name for f in contract.event_fields()}


def test_table_spec_hints_are_exactly_the_contracts_table_only_fields() -> None:
    own = {f.name for f in fields(TableSpec)} - {"name", "settings"}
    assert own == {f.name for f in contract.FIELDS if not f.event and f.name != "name"}


def test_to_dict_round_trips_through_parse_event() -> None:
    ev = parse_event(event(schema=[{"name": "id", "type": "bigint"}, {"name": "x", "type": "string"}]))
    again = parse_event(ev.to_dict())
    assert again == ev
    assert set(ev.to_dict()) <= {f.name for f in contract.event_fields()}


def test_env_reads_every_kind_of_field_from_text() -> None:
    env = {
        "S3PA_EVENT_DEFAULTS": '{"bucket_src": "a-bucket", "table": "t1"}',
        "S3PA_TABLE": "t2",
        "S3PA_SCHEMA": "id, name",
        "S3PA_HEADER": "yes",
        "S3PA_CATCHUP_DAYS": "3",
        "S3PA_TAGS": '{"domain": "sales"}',
        "S3PA_OWNERS": "a@x.io,team:data",
        "S3PA_PREFIX": "",
        "S3PA_MINE": "1",
        "OTHER": "x",
    }
    got = contract.settings_from_env(env, reserved=frozenset({"S3PA_MINE"}))
    assert got == {
        "bucket_src": "a-bucket",
        "table": "t2",
        "schema": ["id", "name"],
        "header": True,
        "catchup_days": 3,
        "tags": {"domain": "sales"},
        "owners": ["a@x.io", "team:data"],
    }


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"S3PA_TABEL": "x"}, "setting S3PA_TABEL: is not a known setting; known: "),
        ({"S3PA_DATA_REF": "20240101"}, "setting S3PA_DATA_REF: is not a known setting"),
        ({"S3PA_NAME": "x"}, "setting S3PA_NAME: is not a known setting"),
        ({"S3PA_CATCHUP_DAYS": "seven"}, "setting S3PA_CATCHUP_DAYS: 'seven' must be a whole number"),
        ({"S3PA_TAGS": "[1]"}, "setting S3PA_TAGS: must be a JSON object"),
        (
            {"S3PA_EVENT_DEFAULTS": '{"colour": 1}'},
            "setting S3PA_EVENT_DEFAULTS: unknown field(s) ['colour']",
        ),
    ],
)
def test_bad_env_settings_are_named(env: dict[str, str], message: str) -> None:
    with pytest.raises(LoadError, match=r"^validate: ") as info:
        contract.settings_from_env(env)
    assert message in str(info.value)


def test_field_error_keeps_path_and_rule_apart() -> None:
    with pytest.raises(contract.FieldError) as info:
        parse_event(event(schema=[{"name": "id", "type": "bigint"}, {"name": "x", "type": "money"}]))
    assert info.value.path == "schema[1].type"
    assert info.value.rule.startswith("'money' is not a supported type")
    assert str(info.value).startswith("validate: field 'schema[1].type': 'money'")
