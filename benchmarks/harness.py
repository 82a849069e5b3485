"""One benchmark case: a moto server, one staged export, every loader run on it in turn.

The Python form of ``../shared/bench/bench.sh`` (same generator, same staged objects, same event,
the loader under ``/usr/bin/time -v``, rows counted back from the partition), restructured so that
an export is generated and staged once per (MB, fmt) and each loader runs on it after the
destination is emptied (every object of ``dst-bucket`` and every table of the Glue database gone),
and so that a loader can be pointed at the S3 link model (``s3link.py``) instead of the emulator.
Staging, the reset and the row count always talk to the emulator directly.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import boto3
from botocore.config import Config

HERE = Path(__file__).resolve().parent
SCHEMA = ["id", "event_ts", "customer", "amount", "category", "quantity", "flag", "description"]
EVENT = {
    "bucket_src": "src-bucket",
    "bucket_dstn": "dst-bucket",
    "prefix": "exports/20240115/",
    "substr": "sales",
    "schema": SCHEMA,
    "pathoutput": "tables/sales",
    "table": "sales",
    "database": "analytics",
    "partitions_cols": ["data_ref"],
    "data_ref": "20240115",
}
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}
TIME = {
    "wall": re.compile(r"Elapsed \(wall clock\) time.*: ([\d:.]+)"),
    "rss": re.compile(r"Maximum resident set size \(kbytes\): (\d+)"),
    "user": re.compile(r"User time \(seconds\): ([\d.]+)"),
    "system": re.compile(r"System time \(seconds\): ([\d.]+)"),
}


@dataclass(frozen=True)
class LinkModel:
    """The S3 link's parameters: first-byte latency (ms) and MB/s per connection (0 = no cap)."""

    latency_ms: float
    mbps: float

    @property
    def mode(self) -> str:
        cap = f"{self.mbps:g} MB/s" if self.mbps else "uncapped"
        return f"s3link {self.latency_ms:g} ms {cap}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def seconds(wall: str) -> float:
    total = 0.0
    for part in wall.split(":"):
        total = total * 60 + float(part)
    return total


class Case:
    """``with Case(shared, mb, fmt, link) as case: case.run(name, cmd)`` for each loader."""

    def __init__(self, shared: Path, mb: float, fmt: str, link: LinkModel | None, timeout: float) -> None:
        self.shared = shared
        self.mb = mb
        self.fmt = fmt
        self.link = link
        self.timeout = timeout
        self.work = Path(tempfile.mkdtemp(prefix="s3pa-bench-"))
        self.procs: list[subprocess.Popen[bytes]] = []
        self.endpoint = ""
        self.loader_endpoint = ""
        self.link_url = ""

    def __enter__(self) -> Case:
        try:
            self.endpoint = self.start_moto()
            key = self.stage()
            self.link_url = self.start_link(key) if self.link else ""
            self.loader_endpoint = self.link_url or self.endpoint
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        for proc in reversed(self.procs):
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        subprocess.run(["rm", "-rf", str(self.work)], check=False)

    # ---- setting up --------------------------------------------------------------------------
    def start_moto(self) -> str:
        port = free_port()
        moto = Path(sys.executable).parent / "moto_server"
        log = (self.work / "moto.log").open("wb")
        self.procs.append(
            subprocess.Popen(
                [str(moto), "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=subprocess.STDOUT
            )
        )
        url = f"http://127.0.0.1:{port}"
        wait_up(f"{url}/moto-api/", self.procs[-1])
        return url

    def client(self, service: str) -> object:
        return boto3.client(service, endpoint_url=self.endpoint, region_name="us-east-1", **keys())

    def stage(self) -> str:
        ext = {"csv": "csv", "gz": "csv.gz", "zip": "zip"}[self.fmt]
        src = self.work / f"src.{ext}"
        flag = {"csv": [], "gz": ["--gz"], "zip": ["--zip"]}[self.fmt]
        subprocess.run(
            [sys.executable, str(self.shared / "gen_csv.py"), str(src), "--mb", f"{self.mb:g}", *flag],
            check=True,
            capture_output=True,
        )
        s3, glue = self.client("s3"), self.client("glue")
        for bucket in ("src-bucket", "dst-bucket"):
            s3.create_bucket(Bucket=bucket)  # type: ignore[attr-defined]
        glue.create_database(DatabaseInput={"Name": "analytics"})  # type: ignore[attr-defined]
        s3.put_object(Bucket="src-bucket", Key=f"exports/20240115/sales_old.{ext}", Body=b"1,x\n")  # type: ignore[attr-defined]
        key = f"exports/20240115/sales_latest.{ext}"
        s3.upload_file(str(src), "src-bucket", key)  # type: ignore[attr-defined]
        src.unlink()
        return key

    def start_link(self, key: str) -> str:
        assert self.link is not None
        proc = subprocess.Popen(
            [
                sys.executable,
                str(HERE / "s3link.py"),
                "--upstream",
                self.endpoint,
                "--latency-ms",
                f"{self.link.latency_ms:g}",
                "--mbps",
                f"{self.link.mbps:g}",
            ],
            stdout=subprocess.PIPE,
        )
        self.procs.append(proc)
        assert proc.stdout is not None
        url = proc.stdout.readline().decode().strip()
        if not url.startswith("http://"):
            raise RuntimeError(f"s3link did not start (printed {url!r})")
        # the link copies the source once, before any loader runs: no loader pays for that copy
        patient = Config(read_timeout=900, retries={"max_attempts": 1})  # a 4 GiB copy takes a while
        s3 = boto3.client("s3", endpoint_url=url, region_name="us-east-1", config=patient, **keys())
        s3.head_object(Bucket="src-bucket", Key=key)
        return url

    # ---- one loader ------------------------------------------------------------------------------
    def run(self, cmd: list[str]) -> dict[str, object]:
        """Run one loader on the staged export (destination emptied first); its wall time, peak
        RSS, CPU-seconds (user + system of the loader process and its children) and rows landed."""
        self.reset()
        self.link_stats()  # the staging's and the reset's requests are not the loader's
        env = {**os.environ, **CREDENTIALS, "AWS_ENDPOINT_URL": self.loader_endpoint}
        env.pop("AWS_PROFILE", None)
        timing = self.work / "time.txt"
        servers_before = [cpu_seconds(p.pid) for p in self.procs]
        try:
            proc = subprocess.run(
                ["/usr/bin/time", "-v", "-o", str(timing), *cmd, json.dumps(EVENT)],
                capture_output=True,
                text=True,
                env=env,
                timeout=self.timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return {"ok": False, "error": f"timed out after {self.timeout:g} s"}
        if proc.returncode != 0:
            lines = [x.strip() for x in (proc.stderr + proc.stdout).splitlines() if x.strip()]
            named = [x for x in lines if "Error" in x or "error" in x]
            return {
                "ok": False,
                "error": ((named or lines or [f"exit status {proc.returncode}"])[-1])[:400],
            }
        t = timing.read_text()
        got = {k: rx.search(t) for k, rx in TIME.items()}
        if not all(got.values()):
            return {"ok": False, "error": f"no /usr/bin/time figures: {t[-300:]}"}
        link = self.link_stats()
        servers = [round(cpu_seconds(p.pid) - b, 2) for p, b in zip(self.procs, servers_before, strict=True)]
        return {
            "moto_cpu_s": servers[0],
            **({"link_cpu_s": servers[1]} if len(servers) > 1 else {}),
            **({"link": link} if link else {}),
            "ok": True,
            "wall": seconds(got["wall"][1]),  # type: ignore[index]
            "rss_mb": int(got["rss"][1]) // 1024,  # type: ignore[index]
            "cpu_s": round(float(got["user"][1]) + float(got["system"][1]), 2),  # type: ignore[index]
            "rows": self.rows_out(),
        }

    def link_stats(self) -> dict[str, int]:
        """What the loader asked of the link since the last call (nothing when direct)."""
        if not self.link_url:
            return {}
        with urllib.request.urlopen(f"{self.link_url}/__s3link__/stats", timeout=10) as r:
            stats: dict[str, int] = json.loads(r.read())
        return stats

    def reset(self) -> None:
        s3, glue = self.client("s3"), self.client("glue")
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket="dst-bucket"):  # type: ignore[attr-defined]
            keys_ = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys_:
                s3.delete_objects(Bucket="dst-bucket", Delete={"Objects": keys_})  # type: ignore[attr-defined]
        for page in glue.get_paginator("get_tables").paginate(DatabaseName="analytics"):  # type: ignore[attr-defined]
            for table in page["TableList"]:
                glue.delete_table(DatabaseName="analytics", Name=table["Name"])  # type: ignore[attr-defined]

    def rows_out(self) -> int:
        import pyarrow.dataset as ds
        import pyarrow.fs as pafs

        fs = pafs.S3FileSystem(
            endpoint_override=self.endpoint.removeprefix("http://"),
            scheme="http",
            region="us-east-1",
            access_key="testing",
            secret_key="testing",
        )
        part = "dst-bucket/tables/sales/data_ref=20240115"
        return int(ds.dataset(part, filesystem=fs, format="parquet").count_rows())


def cpu_seconds(pid: int) -> float:
    """User + system CPU-seconds a running process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def keys() -> dict[str, str]:
    return {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


def wait_up(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError("moto server exited at start") from None
            time.sleep(0.2)
    raise RuntimeError("moto server did not start")
