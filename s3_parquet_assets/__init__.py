"""s3_parquet_assets: daily S3 CSV exports -> partitioned Parquet + Glue, as Dagster assets and a Lambda."""

__version__ = "0.1.0"
