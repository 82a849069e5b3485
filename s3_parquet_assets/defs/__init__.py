"""The Dagster layer: a component (``defs.yaml`` -> :mod:`.component`) over :mod:`s3_parquet_assets.core`.

This folder is the project's ``dg`` defs folder; its ``defs.yaml`` makes the whole folder one
component instance, so the modules here are library code, never autoloaded as definitions.
"""
