"""The whole fit as a SageMaker training job on SageMaker's own K-Means image: a remote trainer.

``KMeans(k=8, backend="sagemaker", role=..., instance_type="ml.c5.xlarge", instance_count=4)``
sends the same hyperparameters (as SDK 2.x's KMeans sent them) to ``CreateTrainingJob`` through
boto3, waits, downloads ``model.tar.gz`` and hands the centers back as an ordinary fit; the
estimator does not know the fit ran elsewhere. boto3 is imported here only.

Everything that can be checked is checked before anything is uploaded or any job is created:
the role, the region, the instance type, the bucket, the options, the data.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from ..hyperparameters import job_strings
from ..io.s3 import is_s3_uri, split_uri
from . import _sagemaker_data as data
from . import _sagemaker_job as job
from ._sagemaker_tables import (
    KMEANS_REGISTRIES,
    KMEANS_REPOSITORY,
    KMEANS_TAG,
    TRAINING_INSTANCE_TYPES,
)
from .base import FitResult, Reduction

__all__ = ["JobOptions", "SageMakerTrainer", "image_uri"]

logger = logging.getLogger(__name__)


def image_uri(region: str) -> str:
    """SageMaker's K-Means image (``kmeans:1``) in `region`.

    Raises
    ------
    ValueError
        For a region where SageMaker does not offer the algorithm; the message lists those
        where it does.
    """
    if region not in KMEANS_REGISTRIES:
        raise ValueError(
            f"SageMaker's K-Means image is not offered in region {region!r}; it is in "
            f"{', '.join(sorted(KMEANS_REGISTRIES))}. Pass sagemaker_options={{'image_uri': "
            "...}} for an image of your own."
        )
    domain = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    return (f"{KMEANS_REGISTRIES[region]}.dkr.ecr.{region}.{domain}/"
            f"{KMEANS_REPOSITORY}:{KMEANS_TAG}")


@dataclass(frozen=True)
class JobOptions:
    """The settings of a training job beyond role, instance type and count
    (``sagemaker_options=``); every key is optional.

    Attributes
    ----------
    region, profile : str
        The boto3 session's; by default boto3's usual chain (``AWS_DEFAULT_REGION``, config).
    bucket : str
        Where data and models go; by default SageMaker's ``sagemaker-<region>-<account>``
        (created when missing, as the SDK did). A bucket named here must exist.
    prefix : str
        Key prefix under the bucket, ``"kmeans-stream"``.
    data_location, output_path : str
        ``s3://`` prefixes for the uploaded channels and for the job's output; by default
        under ``s3://<bucket>/<prefix>/``.
    image_uri : str
        The training image; by default SageMaker's K-Means image of the region.
    algorithm_knobs : bool
        Also send the local knobs (random_state, shuffle, reassignment_ratio, shuffle_buffer):
        for kmeans_stream's own image (the Dockerfile), which reads them. SageMaker's image
        does not know them.
    job_name, base_job_name : str
        The job's exact name, or the base of a timestamped one (``"kmeans-stream"``).
    volume_size, max_runtime : int
        GB of storage per instance (30) and the runtime limit in seconds (86400).
    use_spot, max_wait, checkpoint_s3_uri
        Managed spot training, its wait limit (default max_runtime) and checkpoint prefix.
    volume_kms_key, output_kms_key : str
        KMS keys for the instances' storage and the output.
    subnets, security_group_ids : list of str
        The VPC configuration.
    tags : dict or list of (key, value)
    environment : dict
        Environment variables of the training container.
    input_mode : {"File", "Pipe"}
    encrypt : bool
        Upload the data with S3 server-side encryption (AES256).
    logs, progress : bool
        Print the job's CloudWatch logs (False) and a line per status change (True).
    poll, max_poll : float
        Seconds between status polls: the first, and the most after backing off.
    """

    region: str | None = None
    profile: str | None = None
    bucket: str | None = None
    prefix: str = "kmeans-stream"
    data_location: str | None = None
    output_path: str | None = None
    image_uri: str | None = None
    algorithm_knobs: bool = False
    job_name: str | None = None
    base_job_name: str = "kmeans-stream"
    volume_size: int = 30
    max_runtime: int = 86400
    use_spot: bool = False
    max_wait: int | None = None
    checkpoint_s3_uri: str | None = None
    volume_kms_key: str | None = None
    output_kms_key: str | None = None
    subnets: tuple[str, ...] = ()
    security_group_ids: tuple[str, ...] = ()
    tags: tuple[tuple[str, str], ...] = ()
    environment: tuple[tuple[str, str], ...] = ()
    input_mode: str = "File"
    encrypt: bool = False
    logs: bool = False
    progress: bool = True
    poll: float = 5.0
    max_poll: float = 60.0

    @classmethod
    def from_mapping(cls, options: Mapping[str, Any] | None) -> JobOptions:
        """From ``sagemaker_options``; an unknown key or a bad value is a ValueError."""
        options = dict(options or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ValueError(f"unknown sagemaker_options {unknown}; the known ones are "
                             f"{sorted(known)}")
        for key in ("subnets", "security_group_ids"):
            if key in options:
                options[key] = tuple(options[key])
        for key in ("tags", "environment"):
            if key in options:
                value = options[key]
                pairs = value.items() if isinstance(value, Mapping) else value
                options[key] = tuple((str(k), str(v)) for k, v in pairs)
        made = cls(**options)
        made.check()
        return made

    def check(self) -> None:
        if self.input_mode not in ("File", "Pipe"):
            raise ValueError(f"sagemaker_options input_mode must be 'File' or 'Pipe'; got "
                             f"{self.input_mode!r}")
        for key in ("volume_size", "max_runtime"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"sagemaker_options {key} must be an int >= 1; got {value!r}")
        if self.max_wait is not None and self.max_wait < self.max_runtime:
            raise ValueError("sagemaker_options max_wait must be at least max_runtime")
        for key in ("data_location", "output_path", "checkpoint_s3_uri"):
            value = getattr(self, key)
            if value is not None and not is_s3_uri(value):
                raise ValueError(f"sagemaker_options {key} must be an s3:// URI; got {value!r}")
        if self.job_name is not None:
            job.check_job_name(self.job_name)
        if not (0 < self.poll <= self.max_poll):
            raise ValueError("sagemaker_options poll must be > 0 and at most max_poll")


class SageMakerTrainer:
    """The fit as a SageMaker training job (`kmeans_stream.backends.base.Trainer`).

    Parameters
    ----------
    role, instance_type, instance_count, sagemaker_options
        The estimator's parameters of the same names.
    """

    def __init__(self, role: str | None = None, instance_type: str | None = None,
                 instance_count: int = 1, sagemaker_options: Mapping | None = None) -> None:
        self.role = role
        self.instance_type = instance_type
        self.instance_count = instance_count
        self.options = JobOptions.from_mapping(sagemaker_options)

    def fit(self, source: Any, params: Any, rng: np.random.Generator,
            test: Any = None) -> FitResult:
        """Upload, train, wait, download; see the module's docstring."""
        aws, request = self._prepare(source, params, test)
        try:
            self._upload(source, test, request, aws)
            n_features = _check_widths(request.channels, params.feature_dim)
            request.hyperparameters = job_strings(
                dict(params.hyperparameters), n_features, knobs=self.options.algorithm_knobs)
            aws.client("sagemaker").create_training_job(**request.to_api())
        except BaseException:  # what the channels uploaded, the test's after the train's too
            data.delete([uri for c in request.channels for uri in c.written], aws.client("s3"))
            raise
        logger.info("created the SageMaker training job %s", request.name)
        return self._finish(request.name, aws)

    def attach(self, name: str) -> tuple[FitResult, dict[str, Any]]:
        """A job started elsewhere: waits for it; returns its result and its description."""
        aws = job.Aws(self.options.region, self.options.profile)
        return self._finish(name, aws), aws.client("sagemaker").describe_training_job(
            TrainingJobName=name)

    # ------------------------------------------------------------------ steps

    def _prepare(self, source: Any, params: Any, test: Any) -> tuple[job.Aws, job.Request]:
        """Every check that needs no upload, in the order a user would fix them."""
        if not self.role:
            raise ValueError(job.ROLE_NEEDED)
        if not self.instance_type:
            raise ValueError("backend='sagemaker' needs instance_type=, such as 'ml.c5.xlarge'")
        if self.instance_type not in TRAINING_INSTANCE_TYPES:
            raise ValueError(
                f"instance_type={self.instance_type!r} is not offered for SageMaker K-Means "
                f"training; use one of {', '.join(sorted(TRAINING_INSTANCE_TYPES))}"
            )
        for name, channel in (("train", source), ("test", test)):
            reason = "" if channel is None else data.describe_channel(channel, name)
            if reason:
                raise ValueError(f"backend='sagemaker': {reason}")
        aws = job.Aws(self.options.region, self.options.profile)
        image = self.options.image_uri or image_uri(aws.region)
        arn = job.role_arn(self.role, aws)
        name = self.options.job_name or job.job_name(self.options.base_job_name)
        data_location, output_path = self._locations(aws)
        return aws, job.Request(name, image, arn, {}, f"{data_location}/{name}", output_path,
                                self.instance_type, self.instance_count, self.options)

    def _locations(self, aws: job.Aws) -> tuple[str, str]:
        """Where the data and the output go; their buckets checked to exist (the default
        bucket created when missing, as the SDK did)."""
        o = self.options
        named = o.bucket or next(
            (split_uri(uri)[0] for uri in (o.output_path, o.data_location) if uri), None)
        bucket = named or aws.default_bucket
        job.check_bucket(bucket, aws, create=named is None)
        for uri in (o.output_path, o.data_location):
            if uri and split_uri(uri)[0] != bucket:
                job.check_bucket(split_uri(uri)[0], aws)
        data_location = o.data_location or f"s3://{bucket}/{o.prefix}/record-sets"
        return data_location.rstrip("/"), o.output_path or f"s3://{bucket}/{o.prefix}/output"

    def _upload(self, source: Any, test: Any, request: job.Request, aws: job.Aws) -> None:
        """The train (and test) channels, added to `request.channels` as each is made."""
        for channel, src, shards, distribution in (
            ("train", source, self.instance_count, "ShardedByS3Key"),
            ("test", test, 1, "FullyReplicated"),
        ):
            if src is None:
                continue
            if src.kind == "location" and is_s3_uri(src.data):
                made = data.s3_channel(src, channel, distribution, aws.client("s3"))
            else:
                made = data.upload_channel(src, channel, f"{request.data_location}/{channel}/",
                                           shards, distribution, aws.client("s3"),
                                           encrypt=self.options.encrypt)
            request.channels.append(made)

    def _finish(self, name: str, aws: job.Aws) -> FitResult:
        description = job.wait(name, aws, self.options, sys.stderr)
        job.check_ended(description)
        metrics = job.final_metrics(description)
        uri = description["ModelArtifacts"]["S3ModelArtifacts"]
        centers, state = job.download_model(uri, aws)
        return _result(centers, state, metrics, name, uri)


def _check_widths(channels: list, feature_dim: int | None) -> int:
    """The train channel's number of features, checked against the test channel's and
    ``feature_dim``."""
    n_features = channels[0].n_features
    for channel in channels[1:]:
        if channel.n_features != n_features:
            raise ValueError(f"the {channel.name} channel has {channel.n_features} features, "
                             f"the train channel {n_features}")
    if feature_dim is not None and feature_dim != n_features:
        raise ValueError(f"feature_dim={feature_dim} but the data has {n_features} features")
    return n_features


def _result(centers: np.ndarray, state: dict | None, metrics: dict[str, float], name: str,
            uri: str) -> FitResult:
    """A FitResult from a job's model: kmeans_stream's own image leaves its counts and
    train_msd in the state; SageMaker's image leaves the centers, train:msd in the metrics."""
    k, n_features = centers.shape
    weights = np.full(k, np.nan)
    train_msd = metrics.get("train:msd", float("nan"))
    n_iter = 0
    if state is not None and len(state.get("counts", ())) == k:
        weights = np.asarray(state["counts"], dtype=np.float64)
        train_msd = float(state.get("train_msd", train_msd))
        n_iter = int(state.get("reduction_n_iter") or 0)
        centers = np.asarray(state.get("cluster_centers", centers), dtype=np.float64)
    reduction = Reduction(np.asarray(centers, dtype=np.float64), weights, train_msd, n_iter)
    return FitResult(reduction, None, n_features, np.dtype(np.float32), metrics=metrics,
                     attributes={"training_job_name_": name, "model_data_": uri})
