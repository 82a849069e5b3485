"""The engine: plain Python, no Dagster. Both the Dagster assets and the Lambda handler call this.

Public API::

    from s3_parquet_assets.core import parse_event, make_clients, run_load, handle_event
"""

from . import contract
from .aws import AwsClients, make_clients, retry_config
from .catchup import DayCheck, catch_up, check_day, window
from .deadline import DeadlineReached, deadline_from_remaining_ms
from .errors import LoadError, Stage
from .event import Column, LoadEvent, parse_event, yesterday
from .lease import LeaseHeld
from .pipeline import LoadResult, error_response, handle_event, loaded_etag, new_load_id, run_load
from .source import NoExportError, SourceObject, find_latest, newest_export
from .tables import Tables, TableSpec, parse_tables, read_tables, table_from_settings
from .tuning import Tuning

__all__ = [
    "AwsClients",
    "Column",
    "DayCheck",
    "DeadlineReached",
    "LeaseHeld",
    "LoadError",
    "LoadEvent",
    "LoadResult",
    "NoExportError",
    "SourceObject",
    "Stage",
    "TableSpec",
    "Tables",
    "Tuning",
    "catch_up",
    "check_day",
    "contract",
    "deadline_from_remaining_ms",
    "error_response",
    "find_latest",
    "handle_event",
    "loaded_etag",
    "make_clients",
    "new_load_id",
    "newest_export",
    "parse_event",
    "parse_tables",
    "read_tables",
    "retry_config",
    "run_load",
    "table_from_settings",
    "window",
    "yesterday",
]
