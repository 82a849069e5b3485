"""deploy/: the reproducible zip, and the SAM stack deploy/stack.py renders from a tables file (one
schedule per table, the S3 trigger, least-privilege IAM replayed against real loads, cfn-lint clean)."""

from __future__ import annotations

import fnmatch
import importlib.util
import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
import yaml
from cfnlint.decode import decode

from s3_parquet_assets.core import catch_up, contract, handle_event, make_clients
from s3_parquet_assets.core.tables import Tables, TableSpec, parse_tables, read_tables

from ..helpers import DAY, DB, DST, SRC, Lake
from ..three_tables import TABLES_YAML, source_keys, stage_day, write_tables_file

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
            ) or name.startswith(
                ("s3_parquet_assets/core/", "s3_parquet_assets/lambda_/", "dagster_pipes/", "yaml/")
            ), name
            assert "__pycache__" not in name
            assert not name.endswith((".pyc", ".so"))
        assert "s3_parquet_assets/core/pipeline.py" in names
        assert "s3_parquet_assets/lambda_/dispatch.py" in names
        assert "yaml/__init__.py" in names
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
# The template: deploy/stack.py renders it from a tables file

EXAMPLE = ROOT / "deploy" / "tables.example.yaml"
STACK = ROOT / "deploy" / "stack.py"
PSEUDO = {"AWS::Partition": "aws", "AWS::Region": "us-east-1", "AWS::AccountId": "123456789012"}
CFN_LINT = Path(sys.executable).parent / "cfn-lint"


def load_stack() -> ModuleType:
    spec = importlib.util.spec_from_file_location("s3pa_stack", STACK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


stack = load_stack()


def run_stack(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """deploy/stack.py in a fresh process (what make stack runs)."""
    return subprocess.run(
        [sys.executable, str(STACK), *args], capture_output=True, text=True, check=False, env=env
    )


def tables_file(directory: Path, doc: dict[str, Any] | None = None) -> Path:
    """The three-table fixture file (or ``doc`` written as a tables file) in ``directory``."""
    if doc is None:
        return write_tables_file(directory)
    return write_tables_file(directory, yaml.safe_dump(doc, sort_keys=False))


def rendered(path: Path) -> dict[str, Any]:
    """The template deploy/stack.py writes for the tables file ``path`` (as CloudFormation reads it)."""
    out = path.parent / "template.yaml"
    assert stack.main(["--tables", str(path), "--out", str(out)]) == 0
    template, matches = decode(str(out))
    assert not matches, matches
    assert template is not None
    return dict(template)


def load_template() -> dict[str, Any]:
    """The committed template, as CloudFormation reads it."""
    template, matches = decode(str(TEMPLATE))
    assert not matches, matches
    assert template is not None
    return dict(template)


def parameters(template: dict[str, Any], **overrides: str) -> dict[str, Any]:
    values = {name: spec.get("Default") for name, spec in template["Parameters"].items()}
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
        return {k: v for k, v in ((k, self(v)) for k, v in node.items()) if v is not self.NO_VALUE}


def _role_policies(template: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Every policy resource attached to the function's role: (logical id, resource)."""
    role = {"Ref": "LoadFunctionRole"}
    out = []
    for rid, res in template["Resources"].items():
        props = res.get("Properties", {})
        if res["Type"] == "AWS::IAM::ManagedPolicy" and role in props.get("Roles", []):
            out.append((rid, res))
        if res["Type"] == "AWS::IAM::RolePolicy" and props.get("RoleName") == role:
            out.append((rid, res))
    return out


def statements(template: dict[str, Any], params: dict[str, Any]) -> list[dict[str, Any]]:
    """The statements the role holds, as IAM sees them with ``params``."""
    resolve = Resolver(template, params)
    role = resolve(template["Resources"]["LoadFunctionRole"]["Properties"])
    assert "ManagedPolicyArns" not in role
    out = [s for p in role["Policies"] for s in p["PolicyDocument"]["Statement"]]
    for _, res in _role_policies(template):
        if "Condition" not in res or resolve.condition(res["Condition"]):
            out += resolve(res["Properties"])["PolicyDocument"]["Statement"]
    for s in out:
        s["Action"] = [s["Action"]] if isinstance(s["Action"], str) else s["Action"]
        s["Resource"] = [s["Resource"]] if isinstance(s["Resource"], str) else s["Resource"]
    return out


def test_committed_template_is_the_one_rendered_from_the_example(tmp_path: Path) -> None:
    assert stack.render_file(EXAMPLE, TEMPLATE) == TEMPLATE.read_text(encoding="utf-8")
    proc = run_stack("--tables", str(EXAMPLE), "--check", "--out", str(TEMPLATE))
    assert proc.returncode == 0, proc.stderr
    stale = tmp_path / "template.yaml"
    stale.write_text(TEMPLATE.read_text(encoding="utf-8").replace("cron(0 6 ", "cron(0 5 "), encoding="utf-8")
    proc = run_stack("--tables", str(EXAMPLE), "--check", "--out", str(stale))
    assert proc.returncode == 1
    assert f"{stale} is not what deploy/stack.py renders from {EXAMPLE}" in proc.stderr


def test_rendering_is_deterministic(tmp_path: Path) -> None:
    """Fresh processes with different hash seeds write the same bytes; the CodeUri is relative to the
    template (the zip make lambda-zip writes)."""
    path = tables_file(tmp_path)
    texts = []
    for seed in ("1", "2"):
        out = tmp_path / "build" / f"t{seed}.yaml"
        proc = run_stack("--tables", str(path), "--out", str(out), env={**os.environ, "PYTHONHASHSEED": seed})
        assert proc.returncode == 0, proc.stderr
        assert f"{out}: 3 table(s) from {path}" in proc.stdout
        texts.append(out.read_text(encoding="utf-8"))
    assert texts[0] == texts[1]
    assert texts[0].startswith("# Generated by deploy/stack.py from tables.yaml")
    fn = yaml.safe_load(texts[0])["Resources"]["LoadFunction"]["Properties"]
    assert fn["CodeUri"] == os.path.relpath(ROOT / "deploy/build/s3_parquet_assets_lambda.zip", out.parent)
    assert yaml.safe_load(TEMPLATE.read_text())["Resources"]["LoadFunction"]["Properties"]["CodeUri"] == (
        "build/s3_parquet_assets_lambda.zip"
    )


def test_cfn_lint_is_clean(tmp_path: Path) -> None:
    """The committed template, and the one rendered from the three-table fixture file."""
    rendered(tables_file(tmp_path))
    for template in (TEMPLATE, tmp_path / "template.yaml"):
        proc = subprocess.run([str(CFN_LINT), str(template)], capture_output=True, text=True, check=False)
        assert proc.returncode == 0, proc.stdout + proc.stderr


# ---------------------------------------------------------------------------------------------------
# The example tables file


_DOC_LINE = re.compile(r"^#   (?P<name>[a-z_]+) \((?P<default>required|optional|default .+)\): \S")


def test_example_tables_file_documents_every_field() -> None:
    """One comment line per field a table may set, naming its default as the contract does: a new
    field in contract.FIELDS fails here until it is documented."""
    documented: dict[str, str] = {}
    for line in EXAMPLE.read_text(encoding="utf-8").splitlines():
        m = _DOC_LINE.match(line)
        if m:
            assert m["name"] not in documented, f"{m['name']} documented twice"
            documented[m["name"]] = m["default"]
    fields = {f.name: f for f in contract.table_fields()}
    assert sorted(documented) == sorted(fields)
    for name, text in documented.items():
        f = fields[name]
        if f.required or name == "name":
            assert text == "required", name
        elif f.default is None:
            assert text == "optional", name
        else:
            default = json.loads(text.removeprefix("default "))
            assert default == (list(f.default) if isinstance(f.default, tuple) else f.default), name


def test_example_tables_file_is_valid_with_three_shapes() -> None:
    tables = read_tables(EXAMPLE)
    assert tables.names == ("sales", "customers", "stock")
    sales, customers, stock = (t.probe for t in tables)
    assert (sales.header, customers.header, stock.header) == (False, True, False)
    assert (sales.delimiter, customers.delimiter, stock.delimiter) == (",", ";", ",")
    assert stock.encoding == "latin-1"
    assert stock.partitions_cols == ("data_ref", "region")
    assert "{data_ref}" in customers.prefix and not customers.prefix.endswith("/")
    assert [t.schedule for t in tables] == ["06:00", "06:30", "07:00"]
    doc = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    used = set(doc["defaults"]) | {k for t in doc["tables"] for k in t}
    commented = set(re.findall(r"^ +# ([a-z_]+): ", EXAMPLE.read_text(encoding="utf-8"), re.M))
    # Every field is shown in use (set, or as a commented-out line where a value would be wrong here).
    assert used | commented == {f.name for f in contract.table_fields()}


# ---------------------------------------------------------------------------------------------------
# Schedules and the S3 trigger


def _input(template: str, time: str) -> Any:
    """An InputTransformer's output: <time> replaced by the JSON value of $.time, as EventBridge does."""
    return json.loads(template.replace("<time>", json.dumps(time)))


def test_one_schedule_per_table_with_the_table_in_its_input(tmp_path: Path) -> None:
    path = tables_file(tmp_path)
    template = rendered(path)
    resources = template["Resources"]
    rules = {rid: r for rid, r in resources.items() if "ScheduleExpression" in r.get("Properties", {})}
    seen: dict[str, str] = {}
    for rid, rule in rules.items():
        assert rule["Type"] == "AWS::Events::Rule"
        props = rule["Properties"]
        (target,) = props["Targets"]
        assert target["Arn"] == {"Fn::GetAtt": ["LoadFunction", "Arn"]}
        transformer = target["InputTransformer"]
        assert transformer["InputPathsMap"] == {"time": "$.time"}
        event = _input(transformer["InputTemplate"], "2024-01-16T06:00:00Z")
        assert set(event) == {"source", "detail-type", "time", "table"}
        assert (event["source"], event["detail-type"], event["time"]) == (
            "aws.events",
            "Scheduled Event",
            "2024-01-16T06:00:00Z",
        )
        seen[event["table"]] = props["ScheduleExpression"]
        assert Resolver(template, parameters(template))(props["State"]) == "ENABLED"
        off = Resolver(template, parameters(template, EnableSchedules="false"))(props["State"])
        assert off == "DISABLED"
        (permission,) = [
            r for r in resources.values() if r["Properties"].get("SourceArn") == {"Fn::GetAtt": [rid, "Arn"]}
        ]
        assert permission["Type"] == "AWS::Lambda::Permission"
        assert permission["Properties"]["Principal"] == "events.amazonaws.com"
        assert "Condition" not in permission
    assert seen == {
        "sales": "cron(0 6 * * ? *)",
        "customers": "cron(30 6 * * ? *)",
        "stock": "cron(0 7 * * ? *)",
    }
    assert list(seen) == list(read_tables(path).names)  # declaration order


def test_schedule_cron_and_logical_ids() -> None:
    doc = yaml.safe_load(TABLES_YAML)
    doc["tables"][0]["schedule"] = "23:05"
    doc["tables"][0]["name"] = "daily-sales"
    doc["tables"][1]["name"] = "daily_sales"
    tables = parse_tables(doc)
    assert stack.cron(tables.get("daily-sales")) == "cron(5 23 * * ? *)"
    ids = stack.logical_ids(tables.names)
    assert ids["stock"] == "Stock"
    assert ids["daily-sales"] != ids["daily_sales"]
    assert all(re.fullmatch(r"DailySales[0-9a-f]{8}", ids[n]) for n in ("daily-sales", "daily_sales"))
    assert stack.logical_ids(["a_b", "c"]) == {"a_b": "AB", "c": "C"}


def _pattern_matches(pattern: dict[str, Any], bucket: str, key: str) -> bool:
    """EventBridge matching of the rule's pattern against an S3 "Object Created" event."""
    detail = pattern["detail"]
    if bucket not in detail["bucket"]["name"]:
        return False
    keys = detail.get("object", {}).get("key")
    return keys is None or any(key.startswith(k["prefix"]) for k in keys)


def _object_rules(template: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        r["Properties"]["EventPattern"]
        for r in template["Resources"].values()
        if "EventPattern" in r.get("Properties", {})
    ]


def test_s3_trigger_covers_every_source_prefix_and_nothing_else(tmp_path: Path) -> None:
    template = rendered(tables_file(tmp_path))
    resources = template["Resources"]
    rules = {rid: r for rid, r in resources.items() if "EventPattern" in r.get("Properties", {})}
    assert list(rules) == ["ObjectCreatedRule1"]  # one source bucket: one rule, so one invocation per object
    rule = rules["ObjectCreatedRule1"]
    assert rule["Condition"] == "S3TriggerEnabled"
    assert rule["Properties"]["EventPattern"] == {
        "source": ["aws.s3"],
        "detail-type": ["Object Created"],
        "detail": {
            "bucket": {"name": [SRC]},
            "object": {"key": [{"prefix": "crm/customers_"}, {"prefix": "sales/"}, {"prefix": "stock/"}]},
        },
    }
    permission = resources["ObjectCreatedRule1Permission"]
    assert permission["Condition"] == "S3TriggerEnabled"
    assert permission["Properties"]["SourceArn"] == {"Fn::GetAtt": ["ObjectCreatedRule1", "Arn"]}
    pattern = rule["Properties"]["EventPattern"]
    for key in source_keys(DAY).values():
        assert _pattern_matches(pattern, SRC, key), key
    for bucket, key in ((SRC, f"exports/{DAY}/sales_1.csv"), (SRC, "crm/other.zip"), (DST, "sales/x")):
        assert not _pattern_matches(pattern, bucket, key), (bucket, key)


def test_s3_trigger_one_rule_per_source_bucket(tmp_path: Path) -> None:
    """Tables in two buckets: a rule each; a prefix inside another's is covered by it; a table
    without a folder prefix makes its bucket's rule match every key."""
    doc = yaml.safe_load(TABLES_YAML)
    doc["tables"][1]["bucket_src"] = "other-src"
    doc["tables"][1]["prefix"] = ""
    doc["tables"][2]["prefix"] = "sales/{data_ref}/stock/"
    doc["tables"][2]["substr"] = "stock_"
    patterns = _object_rules(rendered(tables_file(tmp_path, doc)))
    assert [p["detail"] for p in patterns] == [
        {"bucket": {"name": ["other-src"]}},
        {"bucket": {"name": [SRC]}, "object": {"key": [{"prefix": "sales/"}]}},
    ]


# ---------------------------------------------------------------------------------------------------
# The function and its role


def test_function_settings() -> None:
    template = load_template()
    fn = template["Resources"]["LoadFunction"]["Properties"]
    assert fn["Runtime"] == "python3.12"
    assert fn["Architectures"] == [{"Ref": "Architecture"}]
    assert template["Parameters"]["Architecture"]["Default"] == "arm64"
    assert fn["Handler"] == "s3_parquet_assets.lambda_handler.handler"
    assert fn["MemorySize"] == {"Ref": "MemorySize"}
    assert fn["Timeout"] == {"Ref": "Timeout"}
    assert fn["ReservedConcurrentExecutions"] == {"Ref": "ReservedConcurrency"}
    assert fn["DeadLetterQueue"]["Type"] == "SQS"
    assert fn["LoggingConfig"]["LogFormat"] == "Text"
    assert "Events" not in fn  # the schedules are rules of their own, one per table
    # The function is created once its role may touch the tables.
    assert template["Resources"]["LoadFunction"]["DependsOn"] == [
        rid for rid, r in template["Resources"].items() if r["Type"] == "AWS::IAM::ManagedPolicy"
    ]
    # The layer is the operator's explicit choice (no default version: numbers differ per region).
    assert "Default" not in template["Parameters"]["LayerArn"]
    assert "PandasLayerVersion" not in template["Parameters"]
    resolve = Resolver(template, parameters(template))
    mine = "arn:aws:lambda:us-east-1:111111111111:layer:pandas:3"
    assert Resolver(template, parameters(template, LayerArn=mine))(fn["Layers"]) == [mine]
    # The tables file: bundled in the zip (no S3PA_TABLES) unless TablesUri names an S3 object.
    env = resolve(fn["Environment"]["Variables"])
    assert env == {
        "S3PA_DATA_REF_PATTERN": r"(?<!\d)(?P<data_ref>\d{8})(?!\d)",
        "S3PA_RAISE_ON_ERROR": "auto",
        "S3PA_LOG_LEVEL": "INFO",
    }
    uri = "s3://config-bucket/s3pa/tables.yaml"
    env = Resolver(template, parameters(template, TablesUri=uri))(fn["Environment"]["Variables"])
    assert env["S3PA_TABLES"] == uri
    # Every variable the template sets is one the handler knows (an unknown S3PA_* fails every event).
    from s3_parquet_assets.lambda_.settings import data_ref_pattern, raise_policy, settings_from_env

    assert settings_from_env(env) == {}
    assert raise_policy(env) == "auto"
    assert data_ref_pattern(env).pattern == env["S3PA_DATA_REF_PATTERN"]
    assert re.match(template["Parameters"]["TablesUri"]["AllowedPattern"], uri)
    assert re.match(template["Parameters"]["TablesUri"]["AllowedPattern"], "")
    assert not re.match(template["Parameters"]["TablesUri"]["AllowedPattern"], "s3://b/tables/*")
    assert template["Resources"]["ErrorsAlarm"]["Properties"]["MetricName"] == "Errors"
    assert template["Outputs"]["Tables"]["Value"] == "sales,customers,stock"


def test_iam_names_only_the_tables(tmp_path: Path) -> None:
    template = rendered(tables_file(tmp_path))
    stmts = statements(template, parameters(template))
    for s in stmts:
        assert s["Effect"] == "Allow"
        for action in s["Action"]:
            assert "*" not in action, action
        for arn in s["Resource"]:
            assert arn != "*" and not arn.endswith(":*:*"), arn
    s3 = {(a, r) for s in stmts for a in s["Action"] if a.startswith("s3:") for r in s["Resource"]}
    src, dst = f"arn:aws:s3:::{SRC}", f"arn:aws:s3:::{DST}"
    source_arns = {r for _, r in s3 if r.startswith(src)}
    dest_arns = {r for _, r in s3 if r.startswith(dst)}
    assert source_arns == {src, f"{src}/crm/customers_*", f"{src}/sales/*", f"{src}/stock/*"}
    tables = {f"{dst}/lake/customers/*", f"{dst}/lake/sales/*", f"{dst}/lake/stock/*"}
    assert dest_arns == {dst} | tables
    assert {r for _, r in s3} == source_arns | dest_arns  # no other bucket (no TablesUri, no Pipes bucket)
    # The sources are only listed (under their prefixes) and read.
    assert {a for a, r in s3 if r in source_arns} == {"s3:ListBucket", "s3:GetObject"}
    (list_source,) = [s for s in stmts if s["Resource"] == [src]]
    assert list_source["Condition"] == {
        "StringLike": {"s3:prefix": ["crm/customers_*", "sales/*", "stock/*"]}
    }
    # Writes and deletes only under the tables.
    for action in (
        "s3:PutObject",
        "s3:DeleteObject",
        "s3:AbortMultipartUpload",
        "s3:ListMultipartUploadParts",
    ):
        assert {r for a, r in s3 if a == action} == tables, action
    on_dst = {s["Action"][0]: s["Condition"] for s in stmts if s["Resource"] == [dst]}
    prefixes = ["lake/customers/*", "lake/sales/*", "lake/stock/*"]
    assert on_dst == {
        "s3:ListBucket": {"StringLike": {"s3:prefix": prefixes}},
        "s3:ListBucketMultipartUploads": {"StringLikeIfExists": {"s3:prefix": prefixes}},
    }
    # Glue: the catalog, the one database and the three tables.
    glue = {r for s in stmts if any(a.startswith("glue:") for a in s["Action"]) for r in s["Resource"]}
    arn = "arn:aws:glue:us-east-1:123456789012"
    assert glue == {f"{arn}:catalog", f"{arn}:database/{DB}"} | {
        f"{arn}:table/{DB}/{t}" for t in ("sales", "customers", "stock")
    }


def test_tables_file_object_is_readable_only_when_named(lake: Lake) -> None:
    """The function reads S3PA_TABLES at cold start: that call is allowed, its neighbours are not."""
    template = load_template()
    uri = f"s3://{SRC}/config/s3pa/tables.yaml"
    lake.put("config/s3pa/tables.yaml", EXAMPLE.read_bytes())
    calls: list[Call] = []

    def record(params: dict[str, Any], model: Any, **_: Any) -> None:
        calls.append((model.service_model.service_name, model.name, dict(params)))

    session = boto3.Session(region_name="us-east-1")
    session.events.register("provide-client-params.*.*", record)
    assert read_tables(uri, s3=make_clients(session).s3).names == ("sales", "customers", "stock")
    assert [c[1] for c in calls] == ["GetObject"]
    stmts = statements(template, parameters(template, TablesUri=uri))
    (read,) = [s for s in stmts if s.get("Sid") == "ReadTablesFile"]
    assert read["Action"] == ["s3:GetObject"]
    assert read["Resource"] == [f"arn:aws:s3:::{SRC}/config/s3pa/tables.yaml"]
    for request in _requests(calls[0]):
        assert _allowed(stmts, request), request
        assert not _allowed(statements(template, parameters(template)), request), request
    assert not _allowed(stmts, ("s3:GetObject", f"arn:aws:s3:::{SRC}/config/s3pa/other.yaml", None))
    assert not _allowed(stmts, ("s3:PutObject", f"arn:aws:s3:::{SRC}/config/s3pa/tables.yaml", None))
    assert not [s for s in statements(template, parameters(template)) if s.get("Sid") == "ReadTablesFile"]


def test_pipes_bucket_is_granted_only_when_configured() -> None:
    template = load_template()
    stmts = statements(template, parameters(template, PipesBucket="pipes-bucket"))
    (pipes,) = [s for s in stmts if s["Sid"] == "PipesMessages"]
    assert pipes["Resource"] == ["arn:aws:s3:::pipes-bucket/dagster-pipes/*"]
    assert not [s for s in statements(template, parameters(template)) if s["Sid"] == "PipesMessages"]


def test_the_tables_kms_keys_are_granted() -> None:
    """sse aws:kms with a key: GenerateDataKey and Decrypt on that key (by id, ARN or alias); no KMS
    grant for SSE-S3 or the AWS managed aws/s3 key."""
    doc = yaml.safe_load(TABLES_YAML)
    key_arn = "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    doc["tables"] += [
        {**doc["tables"][0], "name": f"t{i}", "pathoutput": f"lake/t{i}", "table": f"t{i}", **extra}
        for i, extra in enumerate(
            [
                {"sse": "aws:kms", "kms_key_id": "mrk-0123456789abcdef"},
                {"sse": "aws:kms", "kms_key_id": key_arn},
                {"sse": "aws:kms", "kms_key_id": "alias/lake"},
                {"sse": "aws:kms", "kms_key_id": "arn:aws:kms:eu-west-1:111122223333:alias/shared"},
                {"sse": "aws:kms"},
            ]
        )
    ]
    tables = parse_tables(doc)
    template = {"Conditions": {}, "Resources": {}}
    resolve = Resolver(template, {})
    kms = [resolve(s) for s in stack.table_statements(list(tables)) if s["Sid"].startswith("TableKey")]
    actions = ["kms:GenerateDataKey", "kms:Decrypt"]
    assert kms == [
        {
            "Sid": "TableKeys",
            "Effect": "Allow",
            "Action": actions,
            "Resource": [key_arn, "arn:aws:kms:us-east-1:123456789012:key/mrk-0123456789abcdef"],
        },
        {
            "Sid": "TableKeyAliases1",
            "Effect": "Allow",
            "Action": actions,
            "Resource": "arn:aws:kms:us-east-1:123456789012:key/*",
            "Condition": {"ForAnyValue:StringEquals": {"kms:ResourceAliases": ["alias/lake"]}},
        },
        {
            "Sid": "TableKeyAliases2",
            "Effect": "Allow",
            "Action": actions,
            "Resource": "arn:aws:kms:eu-west-1:111122223333:key/*",
            "Condition": {"ForAnyValue:StringEquals": {"kms:ResourceAliases": ["alias/shared"]}},
        },
    ]
    assert not [
        s
        for s in stack.table_statements(list(parse_tables(yaml.safe_load(TABLES_YAML))))
        if "kms" in s["Sid"].lower()
    ]


def _many_tables(n: int) -> dict[str, Any]:
    doc = yaml.safe_load(TABLES_YAML)
    sales = doc["tables"][0]
    doc["tables"] = [
        {
            **sales,
            "name": f"export_number_{i:03d}",
            "prefix": f"exports/department_{i:03d}/daily/{{data_ref}}/",
            "pathoutput": f"warehouse/department_{i:03d}/daily_export",
            "table": f"department_{i:03d}_daily_export",
            "database": "analytics" if i % 2 else "archive",
        }
        for i in range(n)
    ]
    return doc


def test_forty_tables_split_into_policies_under_the_iam_limit(tmp_path: Path) -> None:
    template = rendered(tables_file(tmp_path, _many_tables(40)))
    policies = [
        (rid, res) for rid, res in _role_policies(template) if res["Type"] == "AWS::IAM::ManagedPolicy"
    ]
    assert len(policies) > 1
    # As IAM counts it (no whitespace), with the longest partition, region and account id.
    worst = Resolver(template, parameters(template))
    worst.params.update({"AWS::Partition": "aws-iso-b", "AWS::Region": "ap-southeast-5"})
    granted = set()
    for _, res in policies:
        doc = worst(res["Properties"])["PolicyDocument"]
        assert len(json.dumps(doc, separators=(",", ":"))) <= 6144
        granted |= {r for s in doc["Statement"] for r in s["Resource"] if ":table/" in r}
    assert len(granted) == 40
    assert len([r for r in template["Resources"] if r.endswith("Schedule")]) == 40
    proc = subprocess.run(
        [str(CFN_LINT), str(tmp_path / "template.yaml")], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_what_one_stack_cannot_grant_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tables_file(tmp_path, _many_tables(51))
    out = tmp_path / "out.yaml"
    with pytest.raises(
        stack.StackError, match=r"51 tables; one stack serves at most 50 .*split the tables file"
    ):
        stack.render_file(path, out)
    doc = yaml.safe_load(TABLES_YAML)
    doc["tables"][2]["prefix"] = "stock*/{data_ref}/"
    path = tables_file(tmp_path, doc)
    assert stack.main(["--tables", str(path), "--out", str(out)]) == 1
    assert f"stack: {path}: tables[stock].prefix: 'stock*/' holds '*'" in capsys.readouterr().err
    doc["tables"][2]["prefix"] = "stock/{data_ref}/"
    doc["tables"][2]["schema"][1]["type"] = "integer64"
    path = tables_file(tmp_path, doc)
    assert stack.main(["--tables", str(path), "--out", str(out)]) == 1
    assert (
        f"stack: validate: tables file {path}: tables[stock].schema[1].type: 'integer64'"
        in capsys.readouterr().err
    )
    assert not out.exists()
    missing = tmp_path / "missing.yaml"
    proc = run_stack("--tables", str(missing), "--out", str(out))
    assert proc.returncode == 1
    assert proc.stderr.startswith(f"stack: validate: cannot read the tables file {missing}: "), proc.stderr
    assert not out.exists()


# ---------------------------------------------------------------------------------------------------
# The statements against the API calls of real loads

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

Call = tuple[str, str, dict[str, Any]]
# A request as IAM authorizes it: (action, resource ARN, s3:prefix or None).
Request = tuple[str, str, str | None]


def _allowed(stmts: list[dict[str, Any]], request: Request) -> bool:
    action, arn, prefix = request
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


def _requests(call: Call) -> list[Request]:
    """The authorization requests one API call makes."""
    service, op, params = call
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
        return [(action, arn, prefix) for arn in arns]
    assert service == "glue", service
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
    return [(f"glue:{op}", arn, None)]


PREVIOUS_DAY = "20240114"


def _record_loads(lake: Lake, tables: Tables) -> dict[str, list[Call]]:
    """Each table loaded for a day, then reloaded after a re-export (which cleans the first load's
    files up), then caught up (the day before missed), with the API calls of each table recorded."""
    calls: dict[str, list[Call]] = {name: [] for name in tables.names}
    current: list[list[Call]] = []

    def record(params: dict[str, Any], model: Any, **_: Any) -> None:
        current[-1].append((model.service_model.service_name, model.name, dict(params)))

    session = boto3.Session(region_name="us-east-1")
    session.events.register("provide-client-params.*.*", record)
    clients = make_clients(session)
    for rows in (5, 9):
        expected = stage_day(lake, DAY, rows=rows)
        for spec in tables:
            current.append(calls[spec.name])
            response = handle_event(spec.event(DAY), clients)
            assert response["statusCode"] == 200, response
            assert response["result"]["rows"] == len(expected[spec.name])
    # What a scheduled run does: check the table's window, load the day that was missed.
    stage_day(lake, PREVIOUS_DAY)
    for spec in tables:
        current.append(calls[spec.name])
        response = catch_up(spec, DAY, clients)
        assert response["statusCode"] == 200, response
        assert response["days"][PREVIOUS_DAY] == "loaded"
    return calls


def _tables_specific(request: Request, spec: TableSpec) -> bool:
    """Whether the request touches only what belongs to ``spec``: its source prefix, its table path or
    its Glue table (not the shared database or buckets)."""
    ev = spec.probe
    _, arn, prefix = request
    src_root = ev.prefix.split("{data_ref}")[0]
    if arn.startswith(f"arn:aws:s3:::{ev.bucket_src}/{src_root}") and src_root:
        return True
    if arn.startswith(f"arn:aws:s3:::{ev.bucket_dstn}/{ev.table_root}/"):
        return True
    if arn == f"arn:aws:s3:::{ev.bucket_dstn}" and prefix is not None:
        return prefix.startswith(f"{ev.table_root}/")
    if arn == f"arn:aws:s3:::{ev.bucket_src}" and prefix is not None:
        return bool(src_root) and prefix.startswith(src_root)
    return arn.endswith(f":table/{ev.database}/{ev.table}")


def test_the_policy_allows_every_call_of_each_tables_load_and_no_other_table(
    lake: Lake, tmp_path: Path
) -> None:
    """A real load (a reload, which cleans up, and a catch-up) of each of the three tables, every API call
    checked against the statements the way IAM would: action, resource ARN and s3:prefix condition.
    A stack rendered without a table denies that table's calls; paths of no table are denied."""
    path = tables_file(tmp_path)
    tables = read_tables(path)
    calls = _record_loads(lake, tables)
    template = rendered(path)
    stmts = statements(template, parameters(template))
    seen = set()
    for name, table_calls in calls.items():
        for call in table_calls:
            for request in _requests(call):
                assert _allowed(stmts, request), (name, call[1], request)
            seen.add(f"{call[0]}:{call[1]}")
    # The runs exercised the interesting parts: the lease, the write, the catalog flip, the cleanup.
    assert {"s3:PutObject", "s3:DeleteObjects", "s3:ListMultipartUploads", "glue:UpdatePartition"} <= seen, (
        seen
    )
    assert {"glue:CreateTable", "glue:BatchCreatePartition", "s3:GetObject", "s3:ListObjectsV2"} <= seen, seen

    # Each table's own calls are denied by the stack of the other two tables.
    doc = yaml.safe_load(TABLES_YAML)
    for spec in tables:
        others = {**doc, "tables": [t for t in doc["tables"] if t["name"] != spec.name]}
        other_dir = tmp_path / f"without-{spec.name}"
        other_dir.mkdir()
        template = rendered(tables_file(other_dir, others))
        without = statements(template, parameters(template))
        own = [r for call in calls[spec.name] for r in _requests(call) if _tables_specific(r, spec)]
        assert {a for a, _, _ in own} >= {"s3:GetObject", "s3:PutObject", "s3:DeleteObject", "glue:GetTable"}
        for request in own:
            assert not _allowed(without, request), (spec.name, request)

    # Neighbours of the tables' paths and prefixes, other buckets and Glue tables: denied.
    src, dst, glue = f"arn:aws:s3:::{SRC}", f"arn:aws:s3:::{DST}", "arn:aws:glue:us-east-1:123456789012"
    for request in [
        ("s3:GetObject", f"{src}/exports/{DAY}/sales_1.csv", None),
        ("s3:GetObject", f"{src}/crm/other_{DAY}.zip", None),
        ("s3:ListBucket", src, "exports/"),
        ("s3:ListBucket", src, ""),
        ("s3:ListBucket", src, None),
        ("s3:PutObject", f"{src}/sales/{DAY}/x.csv", None),
        ("s3:DeleteObject", f"{src}/stock/{DAY}/stock.csv", None),
        ("s3:PutObject", f"{dst}/lake/other/data_ref={DAY}/x.parquet", None),
        ("s3:PutObject", f"{dst}/lake/sales-old/x.parquet", None),
        ("s3:PutObject", f"{dst}/lake/x.parquet", None),
        ("s3:DeleteObject", f"{dst}/lake/_leases/data_ref={DAY}.json", None),
        ("s3:ListBucket", dst, "lake/"),
        ("s3:ListBucketMultipartUploads", dst, "lake/other/"),
        ("s3:GetObject", f"arn:aws:s3:::another-bucket/sales/{DAY}/sales_{DAY}.csv.gz", None),
        ("s3:PutObject", "arn:aws:s3:::another-bucket/lake/sales/x", None),
        ("glue:UpdateTable", f"{glue}:table/{DB}/other", None),
        ("glue:GetTable", f"{glue}:table/other_db/sales", None),
        ("glue:GetDatabase", f"{glue}:database/other_db", None),
        ("glue:DeleteTable", f"{glue}:table/{DB}/sales", None),
    ]:
        assert not _allowed(stmts, request), request


# AWS SDK for pandas layers for Python 3.12 as published (docs/source/layers.rst of aws/aws-sdk-pandas):
# 3.17.0 (pandas segfaults on datetime64, aws/aws-sdk-pandas#3393) and 3.16.1.
LAYERS_3_17_0 = [
    "arn:aws:lambda:us-east-1:336392948345:layer:AWSSDKPandas-Python312:29",
    "arn:aws:lambda:us-east-1:336392948345:layer:AWSSDKPandas-Python312-Arm64:29",
    "arn:aws:lambda:eu-west-1:336392948345:layer:AWSSDKPandas-Python312-Arm64:29",
    "arn:aws:lambda:af-south-1:336392948345:layer:AWSSDKPandas-Python312:28",
    "arn:aws:lambda:ap-east-1:839552336658:layer:AWSSDKPandas-Python312-Arm64:26",
    "arn:aws:lambda:me-central-1:593833071574:layer:AWSSDKPandas-Python312:26",
    "arn:aws:lambda:ca-west-1:941713567376:layer:AWSSDKPandas-Python312-Arm64:3",
    "arn:aws-cn:lambda:cn-northwest-1:406640652441:layer:AWSSDKPandas-Python312:10",
]
LAYERS_3_16_1 = [
    "arn:aws:lambda:us-east-1:336392948345:layer:AWSSDKPandas-Python312:27",
    "arn:aws:lambda:us-east-1:336392948345:layer:AWSSDKPandas-Python312-Arm64:27",
    "arn:aws:lambda:af-south-1:336392948345:layer:AWSSDKPandas-Python312-Arm64:26",  # 26: good here
    "arn:aws:lambda:ap-east-1:839552336658:layer:AWSSDKPandas-Python312:25",
    "arn:aws-cn:lambda:cn-north-1:406640652441:layer:AWSSDKPandas-Python312:9",
]


def test_layer_arn_is_required_and_the_3_17_0_layers_are_refused() -> None:
    """CloudFormation checks LayerArn against its AllowedPattern before anything is created: no
    default, a layer version ARN, and none of the 3.17.0 layers, in any region, either architecture."""
    template = load_template()
    pattern = re.compile(template["Parameters"]["LayerArn"]["AllowedPattern"])
    for arn in LAYERS_3_17_0:
        assert not pattern.match(arn), arn
    for arn in [*LAYERS_3_16_1, "arn:aws:lambda:eu-west-1:111111111111:layer:my-pandas-3_17_1:4"]:
        assert pattern.match(arn), arn
    # Not a layer version ARN: refused (empty included, as the parameter has no default).
    for value in [
        "",
        "26",
        "arn:aws:lambda:us-east-1:336392948345:layer:AWSSDKPandas-Python312",
        "arn:aws:lambda:us-east-1:336392948345:function:AWSSDKPandas-Python312:27",
        "arn:aws:lambda:us-east-1:336392948345:layer:AWSSDKPandas-Python312:27 ",
    ]:
        assert not pattern.match(value), value
    # The refusal is of whole ARNs: another version of the same layer is allowed (290 is not 29).
    assert pattern.match("arn:aws:lambda:us-east-1:336392948345:layer:AWSSDKPandas-Python312:290")
