"""Check the benchmark's environment (.venv-bench) can run every peer with no internet: DuckDB loads
its httpfs extension from the registry package (as duckdb_stream.py does), polars, pandas,
awswrangler and pyarrow import, and moto_server is installed."""

from __future__ import annotations

import glob
import os
import shutil
import sys
from pathlib import Path


def load_httpfs() -> str:
    import duckdb
    import duckdb_extension_httpfs as h

    found = glob.glob(os.path.join(os.path.dirname(h.__file__), "extensions", "*", "httpfs.duckdb_extension"))
    if not found:
        raise SystemExit(f"duckdb-extension-httpfs {h.__file__}: no httpfs.duckdb_extension in it")
    con = duckdb.connect(
        config={"allow_unsigned_extensions": "true", "autoinstall_known_extensions": "false"}
    )
    con.execute(f"LOAD '{found[0]}'")
    loaded = con.execute("SELECT loaded FROM duckdb_extensions() WHERE extension_name = 'httpfs'").fetchone()
    if not loaded or not loaded[0]:
        raise SystemExit("DuckDB did not load httpfs from the package")
    return f"duckdb {duckdb.__version__} httpfs from {found[0]}"


def main() -> int:
    import awswrangler
    import pandas
    import polars
    import pyarrow

    print(load_httpfs())
    print(
        f"polars {polars.__version__}, pyarrow {pyarrow.__version__}, pandas {pandas.__version__}, "
        f"awswrangler {awswrangler.__version__}"
    )
    moto = Path(sys.executable).parent / "moto_server"
    if not moto.exists() and not shutil.which("moto_server"):
        raise SystemExit("moto_server is not installed in this environment")
    return 0


if __name__ == "__main__":
    sys.exit(main())
