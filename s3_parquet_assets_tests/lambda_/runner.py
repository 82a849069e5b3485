"""A stand-in for the AWS Lambda Python runtime, run in a subprocess by the tests.

    <layer venv python> -I -u runner.py CODE_DIR REQUEST.json RESPONSE.json

``sys.path`` is the unpacked deployment package (CODE_DIR) plus the layer venv (and the standard
library): nothing from the project's dev environment. The handler module is imported once, then
called for every event of REQUEST.json (``{"events": [...]}``) like a warm container would be. Each
invocation's log goes to stdout/stderr between ``START RequestId`` and ``REPORT RequestId`` lines, as
in CloudWatch; RESPONSE.json receives the payloads, whether each raised (``FunctionError``), and what
the process could import.
"""

import importlib
import importlib.util
import json
import logging
import resource
import sys
import time
import traceback
import uuid


class Context:
    def __init__(self, request_id: str, timeout_ms: int = 900_000) -> None:
        self.aws_request_id = request_id
        self._ends = time.monotonic() + timeout_ms / 1000
        self.function_name = "s3-parquet-assets-load"
        self.memory_limit_in_mb = 1024
        self.invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:s3-parquet-assets-load"

    def get_remaining_time_in_millis(self) -> int:
        return max(int((self._ends - time.monotonic()) * 1000), 0)


def main() -> int:
    code_dir, request_path, response_path = sys.argv[1:4]
    sys.path.insert(0, code_dir)
    # Like the runtime: one root handler writing "[LEVEL] time request-id message" lines, root at WARNING.
    logging.basicConfig(
        stream=sys.stderr, level=logging.WARNING, format="[%(levelname)s]\t%(asctime)s\t%(message)s"
    )
    with open(request_path, encoding="utf-8") as f:
        request = json.load(f)
    started = time.monotonic()
    module = importlib.import_module(request.get("handler_module", "s3_parquet_assets.lambda_handler"))
    init_ms = (time.monotonic() - started) * 1000
    handler = module.handler
    out = {
        "sys_path": list(sys.path),
        "prefix": sys.prefix,
        "base_prefix": sys.base_prefix,
        "dagster_visible": importlib.util.find_spec("dagster") is not None,
        "dagster_loaded": sorted(m for m in sys.modules if m.split(".")[0].startswith("dagster")),
        "handler_file": module.__file__,
        "invocations": [],
    }
    timeouts = request.get("timeouts_ms") or [900_000] * len(request["events"])
    for event, timeout_ms in zip(request["events"], timeouts, strict=True):
        request_id = str(uuid.uuid4())
        print(f"START RequestId: {request_id} Version: $LATEST", flush=True)
        t0 = time.monotonic()
        try:
            payload = handler(event, Context(request_id, timeout_ms))
            json.dumps(payload)  # the runtime serializes the return value
            error = None
        except Exception as exc:
            payload = {
                "errorMessage": str(exc),
                "errorType": type(exc).__name__,
                "requestId": request_id,
                "stackTrace": traceback.format_tb(exc.__traceback__),
            }
            error = "Unhandled"
            sys.stderr.write(f"[ERROR] {type(exc).__name__}: {exc}\n")
        ms = (time.monotonic() - t0) * 1000
        rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
        sys.stderr.flush()
        print(f"END RequestId: {request_id}", flush=True)
        print(
            f"REPORT RequestId: {request_id}\tDuration: {ms:.2f} ms\tBilled Duration: {int(ms) + 1} ms\t"
            f"Memory Size: 1024 MB\tMax Memory Used: {rss_mb} MB\tInit Duration: {init_ms:.2f} ms",
            flush=True,
        )
        out["invocations"].append(
            {"request_id": request_id, "payload": payload, "function_error": error, "max_rss_mb": rss_mb}
        )
    out["dagster_loaded_after"] = sorted(m for m in sys.modules if m.split(".")[0].startswith("dagster"))
    with open(response_path, "w", encoding="utf-8") as f:
        json.dump(out, f, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
