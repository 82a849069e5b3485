"""The Dagster layer: thin definitions over :mod:`s3_parquet_assets.core`.

``definitions.py`` only assembles what the other modules declare; ``dagster dev`` and
``dagster definitions validate`` find it through ``[tool.dagster]`` in pyproject.toml / workspace.yaml.
"""
