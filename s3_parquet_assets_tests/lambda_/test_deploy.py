"""deploy/: the reproducible zip, and the SAM template (cfn-lint clean, least-privilege IAM)."""

from __future__ import annotations

import fnmatch
import subprocess
import sys
import zipfile
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
from cfnlint.decode import decode

from s3_parquet_assets.core import handle_event, make_clients

from ..helpers import DAY, Lake, csv_rows, event

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "deploy" / "template.yaml"

# ---------------------------------------------------------------------------------------------------
# The zip


def test_zip_holds_only_core_handler_and_dagster_pipes(lambda_zip: Path, build_zip: ModuleType) -> None:
    with zipfile.ZipFile(lambda_zip) as zf:
        infos = zf.infolist()
        names = [i.filename for i in infos]
        assert names == sorted(names)
        for name in names:
            assert name in (
                "s3_parquet_assets/__init__.py",
                "s3_parquet_assets/lambda_handler.py",
            ) or name.startswith(("s3_parquet_assets/core/", "dagster_pipes/")), name
            assert "__pycache__" not in name
            assert not name.endswith(".pyc")
        assert "s3_parquet_assets/core/pipeline.py" in names
        assert "dagster_pipes/__init__.py" in names
        assert not any(n.startswith(("s3_parquet_assets/defs/", "s3_parquet_assets/cli")) for n in names)
        for info in infos:
            assert info.date_time == (1980, 1, 1, 0, 0, 0)
            assert info.external_attr >> 16 == 0o100644
            source = zf.read(info)
            if info.filename.endswith(".py"):
                assert build_zip.forbidden_imports(source, info.filename) == [], info.filename
    assert lambda_zip.stat().st_size < 5 * 1024 * 1024
    assert lambda_zip.stat().st_size < 512 * 1024  # in practice: well under the limit


def test_zip_is_reproducible(lambda_zip: Path, tmp_path: Path) -> None:
    """The CLI (what `make lambda-zip` runs) twice, in fresh processes: the same bytes as the fixture."""
    outs = []
    for i in range(2):
        out = tmp_path / f"again-{i}.zip"
        proc = subprocess.run(
            [sys.executable, str(ROOT / "deploy" / "build_zip.py"), "--out", str(out)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        assert "sha256" in proc.stdout
        outs.append(out.read_bytes())
    assert outs[0] == outs[1] == lambda_zip.read_bytes()


def test_zip_size_limit_is_enforced(build_zip: ModuleType, tmp_path: Path) -> None:
    with pytest.raises(build_zip.BuildError, match="over the limit of 1000 bytes"):
        build_zip.build(tmp_path / "small.zip", max_bytes=1000)
    assert not (tmp_path / "small.zip").exists()
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "deploy" / "build_zip.py"),
            "--out",
            str(tmp_path / "x.zip"),
            "--max-bytes",
            "10",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 1
    assert "over the limit" in proc.stderr


@pytest.mark.parametrize(
    ("source", "found"),
    [
        ("import dagster", ["dagster"]),
        ("import os, dagster.core as dc", ["dagster.core"]),
        ("from dagster import asset", ["dagster"]),
        ("from dagster._core.pipes import x", ["dagster._core.pipes"]),
        ("import dagster_aws.pipes", ["dagster_aws.pipes"]),
        ("def f():\n    from dagster_shared import y", ["dagster_shared"]),
        ("import importlib\nimportlib.import_module('dagster')", ["dagster"]),
        ("__import__('dagster.core')", ["dagster.core"]),
        ("import dagster_pipes", []),
        ("from dagster_pipes import open_dagster_pipes", []),
        ("from .dagster import x", []),
        ("x = 'import dagster'", []),
    ],
)
def test_forbidden_import_scan(build_zip: ModuleType, source: str, found: list[str]) -> None:
    hits = build_zip.forbidden_imports(source.encode(), "m.py")
    assert [h.split(": ", 1)[1] for h in hits] == found


def test_build_fails_when_the_core_imports_dagster(build_zip: ModuleType, tmp_path: Path) -> None:
    root = tmp_path / "repo"
    (root / "s3_parquet_assets" / "core").mkdir(parents=True)
    (root / "s3_parquet_assets" / "__init__.py").write_text("")
    (root / "s3_parquet_assets" / "lambda_handler.py").write_text("def handler(e, c):\n    return {}\n")
    (root / "s3_parquet_assets" / "core" / "__init__.py").write_text("from dagster import asset\n")
    with pytest.raises(build_zip.BuildError, match=r"s3_parquet_assets/core/__init__\.py:1: dagster"):
        build_zip.build(tmp_path / "out.zip", root=root)


# ---------------------------------------------------------------------------------------------------
# The template

PARAMS = {
    "SourceBucket": "src-bucket",
    "SourcePrefix": "exports/{data_ref}/",
    "DestinationBucket": "dst-bucket",
    "TablePath": "tables/sales",
    "GlueDatabase": "analytics",
    "GlueTable": "sales",
    "SourceSubstr": "sales",
    "Schema": '["id", "customer", "amount"]',
}
PSEUDO = {"AWS::Partition": "aws", "AWS::Region": "us-east-1", "AWS::AccountId": "123456789012"}


def load_template() -> dict[str, Any]:
    template, matches = decode(str(TEMPLATE))
    assert not matches, matches
    assert template is not None
    return dict(template)


def parameters(template: dict[str, Any], **overrides: str) -> dict[str, Any]:
    values = {name: spec.get("Default") for name, spec in template["Parameters"].items()}
    values.update(PARAMS)
    values.update(overrides)
    return values


class Resolver:
    """Enough of CloudFormation's intrinsic functions to evaluate the template's policies."""

    NO_VALUE = object()

    def __init__(self, template: dict[str, Any], params: dict[str, Any]) -> None:
        self.template = template
        self.params = {**params, **PSEUDO}

    def condition(self, name: str) -> bool:
        return bool(self(self.template["Conditions"][name]))

    def __call__(self, node: Any) -> Any:
        if isinstance(node, list):
            return [v for v in (self(x) for x in node) if v is not self.NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            ((key, arg),) = node.items()
            if key == "Ref":
                if arg == "AWS::NoValue":
                    return self.NO_VALUE
                return self.params.get(arg, f"<{arg}>")
            if key == "Fn::GetAtt":
                target = arg if isinstance(arg, str) else ".".join(arg)
                return f"<{target}>"
            if key == "Fn::Sub":
                text, extra = (
                    (arg, {}) if isinstance(arg, str) else (arg[0], {k: self(v) for k, v in arg[1].items()})
                )
                values = {**self.params, **extra}
                out = text
                for name, value in sorted(values.items(), key=lambda kv: -len(kv[0])):
                    out = out.replace("${" + name + "}", str(value))
                return out
            if key == "Fn::Select":
                return self(arg[1])[int(self(arg[0]))]
            if key == "Fn::Split":
                return str(self(arg[1])).split(self(arg[0]))
            if key == "Fn::If":
                return self(arg[1] if self.condition(arg[0]) else arg[2])
            if key == "Fn::Equals":
                return self(arg[0]) == self(arg[1])
            if key == "Fn::Not":
                return not self(arg[0])
            if key == "Condition":
                return self.condition(arg)
        return {k: self(v) for k, v in node.items()}


def statements(template: dict[str, Any], params: dict[str, Any]) -> list[dict[str, Any]]:
    resolve = Resolver(template, params)
    role = resolve(template["Resources"]["LoadFunctionRole"]["Properties"])
    out = [s for p in role["Policies"] for s in p["PolicyDocument"]["Statement"]]
    extra = template["Resources"]["PipesMessagesPolicy"]
    if resolve.condition(extra["Condition"]):
        out += resolve(extra["Properties"])["PolicyDocument"]["Statement"]
    for s in out:
        s["Action"] = [s["Action"]] if isinstance(s["Action"], str) else s["Action"]
        s["Resource"] = [s["Resource"]] if isinstance(s["Resource"], str) else s["Resource"]
    return out


def test_cfn_lint_is_clean() -> None:
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "cfn-lint"), str(TEMPLATE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_function_settings() -> None:
    template = load_template()
    fn = template["Resources"]["LoadFunction"]["Properties"]
    assert fn["Runtime"] == "python3.12"
    assert fn["Architectures"] == [{"Ref": "Architecture"}]
    assert template["Parameters"]["Architecture"]["Default"] == "arm64"
    assert fn["Handler"] == "s3_parquet_assets.lambda_handler.handler"
    assert fn["CodeUri"] == "build/s3_parquet_assets_lambda.zip"
    assert fn["MemorySize"] == {"Ref": "MemorySize"}
    assert fn["Timeout"] == {"Ref": "Timeout"}
    assert fn["ReservedConcurrentExecutions"] == {"Ref": "ReservedConcurrency"}
    assert fn["DeadLetterQueue"]["Type"] == "SQS"
    assert fn["Events"]["Daily"]["Type"] == "Schedule"
    assert fn["LoggingConfig"]["LogFormat"] == "Text"
    resolve = Resolver(template, parameters(template))
    (layer,) = resolve(fn["Layers"])
    assert layer == "arn:aws:lambda:us-east-1:336392948345:layer:AWSSDKPandas-Python312-Arm64:26"
    x86 = Resolver(template, parameters(template, Architecture="x86_64"))(fn["Layers"])
    assert x86 == ["arn:aws:lambda:us-east-1:336392948345:layer:AWSSDKPandas-Python312:26"]
    mine = "arn:aws:lambda:us-east-1:111111111111:layer:pandas:3"
    assert Resolver(template, parameters(template, LayerArn=mine))(fn["Layers"]) == [mine]
    env = resolve(fn["Environment"]["Variables"])
    assert env["S3PA_PREFIX"] == "exports/{data_ref}/"
    assert env["S3PA_DATA_REF_PATTERN"] == r"(?<!\d)(?P<data_ref>\d{8})(?!\d)"
    from s3_parquet_assets import lambda_handler

    assert lambda_handler.settings_from_env(env)  # every variable is one the handler knows
    assert template["Resources"]["ObjectCreatedRule"]["Condition"] == "S3TriggerEnabled"
    assert template["Resources"]["ErrorsAlarm"]["Properties"]["MetricName"] == "Errors"


@pytest.mark.parametrize(
    ("prefix", "root"), [("exports/{data_ref}/", "exports/"), ("landing/daily/", "landing/daily/")]
)
def test_iam_names_only_the_configured_prefixes(prefix: str, root: str) -> None:
    template = load_template()
    stmts = statements(template, parameters(template, SourcePrefix=prefix))
    by_sid = {s["Sid"]: s for s in stmts}
    for s in stmts:
        assert s["Effect"] == "Allow"
        for action in s["Action"]:
            assert "*" not in action, action
        for arn in s["Resource"]:
            assert arn != "*" and not arn.endswith(":*:*"), arn
    s3 = {(a, r) for s in stmts for a in s["Action"] if a.startswith("s3:") for r in s["Resource"]}
    source_arns = {r for _, r in s3 if r.startswith("arn:aws:s3:::src-bucket")}
    dest_arns = {r for _, r in s3 if r.startswith("arn:aws:s3:::dst-bucket")}
    assert source_arns == {"arn:aws:s3:::src-bucket", f"arn:aws:s3:::src-bucket/{root}*"}
    assert dest_arns == {"arn:aws:s3:::dst-bucket", "arn:aws:s3:::dst-bucket/tables/sales/*"}
    assert {r for _, r in s3} == source_arns | dest_arns  # no other bucket (Pipes bucket off by default)
    # The source is only listed (under its prefix) and read.
    assert {a for a, r in s3 if r in source_arns} == {"s3:ListBucket", "s3:GetObject"}
    assert by_sid["ListSourcePrefix"]["Condition"] == {"StringLike": {"s3:prefix": [f"{root}*"]}}
    # Writes and deletes only under the table.
    for action in (
        "s3:PutObject",
        "s3:DeleteObject",
        "s3:AbortMultipartUpload",
        "s3:ListMultipartUploadParts",
    ):
        assert {r for a, r in s3 if a == action} == {"arn:aws:s3:::dst-bucket/tables/sales/*"}, action
    assert by_sid["ListDestinationTable"]["Condition"] == {"StringLike": {"s3:prefix": ["tables/sales/*"]}}
    assert by_sid["ListDestinationUploads"]["Condition"] == {
        "StringLikeIfExists": {"s3:prefix": ["tables/sales/*"]}
    }
    # Glue: the one database and table.
    glue = {r for s in stmts if any(a.startswith("glue:") for a in s["Action"]) for r in s["Resource"]}
    assert glue == {
        "arn:aws:glue:us-east-1:123456789012:catalog",
        "arn:aws:glue:us-east-1:123456789012:database/analytics",
        "arn:aws:glue:us-east-1:123456789012:table/analytics/sales",
    }


def test_pipes_bucket_is_granted_only_when_configured() -> None:
    template = load_template()
    stmts = statements(template, parameters(template, PipesBucket="pipes-bucket"))
    (pipes,) = [s for s in stmts if s["Sid"] == "PipesMessages"]
    assert pipes["Resource"] == ["arn:aws:s3:::pipes-bucket/dagster-pipes/*"]


# IAM action for each API operation a load makes (S3 data-plane names differ from the API's).
_S3_ACTION = {
    "ListObjectsV2": "s3:ListBucket",
    "GetObject": "s3:GetObject",
    "HeadObject": "s3:GetObject",
    "PutObject": "s3:PutObject",
    "CreateMultipartUpload": "s3:PutObject",
    "UploadPart": "s3:PutObject",
    "CompleteMultipartUpload": "s3:PutObject",
    "AbortMultipartUpload": "s3:AbortMultipartUpload",
    "ListParts": "s3:ListMultipartUploadParts",
    "ListMultipartUploads": "s3:ListBucketMultipartUploads",
    "DeleteObject": "s3:DeleteObject",
    "DeleteObjects": "s3:DeleteObject",
}


def _allowed(stmts: list[dict[str, Any]], action: str, arn: str, prefix: str | None) -> bool:
    for s in stmts:
        if action not in s["Action"] or not any(fnmatch.fnmatchcase(arn, r) for r in s["Resource"]):
            continue
        cond = s.get("Condition")
        if not cond:
            return True
        for op, keys in cond.items():
            patterns = keys["s3:prefix"]
            if prefix is None and op.endswith("IfExists"):
                return True
            if prefix is not None and any(fnmatch.fnmatchcase(prefix, p) for p in patterns):
                return True
    return False


def test_the_policy_allows_every_call_a_real_load_makes(lake: Lake) -> None:
    """Record the API calls of a load (and of a reload, which cleans up) and check each against the
    policy, the way IAM would: action, resource ARN and s3:prefix condition."""
    calls: list[tuple[str, str, dict[str, Any]]] = []

    def record(params: dict[str, Any], model: Any, **_: Any) -> None:
        calls.append((model.service_model.service_name, model.name, dict(params)))

    session = boto3.Session(region_name="us-east-1")
    session.events.register("provide-client-params.*.*", record)
    clients = make_clients(session)
    lake.put(f"exports/{DAY}/sales_1.csv", csv_rows(50))
    assert handle_event(event(), clients)["statusCode"] == 200
    lake.put(f"exports/{DAY}/sales_2.csv", csv_rows(60))
    assert handle_event(event(), clients)["statusCode"] == 200

    template = load_template()
    stmts = statements(template, parameters(template))
    seen = set()
    for service, op, params in calls:
        if service == "s3":
            action = _S3_ACTION[op]
            bucket = params["Bucket"]
            key = params.get("Key")
            if op == "DeleteObjects":
                keys = [o["Key"] for o in params["Delete"]["Objects"]]
            else:
                keys = [key] if key is not None else []
            arns = [f"arn:aws:s3:::{bucket}/{k}" for k in keys] or [f"arn:aws:s3:::{bucket}"]
            prefix = params.get("Prefix") if not keys else None
            for arn in arns:
                assert _allowed(stmts, action, arn, prefix), (op, arn, prefix)
        else:
            assert service == "glue", service
            action = f"glue:{op}"
            table = (
                params.get("TableName")
                or (params.get("TableInput") or {}).get("Name")
                or (params.get("Name") if "DatabaseName" in params else None)
            )
            arn = (
                f"arn:aws:glue:us-east-1:123456789012:table/{params['DatabaseName']}/{table}"
                if table
                else f"arn:aws:glue:us-east-1:123456789012:database/{params.get('Name') or params.get('DatabaseName')}"
            )
            assert _allowed(stmts, action, arn, None), (op, arn)
        seen.add(f"{service}:{op}")
    # The run exercised the interesting parts: the lease, the write, the catalog flip, the cleanup.
    assert {"s3:PutObject", "s3:DeleteObjects", "s3:ListMultipartUploads", "glue:UpdatePartition"} <= seen, (
        seen
    )
