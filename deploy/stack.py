"""Render the SAM stack for every table of a tables file: one function, one schedule per table.

    python deploy/stack.py --tables tables.yaml [--out deploy/build/template.yaml] [--check]

The tables file is read and validated with :func:`s3_parquet_assets.core.read_tables`; the template
is rendered from it deterministically (the same file gives the same bytes):

- one EventBridge rule per table at the table's ``schedule`` (HH:MM UTC), whose input (an
  InputTransformer) is the "Scheduled Event" shape plus ``"table": "<name>"``;
- an optional S3 trigger (``EnableS3Trigger``): one EventBridge "Object Created" rule per source
  bucket, matching the key prefixes of that bucket's tables (the part before ``{data_ref}``);
- a role that may list (``s3:prefix`` condition) and read only the tables' source prefixes, write,
  delete and upload only under their table paths, and use Glue only on the catalog, their
  databases and their tables; and read the tables file object when ``TablesUri`` is set;
- the function reads the tables file from ``S3PA_TABLES`` when the ``TablesUri`` parameter is set,
  otherwise from the copy bundled in the zip (``make lambda-zip TABLES=...``).

``--check`` compares the rendered template with ``--out`` and fails if they differ (the committed
``deploy/template.yaml`` is the one rendered from ``deploy/tables.example.yaml``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "deploy" / "build" / "template.yaml"
ZIP = ROOT / "deploy" / "build" / "s3_parquet_assets_lambda.zip"

# IAM limits: a managed policy holds at most 6,144 characters (whitespace not counted); a role has at
# most 10 managed policies by default. The Lambda resource policy (one statement per rule) is 20 KB.
MANAGED_POLICY_CHARS = 6144
MAX_MANAGED_POLICIES = 10
MAX_TABLES = 50
# The longest values the pseudo parameters take, to size a policy as IAM will see it.
_WORST_PSEUDO = {"AWS::Partition": "aws-iso-b", "AWS::Region": "ap-southeast-5", "AWS::AccountId": "0" * 12}
_UNSAFE = re.compile(r"[*?$]")
_LOG_RETENTION_DAYS = [1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192]
_LOG_RETENTION_DAYS += [2557, 2922, 3288, 3653]

# The AWS SDK for pandas 3.17.0 layers for Python 3.12 (x86_64 and -Arm64 share the version number),
# per (partition, publishing account, version): their pandas segfaults on datetime64
# (aws/aws-sdk-pandas#3393, fixed in 3.17.1). From docs/source/layers.rst at 3.17.0 (f1e4b018,
# 2026-06-25). The same version number is a good build elsewhere (26 is 3.16.1 in af-south-1 and
# 3.17.0 in ap-east-1), so a version alone says nothing: LayerArn is required and these are refused.
BAD_LAYERS: dict[tuple[str, str, int], tuple[str, ...]] = {
    ("aws", "336392948345", 29): (
        "ap-northeast-1", "ap-northeast-2", "ap-northeast-3", "ap-south-1", "ap-southeast-1",
        "ap-southeast-2", "ca-central-1", "eu-central-1", "eu-north-1", "eu-west-1", "eu-west-2",
        "eu-west-3", "sa-east-1", "us-east-1", "us-east-2", "us-west-1", "us-west-2",
    ),
    ("aws", "336392948345", 28): ("af-south-1",),
    ("aws", "839552336658", 26): ("ap-east-1",),
    ("aws", "246107603503", 26): ("ap-south-2",),
    ("aws", "258944054355", 26): ("ap-southeast-3",),
    ("aws", "945386623051", 26): ("ap-southeast-4",),
    ("aws", "941713567376", 3): ("ca-west-1",),
    ("aws-cn", "406640652441", 10): ("cn-north-1", "cn-northwest-1"),
    ("aws", "956415814219", 26): ("eu-central-2",),
    ("aws", "774444163449", 26): ("eu-south-1",),
    ("aws", "982086096842", 26): ("eu-south-2",),
    ("aws", "263840725265", 26): ("il-central-1",),
    ("aws", "593833071574", 26): ("me-central-1",),
}  # fmt: skip
_LAYER_ARN = r"arn:aws[a-z-]*:lambda:[a-z0-9-]+:[0-9]{12}:layer:[A-Za-z0-9_-]+:[0-9]+"

__all__ = [
    "BAD_LAYERS",
    "StackError",
    "cron",
    "dump",
    "layer_arn_pattern",
    "logical_ids",
    "main",
    "read",
    "render",
    "render_file",
    "render_text",
    "schedule_input",
    "source_root",
    "table_statements",
]

if __package__ in (None, ""):  # run as a script: the repository root holds the package
    sys.path.insert(0, str(ROOT))

from s3_parquet_assets.core.errors import LoadError  # noqa: E402
from s3_parquet_assets.core.event import LoadEvent  # noqa: E402
from s3_parquet_assets.core.tables import Tables, TableSpec, read_tables  # noqa: E402


class StackError(Exception):
    """The tables file cannot be deployed as one stack (named table and field, or a limit)."""


# ---------------------------------------------------------------------------------------------------
# Small helpers


def _sub(text: str, **values: Any) -> dict[str, Any]:
    return {"Fn::Sub": [text, values] if values else text}


def _ref(name: str) -> dict[str, str]:
    return {"Ref": name}


def _getatt(resource: str, attribute: str) -> dict[str, list[str]]:
    return {"Fn::GetAtt": [resource, attribute]}


def layer_arn_pattern() -> str:
    """``LayerArn``'s AllowedPattern: a Lambda layer version ARN that is none of :data:`BAD_LAYERS`."""
    bad = [
        f"arn:{partition}:lambda:(?:{'|'.join(regions)}):{account}:layer:AWSSDKPandas-Python312(?:-Arm64)?:"
        f"{version}"
        for (partition, account, version), regions in BAD_LAYERS.items()
    ]
    return f"^(?!(?:{'|'.join(bad)})$){_LAYER_ARN}$"


def source_root(prefix: str) -> str:
    """The part of a source prefix before ``{data_ref}``: what the function may list and read."""
    return prefix.split("{data_ref}", 1)[0]


def cron(spec: TableSpec) -> str:
    """The EventBridge schedule of a table's ``schedule`` (HH:MM UTC): every day at that time."""
    hours, minutes = spec.hhmm
    return f"cron({minutes} {hours} * * ? *)"


def logical_ids(names: Iterable[str]) -> dict[str, str]:
    """A CloudFormation logical id part per table name: CamelCase letters and digits (``daily_sales``
    -> ``DailySales``); names that would collide get a short hash of the name appended."""
    names = list(names)

    def camel(name: str) -> str:
        return "".join(p[:1].upper() + p[1:] for p in re.split(r"[-_]+", name) if p)

    base = {n: camel(n) or "Table" for n in names}
    counts: dict[str, int] = {}
    for b in base.values():
        counts[b] = counts.get(b, 0) + 1
    return {
        n: b if counts[b] == 1 else f"{b}{hashlib.sha256(n.encode()).hexdigest()[:8]}"
        for n, b in base.items()
    }


def _covering(prefixes: Iterable[str]) -> list[str]:
    """The prefixes, sorted, without those another one already covers (``a/`` covers ``a/b/``)."""
    kept: list[str] = []
    for p in sorted(set(prefixes)):
        if not any(p.startswith(k) for k in kept):
            kept.append(p)
    return kept


def _check_grantable(tables: Tables) -> None:
    """Refuse what IAM cannot grant exactly: '*', '?' and '$' in a source prefix or a KMS key would
    be read as wildcards or policy variables (pathoutput cannot hold them)."""
    if len(tables) > MAX_TABLES:
        raise StackError(
            f"{tables.source}: {len(tables)} tables; one stack serves at most {MAX_TABLES} (the function's "
            "resource policy holds one statement per schedule, 20 KB): split the tables file"
        )
    for spec in tables:
        for name, value in (
            ("prefix", source_root(spec.probe.prefix)),
            ("kms_key_id", spec.probe.kms_key_id),
        ):
            if value and _UNSAFE.search(value):
                raise StackError(
                    f"{tables.source}: tables[{spec.name}].{name}: {value!r} holds '*', '?' or '$', which "
                    "IAM would read as a wildcard or variable; the stack cannot grant exactly this"
                )


# ---------------------------------------------------------------------------------------------------
# IAM: what the tables need


def _s3_arn(bucket: str, key_pattern: str | None = None) -> dict[str, Any]:
    return _sub(f"arn:${{AWS::Partition}}:s3:::{bucket}" + ("" if key_pattern is None else f"/{key_pattern}"))


def _by_bucket(pairs: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for bucket, prefix in pairs:
        out.setdefault(bucket, []).append(prefix)
    return {b: _covering(out[b]) for b in sorted(out)}


def table_statements(specs: Sequence[TableSpec]) -> list[dict[str, Any]]:
    """The statements that let the function load exactly ``specs``: sources listed and read under
    their prefix, tables written under their path, Glue on their databases and tables."""
    events = [s.probe for s in specs]
    sources = _by_bucket((e.bucket_src, source_root(e.prefix)) for e in events)
    dests = _by_bucket((e.bucket_dstn, f"{e.table_root}/") for e in events)
    out: list[dict[str, Any]] = []
    for i, (bucket, roots) in enumerate(sources.items(), 1):
        out.append(
            {
                "Sid": f"ListSource{i}",
                "Effect": "Allow",
                "Action": "s3:ListBucket",
                "Resource": _s3_arn(bucket),
                "Condition": {"StringLike": {"s3:prefix": [f"{r}*" for r in roots]}},
            }
        )
    out.append(
        {
            "Sid": "ReadSources",
            "Effect": "Allow",
            "Action": "s3:GetObject",
            "Resource": [_s3_arn(b, f"{r}*") for b, roots in sources.items() for r in roots],
        }
    )
    for i, (bucket, paths) in enumerate(dests.items(), 1):
        prefixes = [f"{p}*" for p in paths]
        out.append(
            {
                "Sid": f"ListTables{i}",
                "Effect": "Allow",
                "Action": "s3:ListBucket",
                "Resource": _s3_arn(bucket),
                "Condition": {"StringLike": {"s3:prefix": prefixes}},
            }
        )
        # ListMultipartUploads is authorized on the bucket; the condition holds whenever the request
        # context carries s3:prefix (the loader always passes the day's prefix).
        out.append(
            {
                "Sid": f"ListTableUploads{i}",
                "Effect": "Allow",
                "Action": "s3:ListBucketMultipartUploads",
                "Resource": _s3_arn(bucket),
                "Condition": {"StringLikeIfExists": {"s3:prefix": prefixes}},
            }
        )
    out.append(
        {
            "Sid": "WriteTables",
            "Effect": "Allow",
            "Action": [
                "s3:GetObject",
                "s3:PutObject",
                "s3:DeleteObject",
                "s3:AbortMultipartUpload",
                "s3:ListMultipartUploadParts",
            ],
            "Resource": [_s3_arn(b, f"{p}*") for b, paths in dests.items() for p in paths],
        }
    )
    out += _kms_statements(events)
    glue = "arn:${AWS::Partition}:glue:${AWS::Region}:${AWS::AccountId}"
    databases = sorted({e.database for e in events})
    glue_tables = sorted({(e.database, e.table) for e in events})
    out.append(
        {
            "Sid": "GlueTables",
            "Effect": "Allow",
            "Action": [
                "glue:GetDatabase",
                "glue:GetTable",
                "glue:CreateTable",
                "glue:UpdateTable",
                "glue:GetPartition",
                "glue:GetPartitions",
                "glue:BatchCreatePartition",
                "glue:UpdatePartition",
                "glue:BatchDeletePartition",
            ],
            "Resource": [
                _sub(f"{glue}:catalog"),
                *(_sub(f"{glue}:database/{d}") for d in databases),
                *(_sub(f"{glue}:table/{d}/{t}") for d, t in glue_tables),
            ],
        }
    )
    return out


_KMS_ARN = re.compile(
    r"^arn:[a-z-]+:kms:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):(?P<kind>key|alias)/(?P<id>.+)$"
)


def _kms_statements(events: Sequence[LoadEvent]) -> list[dict[str, Any]]:
    """kms:GenerateDataKey and kms:Decrypt (multipart uploads, reads of the written files) on the
    tables' own SSE-KMS keys (sse aws:kms with kms_key_id). A key id or key ARN is granted as that
    key; an alias (IAM never authorizes an alias ARN) as the keys that carry the alias
    (kms:ResourceAliases). sse aws:kms without a key uses the AWS managed aws/s3 key: no grant."""
    arns: set[str] = set()
    ids: set[str] = set()
    aliases: dict[tuple[str, str], set[str]] = {}
    here = ("${AWS::Region}", "${AWS::AccountId}")
    for ev in events:
        key_id = ev.kms_key_id if ev.sse == "aws:kms" else None
        if not key_id:
            continue
        m = _KMS_ARN.match(key_id)
        if m and m["kind"] == "key":
            arns.add(key_id)
        elif m:
            aliases.setdefault((m["region"], m["account"]), set()).add(f"alias/{m['id']}")
        elif key_id.startswith("alias/"):
            aliases.setdefault(here, set()).add(key_id)
        else:
            ids.add(key_id)
    actions = ["kms:GenerateDataKey", "kms:Decrypt"]
    out: list[dict[str, Any]] = []
    if arns or ids:
        key = "arn:${AWS::Partition}:kms:${AWS::Region}:${AWS::AccountId}:key/"
        resources = [*sorted(arns), *(_sub(key + i) for i in sorted(ids))]
        out.append({"Sid": "TableKeys", "Effect": "Allow", "Action": actions, "Resource": resources})
    for i, ((region, account), names) in enumerate(sorted(aliases.items()), 1):
        out.append(
            {
                "Sid": f"TableKeyAliases{i}",
                "Effect": "Allow",
                "Action": actions,
                "Resource": _sub(f"arn:${{AWS::Partition}}:kms:{region}:{account}:key/*"),
                "Condition": {"ForAnyValue:StringEquals": {"kms:ResourceAliases": sorted(names)}},
            }
        )
    return out


def _policy_chars(statements: list[dict[str, Any]]) -> int:
    """The size of a policy document as IAM counts it (no whitespace), pseudo parameters at their
    longest."""
    text = json.dumps({"Version": "2012-10-17", "Statement": statements}, separators=(",", ":"))
    text = re.sub(r'\{"Fn::Sub":("(?:[^"\\]|\\.)*")\}', r"\1", text)
    for name, value in _WORST_PSEUDO.items():
        text = text.replace("${" + name + "}", value)
    return len(text)


def _policy_chunks(specs: Sequence[TableSpec], source: str) -> list[list[dict[str, Any]]]:
    """The tables' statements split into managed policies under IAM's size limit (greedy, in
    declaration order: the same file gives the same split)."""
    chunks: list[list[TableSpec]] = []
    for spec in specs:
        if chunks and _policy_chars(table_statements([*chunks[-1], spec])) <= MANAGED_POLICY_CHARS:
            chunks[-1].append(spec)
            continue
        if _policy_chars(table_statements([spec])) > MANAGED_POLICY_CHARS:
            raise StackError(
                f"{source}: tables[{spec.name}]: its IAM statements alone exceed 6,144 characters"
            )
        chunks.append([spec])
    if len(chunks) > MAX_MANAGED_POLICIES:
        raise StackError(
            f"{source}: the tables need {len(chunks)} managed policies; a role holds {MAX_MANAGED_POLICIES}: "
            "split the tables file"
        )
    return [table_statements(c) for c in chunks]


# ---------------------------------------------------------------------------------------------------
# The template's parts


def _parameters() -> dict[str, Any]:
    return {
        "TablesUri": {
            "Type": "String",
            "Default": "",
            "AllowedPattern": r"^(s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/[^*?$]+)?$",
            "Description": (
                "Empty (default): the function reads the tables file bundled in its zip (make lambda-zip "
                "TABLES=...). s3://bucket/key: it reads this object at cold start (S3PA_TABLES, which takes "
                "precedence) and the role may read it. Either way the file must declare the tables this "
                "stack was generated from."
            ),
        },
        "Architecture": {
            "Type": "String",
            "Default": "arm64",
            "AllowedValues": ["arm64", "x86_64"],
            "Description": "Function architecture (the package is pure Python; the layer must match).",
        },
        "MemorySize": {
            "Type": "Number",
            "Default": 1024,
            "MinValue": 512,
            "MaxValue": 10240,
            "Description": "Function memory in MB (see the README's memory sizing; 1769 MB = one full vCPU).",
        },
        "Timeout": {
            "Type": "Number",
            "Default": 900,
            "MinValue": 60,
            "MaxValue": 900,
            "Description": "Function timeout in seconds (a scheduled run loads its stale days).",
        },
        "ReservedConcurrency": {
            "Type": "Number",
            "Default": 4,
            "MinValue": 1,
            "Description": (
                "Reserved concurrent executions: at most this many loads at once, every table and the "
                "Dagster fan-out included. Keep each table's lambda_concurrency at or below it."
            ),
        },
        "LayerArn": {
            "Type": "String",
            "AllowedPattern": layer_arn_pattern(),
            "ConstraintDescription": (
                "a Lambda layer version ARN (arn:aws:lambda:REGION:ACCOUNT:layer:NAME:VERSION), not an AWS "
                "SDK for pandas 3.17.0 layer (its pandas segfaults on datetime64, aws/aws-sdk-pandas#3393)"
            ),
            "Description": (
                "Required. ARN of the AWS SDK for pandas layer for Python 3.12 and this Architecture "
                "(AWSSDKPandas-Python312-Arm64 or AWSSDKPandas-Python312), e.g. the 3.17.1 layer of this "
                "region; version numbers and publishing accounts differ per region. Known good and known "
                "bad versions: README, Deploying to AWS Lambda."
            ),
        },
        "LogRetentionDays": {
            "Type": "Number",
            "Default": 30,
            "AllowedValues": _LOG_RETENTION_DAYS,
        },
        "EnableSchedules": {
            "Type": "String",
            "Default": "true",
            "AllowedValues": ["true", "false"],
            "Description": (
                "Run each table daily at its schedule (HH:MM UTC in the tables file). false: the rules exist "
                "but are disabled (e.g. when Dagster runs the loads on the function)."
            ),
        },
        "EnableS3Trigger": {
            "Type": "String",
            "Default": "false",
            "AllowedValues": ["true", "false"],
            "Description": (
                "Also load when an export lands (EventBridge 'Object Created' events of the source buckets "
                "under the tables' prefixes; each bucket must have EventBridge notifications turned on)."
            ),
        },
        "DataRefPattern": {
            "Type": "String",
            "Default": r"(?<!\d)(?P<data_ref>\d{8})(?!\d)",
            "Description": (
                "Regex with a named group data_ref (or year, month, day) finding the day in an object key "
                "whose table prefix has no {data_ref}."
            ),
        },
        "MaximumRetryAttempts": {
            "Type": "Number",
            "Default": 2,
            "MinValue": 0,
            "MaxValue": 2,
            "Description": "Retries of a failed asynchronous invocation before it goes to the dead-letter "
            "queue.",
        },
        "AlarmTopicArn": {
            "Type": "String",
            "Default": "",
            "Description": "SNS topic notified by the alarms (empty - alarms without actions).",
        },
        "PipesBucket": {
            "Type": "String",
            "Default": "",
            "Description": (
                "Only for Dagster PipesS3MessageReader/PipesS3ContextInjector: the bucket the Pipes messages "
                "go through. Empty (default) - Pipes messages travel in the invoke's 4 KB log tail."
            ),
        },
        "PipesPrefix": {
            "Type": "String",
            "Default": "dagster-pipes",
            "AllowedPattern": r"^[A-Za-z0-9._=+-]+(/[A-Za-z0-9._=+-]+)*$",
            "Description": "Key prefix in PipesBucket for Pipes messages.",
        },
    }


_GROUPS = (
    ("Tables file", ["TablesUri"]),
    (
        "Function",
        [
            "Architecture",
            "MemorySize",
            "Timeout",
            "ReservedConcurrency",
            "LayerArn",
            "LogRetentionDays",
        ],
    ),
    (
        "Triggers and alarms",
        ["EnableSchedules", "EnableS3Trigger", "DataRefPattern", "MaximumRetryAttempts", "AlarmTopicArn"],
    ),
    ("Dagster Pipes", ["PipesBucket", "PipesPrefix"]),
)


def _conditions() -> dict[str, Any]:
    def equals(name: str, value: str) -> dict[str, Any]:
        return {"Fn::Equals": [_ref(name), value]}

    return {
        "SchedulesEnabled": equals("EnableSchedules", "true"),
        "S3TriggerEnabled": equals("EnableS3Trigger", "true"),
        "HasAlarmTopic": {"Fn::Not": [equals("AlarmTopicArn", "")]},
        "HasPipesBucket": {"Fn::Not": [equals("PipesBucket", "")]},
        "HasTablesUri": {"Fn::Not": [equals("TablesUri", "")]},
    }


def _role() -> dict[str, Any]:
    return {
        "Type": "AWS::IAM::Role",
        "Properties": {
            "Description": "s3_parquet_assets loader: only its tables' source prefixes, paths, Glue tables.",
            "AssumeRolePolicyDocument": {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"Service": "lambda.amazonaws.com"},
                        "Action": "sts:AssumeRole",
                    }
                ],
            },
            "Policies": [
                {
                    "PolicyName": "runtime",
                    "PolicyDocument": {
                        "Version": "2012-10-17",
                        "Statement": [
                            {
                                "Sid": "Logs",
                                "Effect": "Allow",
                                "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                                "Resource": _sub("${LoadFunctionLogGroup.Arn}:*"),
                            },
                            {
                                "Sid": "DeadLetterQueue",
                                "Effect": "Allow",
                                "Action": "sqs:SendMessage",
                                "Resource": _getatt("DeadLetterQueue", "Arn"),
                            },
                        ],
                    },
                }
            ],
        },
    }


def _table_policies(chunks: list[list[dict[str, Any]]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for i, statements in enumerate(chunks, 1):
        out[f"TablesPolicy{i}"] = {
            "Type": "AWS::IAM::ManagedPolicy",
            "Properties": {
                "Description": f"s3_parquet_assets: the tables' data and catalog ({i} of {len(chunks)}).",
                "Roles": [_ref("LoadFunctionRole")],
                "PolicyDocument": {"Version": "2012-10-17", "Statement": statements},
            },
        }
    return out


def _optional_policies() -> dict[str, Any]:
    def policy(condition: str, name: str, statement: dict[str, Any]) -> dict[str, Any]:
        return {
            "Type": "AWS::IAM::RolePolicy",
            "Condition": condition,
            "Properties": {
                "RoleName": _ref("LoadFunctionRole"),
                "PolicyName": name,
                "PolicyDocument": {"Version": "2012-10-17", "Statement": [statement]},
            },
        }

    return {
        "TablesFilePolicy": policy(
            "HasTablesUri",
            "tables-file",
            {
                "Sid": "ReadTablesFile",
                "Effect": "Allow",
                "Action": "s3:GetObject",
                "Resource": _sub(
                    "arn:${AWS::Partition}:s3:::${Object}",
                    Object={"Fn::Select": [1, {"Fn::Split": ["s3://", _ref("TablesUri")]}]},
                ),
            },
        ),
        "PipesMessagesPolicy": policy(
            "HasPipesBucket",
            "dagster-pipes",
            {
                "Sid": "PipesMessages",
                "Effect": "Allow",
                "Action": ["s3:GetObject", "s3:PutObject"],
                "Resource": _sub("arn:${AWS::Partition}:s3:::${PipesBucket}/${PipesPrefix}/*"),
            },
        ),
    }


def _function(code_uri: str, policies: list[str]) -> dict[str, Any]:
    return {
        "Type": "AWS::Serverless::Function",
        "DependsOn": policies,
        "Properties": {
            "FunctionName": _sub("${AWS::StackName}-load"),
            "Description": "Daily CSV exports -> Parquet partitions + Glue, every table of the tables file.",
            "CodeUri": code_uri,
            "Handler": "s3_parquet_assets.lambda_handler.handler",
            "Runtime": "python3.12",
            "Architectures": [_ref("Architecture")],
            "MemorySize": _ref("MemorySize"),
            "Timeout": _ref("Timeout"),
            "ReservedConcurrentExecutions": _ref("ReservedConcurrency"),
            "Role": _getatt("LoadFunctionRole", "Arn"),
            "Layers": [_ref("LayerArn")],
            # Pipes reads raw JSON lines from the log tail; the JSON log format would wrap them.
            "LoggingConfig": {"LogGroup": _ref("LoadFunctionLogGroup"), "LogFormat": "Text"},
            "Environment": {
                "Variables": {
                    "S3PA_TABLES": {"Fn::If": ["HasTablesUri", _ref("TablesUri"), _ref("AWS::NoValue")]},
                    "S3PA_DATA_REF_PATTERN": _ref("DataRefPattern"),
                    "S3PA_RAISE_ON_ERROR": "auto",
                    "S3PA_LOG_LEVEL": "INFO",
                }
            },
            "DeadLetterQueue": {"Type": "SQS", "TargetArn": _getatt("DeadLetterQueue", "Arn")},
            "EventInvokeConfig": {
                "MaximumRetryAttempts": _ref("MaximumRetryAttempts"),
                "MaximumEventAgeInSeconds": 21600,
            },
        },
    }


def _permission(rule: str, condition: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"Type": "AWS::Lambda::Permission"}
    if condition:
        out["Condition"] = condition
    out["Properties"] = {
        "Action": "lambda:InvokeFunction",
        "FunctionName": _ref("LoadFunction"),
        "Principal": "events.amazonaws.com",
        "SourceArn": _getatt(rule, "Arn"),
    }
    return out


def schedule_input(name: str) -> str:
    """The InputTransformer template of a table's schedule: the Scheduled Event shape plus the table."""
    return (
        '{"source": "aws.events", "detail-type": "Scheduled Event", "time": <time>, "table": '
        + json.dumps(name)
        + "}"
    )


def _schedules(tables: Tables, ids: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for spec in tables:
        rule = f"{ids[spec.name]}Schedule"
        out[rule] = {
            "Type": "AWS::Events::Rule",
            "Properties": {
                "Description": (
                    f"Table {spec.name}: daily at {spec.schedule} UTC, loads the stale days of the "
                    f"{spec.catchup_days} days before the event time."
                ),
                "ScheduleExpression": cron(spec),
                "State": {"Fn::If": ["SchedulesEnabled", "ENABLED", "DISABLED"]},
                "Targets": [
                    {
                        "Id": "load",
                        "Arn": _getatt("LoadFunction", "Arn"),
                        "InputTransformer": {
                            "InputPathsMap": {"time": "$.time"},
                            "InputTemplate": schedule_input(spec.name),
                        },
                    }
                ],
            },
        }
        out[f"{rule}Permission"] = _permission(rule)
    return out


def _object_created(tables: Tables) -> dict[str, Any]:
    sources = _by_bucket((s.probe.bucket_src, source_root(s.probe.prefix)) for s in tables)
    out: dict[str, Any] = {}
    for i, (bucket, roots) in enumerate(sources.items(), 1):
        detail: dict[str, Any] = {"bucket": {"name": [bucket]}}
        if "" not in roots:
            detail["object"] = {"key": [{"prefix": r} for r in roots]}
        rule = f"ObjectCreatedRule{i}"
        out[rule] = {
            "Type": "AWS::Events::Rule",
            "Condition": "S3TriggerEnabled",
            "Properties": {
                "Description": f"Load the day of an export landing in s3://{bucket} under a table's prefix.",
                "State": "ENABLED",
                "EventPattern": {"source": ["aws.s3"], "detail-type": ["Object Created"], "detail": detail},
                "Targets": [{"Id": "load", "Arn": _getatt("LoadFunction", "Arn")}],
            },
        }
        out[f"{rule}Permission"] = _permission(rule, "S3TriggerEnabled")
    return out


def _alarms() -> dict[str, Any]:
    actions = {"Fn::If": ["HasAlarmTopic", [_ref("AlarmTopicArn")], _ref("AWS::NoValue")]}
    common = {
        "Statistic": "Sum",
        "Period": 300,
        "EvaluationPeriods": 1,
        "Threshold": 1,
        "ComparisonOperator": "GreaterThanOrEqualToThreshold",
        "TreatMissingData": "notBreaching",
        "AlarmActions": actions,
    }
    return {
        "ErrorsAlarm": {
            "Type": "AWS::CloudWatch::Alarm",
            "Properties": {
                "AlarmDescription": "The loader raised (a failed scheduled/S3 load, or a bug); see its logs "
                "and the DLQ.",
                "Namespace": "AWS/Lambda",
                "MetricName": "Errors",
                "Dimensions": [{"Name": "FunctionName", "Value": _ref("LoadFunction")}],
                **common,
            },
        },
        "DeadLetterAlarm": {
            "Type": "AWS::CloudWatch::Alarm",
            "Properties": {
                "AlarmDescription": "An event gave up after its retries and waits in the dead-letter queue.",
                "Namespace": "AWS/SQS",
                "MetricName": "ApproximateNumberOfMessagesVisible",
                "Dimensions": [{"Name": "QueueName", "Value": _getatt("DeadLetterQueue", "QueueName")}],
                **common,
                "Statistic": "Maximum",
            },
        },
    }


# ---------------------------------------------------------------------------------------------------
# The template


def render(tables: Tables, *, code_uri: str, tables_name: str, tables_sha256: str) -> dict[str, Any]:
    """The SAM template (a plain mapping, long-form intrinsics) serving every table of ``tables``."""
    _check_grantable(tables)
    ids = logical_ids(tables.names)
    chunks = _policy_chunks(list(tables), tables.source)
    policies = _table_policies(chunks)
    resources: dict[str, Any] = {
        "DeadLetterQueue": {
            "Type": "AWS::SQS::Queue",
            "Properties": {"MessageRetentionPeriod": 1209600, "SqsManagedSseEnabled": True},
        },
        "LoadFunctionLogGroup": {
            "Type": "AWS::Logs::LogGroup",
            "DeletionPolicy": "Retain",
            "UpdateReplacePolicy": "Retain",
            "Properties": {
                "LogGroupName": _sub("/aws/lambda/${AWS::StackName}-load"),
                "RetentionInDays": _ref("LogRetentionDays"),
            },
        },
        "LoadFunctionRole": _role(),
        **policies,
        **_optional_policies(),
        "LoadFunction": _function(code_uri, sorted(policies)),
        **_schedules(tables, ids),
        **_object_created(tables),
        **_alarms(),
    }
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Transform": "AWS::Serverless-2016-10-31",
        "Description": (
            f"s3_parquet_assets loader for {len(tables)} table(s) of {tables_name}: daily CSV exports on S3 "
            "-> partitioned Parquet + Glue, run by one EventBridge schedule per table, optionally by S3 "
            "object-created events, and by Dagster through Pipes. Generated by deploy/stack.py."
        ),
        "Metadata": {
            "AWS::CloudFormation::Interface": {
                "ParameterGroups": [{"Label": {"default": label}, "Parameters": p} for label, p in _GROUPS]
            },
            "S3paTables": {"File": tables_name, "Sha256": tables_sha256, "Tables": list(tables.names)},
        },
        "Parameters": _parameters(),
        "Conditions": _conditions(),
        "Resources": resources,
        "Outputs": {
            "FunctionName": {
                "Description": "Set lambda_function (tables with run_on: lambda) to this.",
                "Value": _ref("LoadFunction"),
            },
            "FunctionArn": {"Value": _getatt("LoadFunction", "Arn")},
            "DeadLetterQueueUrl": {"Value": _ref("DeadLetterQueue")},
            "RoleArn": {"Value": _getatt("LoadFunctionRole", "Arn")},
            "Tables": {"Description": "The tables this stack serves.", "Value": ",".join(tables.names)},
        },
    }


class _Dumper(yaml.SafeDumper):
    """Block YAML as people write templates: lists indented under their key, no anchors."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)

    def ignore_aliases(self, data: Any) -> bool:
        return True


def dump(template: dict[str, Any], tables_name: str) -> str:
    header = (
        f"# Generated by deploy/stack.py from {tables_name}: do not edit by hand.\n"
        f"# Regenerate: make stack TABLES=<tables file> (see the README, 'Deploying to AWS Lambda').\n"
    )
    return header + yaml.dump(template, Dumper=_Dumper, sort_keys=False, width=110, allow_unicode=True)


def read(tables_path: Path) -> tuple[Tables, str]:
    """The validated tables file and the sha256 of its bytes (read once)."""
    try:
        data = tables_path.read_bytes()
        text = data.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise LoadError("validate", f"cannot read the tables file {tables_path}: {exc}") from None
    return read_tables(tables_path, reader=lambda _: text), hashlib.sha256(data).hexdigest()


def render_text(tables: Tables, sha256: str, *, name: str, out: Path, code_uri: str | None = None) -> str:
    """The template text for ``tables`` (file ``name``) as written to ``out`` (``CodeUri`` relative to
    it unless given)."""
    uri = code_uri or Path(os.path.relpath(ZIP, out.resolve().parent)).as_posix()
    return dump(render(tables, code_uri=uri, tables_name=name, tables_sha256=sha256), name)


def render_file(tables_path: Path, out: Path, *, code_uri: str | None = None) -> str:
    """The template text for the tables file ``tables_path`` as written to ``out``."""
    tables, sha256 = read(tables_path)
    return render_text(tables, sha256, name=tables_path.name, out=out, code_uri=code_uri)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tables", type=Path, required=True, help="the tables file (YAML)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"the template (default {DEFAULT_OUT})")
    parser.add_argument(
        "--code-uri", help="the function's CodeUri (default: the make lambda-zip zip, relative)"
    )
    parser.add_argument("--check", action="store_true", help="fail if --out differs from the rendering")
    args = parser.parse_args(argv)

    try:
        tables, sha256 = read(args.tables)
        text = render_text(tables, sha256, name=args.tables.name, out=args.out, code_uri=args.code_uri)
    except (LoadError, StackError) as exc:
        print(f"stack: {exc}", file=sys.stderr)
        return 1
    if args.check:
        current = args.out.read_text(encoding="utf-8") if args.out.exists() else ""
        if current != text:
            print(
                f"stack: {args.out} is not what deploy/stack.py renders from {args.tables}; "
                f"run: python deploy/stack.py --tables {args.tables} --out {args.out}",
                file=sys.stderr,
            )
            return 1
        print(f"{args.out}: up to date with {args.tables}")
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(f"{args.out}: {len(tables)} table(s) from {args.tables}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
