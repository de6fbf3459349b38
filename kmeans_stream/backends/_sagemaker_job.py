"""A SageMaker training job's life through boto3: the AWS session, the request, the wait (with a
progress line, CloudWatch logs and Ctrl-C), and what a finished job leaves."""

from __future__ import annotations

import datetime
import logging
import os
import re
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

import numpy as np

from ..io import read_model_artifact
from ..io.s3 import split_uri

logger = logging.getLogger(__name__)

FINAL = ("Completed", "Failed", "Stopped")
LOG_GROUP = "/aws/sagemaker/TrainingJobs"
_ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/\S+$")
_JOB_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
_sleep = time.sleep  # between polls (tests put a Ctrl-C here)


class Aws:
    """One boto3 session and its clients, made on first use."""

    def __init__(self, region: str | None = None, profile: str | None = None) -> None:
        from .._optional import require

        boto3 = require("boto3", "backend='sagemaker'")
        self.session = boto3.Session(region_name=region, profile_name=profile)
        self.region = self.session.region_name
        if not self.region:
            raise ValueError(
                "backend='sagemaker' needs an AWS region: set sagemaker_options={'region': "
                "'us-east-1'} or AWS_DEFAULT_REGION, or configure one with `aws configure`"
            )
        self._clients: dict[str, Any] = {}
        self._account: str | None = None

    def client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = self.session.client(service)
        return self._clients[service]

    @property
    def account(self) -> str:
        if self._account is None:
            self._account = self.client("sts").get_caller_identity()["Account"]
        return self._account

    @property
    def default_bucket(self) -> str:
        """SageMaker's default bucket of this region and account, as the SDK named it."""
        return f"sagemaker-{self.region}-{self.account}"


ROLE_NEEDED = ("backend='sagemaker' needs role=: the IAM role (ARN or name) the training job "
               "runs as, one that SageMaker may assume and that reads and writes your bucket")


def role_arn(role: str, aws: Aws) -> str:
    """The role's ARN; a bare name (or ``path/name``) is a role of the caller's account."""
    if role.startswith("arn:"):
        if not _ROLE_ARN.match(role):
            raise ValueError(f"role={role!r} is not an IAM role ARN (arn:aws:iam::<account>:"
                             "role/<name>)")
        return role
    partition = "aws-cn" if aws.region.startswith("cn-") else "aws"
    return f"arn:{partition}:iam::{aws.account}:role/{role.strip('/')}"


def check_bucket(bucket: str, aws: Aws, *, create: bool = False) -> None:
    """Raise ValueError if `bucket` does not exist or cannot be reached (create it instead
    when `create`, as the SDK did for its default bucket)."""
    from botocore.exceptions import ClientError

    client = aws.client("s3")
    try:
        client.head_bucket(Bucket=bucket)
        return
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code not in ("404", "NoSuchBucket", "NotFound"):
            raise ValueError(f"S3 bucket {bucket!r} cannot be used: {exc}") from exc
    if not create:
        raise ValueError(f"S3 bucket {bucket!r} does not exist (region {aws.region})")
    config = {} if aws.region == "us-east-1" else {
        "CreateBucketConfiguration": {"LocationConstraint": aws.region}}
    client.create_bucket(Bucket=bucket, **config)
    logger.info("created the S3 bucket %s", bucket)


def job_name(base: str, now: datetime.datetime | None = None) -> str:
    """``<base>-YYYY-MM-DD-HH-MM-SS-mmm``, as the SDK named jobs, cut to SageMaker's 63."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    stamp = now.strftime("%Y-%m-%d-%H-%M-%S-") + f"{now.microsecond // 1000:03d}"
    return check_job_name(f"{base[: 63 - len(stamp) - 1]}-{stamp}")


def check_job_name(name: str) -> str:
    if not _JOB_NAME.match(name):
        raise ValueError(f"{name!r} is not a valid SageMaker job name: letters, digits and "
                         "single hyphens, at most 63 characters")
    return name


@dataclass
class Request:
    """What CreateTrainingJob is asked, apart from the data channels."""

    name: str
    image: str
    role_arn: str
    hyperparameters: dict[str, str]
    data_location: str  # s3:// prefix of this job's uploaded channels
    output_path: str
    instance_type: str
    instance_count: int
    options: Any  # JobOptions
    channels: list[Any] = field(default_factory=list)  # _sagemaker_data.Channel

    def to_api(self) -> dict[str, Any]:
        """The CreateTrainingJob request, as botocore validates it against the service model."""
        o = self.options
        request: dict[str, Any] = {
            "TrainingJobName": self.name,
            "AlgorithmSpecification": {"TrainingImage": self.image,
                                       "TrainingInputMode": o.input_mode},
            "RoleArn": self.role_arn,
            "HyperParameters": dict(self.hyperparameters),
            "InputDataConfig": [c.config(o.input_mode) for c in self.channels],
            "OutputDataConfig": {"S3OutputPath": self.output_path},
            "ResourceConfig": {"InstanceType": self.instance_type,
                               "InstanceCount": self.instance_count,
                               "VolumeSizeInGB": o.volume_size},
            "StoppingCondition": {"MaxRuntimeInSeconds": o.max_runtime},
        }
        if o.output_kms_key:
            request["OutputDataConfig"]["KmsKeyId"] = o.output_kms_key
        if o.volume_kms_key:
            request["ResourceConfig"]["VolumeKmsKeyId"] = o.volume_kms_key
        if o.use_spot:
            request["EnableManagedSpotTraining"] = True
            request["StoppingCondition"]["MaxWaitTimeInSeconds"] = o.max_wait or o.max_runtime
            if o.checkpoint_s3_uri:
                request["CheckpointConfig"] = {"S3Uri": o.checkpoint_s3_uri}
        if o.subnets or o.security_group_ids:
            request["VpcConfig"] = {"Subnets": list(o.subnets),
                                    "SecurityGroupIds": list(o.security_group_ids)}
        if o.tags:
            request["Tags"] = [{"Key": k, "Value": v} for k, v in o.tags]
        if o.environment:
            request["Environment"] = dict(o.environment)
        return request


# --------------------------------------------------------------------------- waiting


class Progress:
    """One line per change of (status, secondary status), with the latest status message."""

    def __init__(self, name: str, out: TextIO | None) -> None:
        self.name, self.out, self.last = name, out, None

    def show(self, description: dict[str, Any]) -> None:
        status = (description["TrainingJobStatus"], description.get("SecondaryStatus", ""))
        if status == self.last:
            return
        self.last = status
        transitions = description.get("SecondaryStatusTransitions") or [{}]
        message = transitions[-1].get("StatusMessage", "")
        line = f"{self.name}: {status[0]} - {status[1]}" + (f" ({message})" if message else "")
        logger.info(line)
        if self.out is not None:
            print(line, file=self.out, flush=True)


class LogTail:
    """The job's CloudWatch log streams, printed as they grow (``logs=True``)."""

    def __init__(self, name: str, aws: Aws, out: TextIO) -> None:
        self.name, self.client, self.out = name, aws.client("logs"), out
        self.tokens: dict[str, str | None] = {}

    def poll(self) -> None:
        from botocore.exceptions import ClientError

        try:
            streams = self.client.describe_log_streams(
                logGroupName=LOG_GROUP, logStreamNamePrefix=self.name + "/")["logStreams"]
        except ClientError:  # the group or stream does not exist until the job logs
            return
        for stream in sorted(s["logStreamName"] for s in streams):
            self._read(stream)

    def _read(self, stream: str) -> None:
        while True:
            kwargs = {"logGroupName": LOG_GROUP, "logStreamName": stream, "startFromHead": True}
            if self.tokens.get(stream):
                kwargs["nextToken"] = self.tokens[stream]
            page = self.client.get_log_events(**kwargs)
            for event in page["events"]:
                print(f"[{stream.rpartition('/')[2]}] {event['message']}", file=self.out)
            done = page.get("nextForwardToken") in (None, self.tokens.get(stream))
            self.tokens[stream] = page.get("nextForwardToken")
            if done or not page["events"]:
                return


def wait(name: str, aws: Aws, options: Any, out: TextIO) -> dict[str, Any]:
    """Poll DescribeTrainingJob until the job ends; returns its last description.

    Polls back off from ``options.poll`` seconds by half each time up to ``options.max_poll``.
    Ctrl-C asks (on a terminal) whether to stop the job, then raises KeyboardInterrupt.
    """
    client = aws.client("sagemaker")
    progress = Progress(name, out if options.progress else None)
    logs = LogTail(name, aws, out) if options.logs else None
    interval = options.poll
    try:
        while True:
            description = client.describe_training_job(TrainingJobName=name)
            progress.show(description)
            if logs is not None:
                logs.poll()
            if description["TrainingJobStatus"] in FINAL:
                return description
            _sleep(interval)
            interval = min(interval * 1.5, options.max_poll)
    except KeyboardInterrupt:
        offer_stop(name, client)
        raise


def offer_stop(name: str, client: Any, ask: Any = None) -> bool:
    """On Ctrl-C: ask whether to stop the job (on a terminal); say how to pick it up again."""
    answer = ""
    if sys.stdin is not None and sys.stdin.isatty():
        try:
            prompt = f"\nStop the SageMaker training job {name}? [y/N] "
            answer = (ask or input)(prompt).strip().lower()
        except (EOFError, KeyboardInterrupt):
            answer = ""
    if answer in ("y", "yes"):
        client.stop_training_job(TrainingJobName=name)
        print(f"stopping {name}", file=sys.stderr)
        return True
    print(f"{name} goes on running; KMeans.attach({name!r}) picks up its result",
          file=sys.stderr)
    return False


# --------------------------------------------------------------------------- the result


def check_ended(description: dict[str, Any]) -> None:
    """Raise RuntimeError for a job that failed or was stopped, with SageMaker's reason."""
    name, status = description["TrainingJobName"], description["TrainingJobStatus"]
    if status == "Failed":
        reason = description.get("FailureReason", "no reason given")
        raise RuntimeError(f"SageMaker training job {name} failed: {reason}")
    if status == "Stopped":
        raise RuntimeError(f"SageMaker training job {name} was stopped before it finished")


def final_metrics(description: dict[str, Any]) -> dict[str, float]:
    """The job's final metrics, such as ``{"train:msd": 0.07, "test:msd": ...}``."""
    return {m["MetricName"]: float(m["Value"])
            for m in description.get("FinalMetricDataList") or []}


def download_model(uri: str, aws: Aws) -> tuple[np.ndarray, dict | None]:
    """The centers (and kmeans_stream's state, from kmeans_stream's own image) of the job's
    model.tar.gz at `uri`."""
    bucket, key = split_uri(uri)
    with tempfile.TemporaryDirectory() as folder:
        local = os.path.join(folder, "model.tar.gz")
        aws.client("s3").download_file(bucket, key, local)
        return read_model_artifact(local)
