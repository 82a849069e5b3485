"""The AWS Lambda adapter, one job per module; the entry point is
``s3_parquet_assets.lambda_handler.handler``. Only ``dagster-pipes`` is used, never ``dagster``.

- :mod:`.settings`: the function's environment settings, read at every call;
- :mod:`.tables`: the tables served (tables file from ``S3PA_TABLES`` or bundled in the zip, else the
  environment's single table), read once per container;
- :mod:`.events`: the event kinds (direct: full or by table name; scheduled; s3) and what each asks;
- :mod:`.routing`: S3 keys to (table, day) loads;
- :mod:`.dispatch`: one invocation, its combined response, returned or raised;
- :mod:`.failures`: ``LoadFailedError`` and the ``S3PA_RAISE_ON_ERROR`` rule;
- :mod:`.pipes`: the Dagster Pipes session;
- :mod:`.clients`: the container's AWS clients;
- :mod:`.runtime`: the versions logged at cold start, and the minimum botocore the function needs.

Importing this package reads no environment variable and imports nothing.
"""
