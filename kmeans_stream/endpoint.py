"""A fitted KMeans on a SageMaker endpoint, served by SageMaker's own K-Means image.

`deploy` uploads ``KMeans.save``'s model.tar.gz (or reuses a training job's), then creates a
Model, an EndpointConfig and an Endpoint through boto3; `Predictor` sends rows as CSV, JSON or
RecordIO-protobuf and parses SageMaker's answers into ``(closest_cluster,
distance_to_cluster)`` arrays (`kmeans_stream.io.inference`); `Predictor.delete_endpoint` takes
it all down again.
"""

from __future__ import annotations

import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from .backends import _sagemaker_job as job
from .backends._sagemaker_tables import INFERENCE_INSTANCE_TYPES
from .backends.sagemaker import JobOptions, image_uri
from .io.inference import CONTENT_TYPES, decode_response, encode_request, media_type

__all__ = ["Predictor", "deploy"]

logger = logging.getLogger(__name__)

# Rows per request are chosen so that a body stays under SageMaker's 6 MB payload limit.
MAX_BODY_BYTES = 5 * 1024 * 1024


def deploy(model: Any, *, role: str | None = None, instance_type: str = "ml.m5.large",
           initial_instance_count: int = 1, endpoint_name: str | None = None,
           content_type: str = "text/csv", accept: str = "application/json",
           wait: bool = True, sagemaker_options: dict | None = None) -> Predictor:
    """Serve `model` on a SageMaker endpoint running SageMaker's K-Means image.

    Parameters
    ----------
    model : KMeans
        Fitted. A model trained by backend='sagemaker' whose centers were not changed since
        reuses the job's ``model_data_``; any other is saved and uploaded.
    role : str, optional
        The IAM role of the endpoint's model; by default the model's own ``role``.
    instance_type, initial_instance_count
        The endpoint's instances.
    endpoint_name : str, optional
        Also the name of its Model and EndpointConfig; by default a timestamped one.
    content_type, accept : str
        What the returned `Predictor` sends and asks for.
    wait : bool
        Wait until the endpoint is InService (or raise with its FailureReason).
    sagemaker_options : dict, optional
        As for training (region, profile, bucket, prefix, base_job_name, tags, output_kms_key
        for the endpoint's storage, poll, max_poll, progress); by default the model's own.

    Returns
    -------
    Predictor
    """
    model._check_fitted()
    options = JobOptions.from_mapping(
        sagemaker_options if sagemaker_options is not None else model.sagemaker_options)
    role = role or model.role
    if not role:
        raise ValueError("deploy needs role=: the IAM role SageMaker's model runs as")
    if instance_type not in INFERENCE_INSTANCE_TYPES:
        raise ValueError(f"instance_type={instance_type!r} is not offered for SageMaker "
                         f"K-Means endpoints; use one of {sorted(INFERENCE_INSTANCE_TYPES)}")
    if media_type(content_type) not in CONTENT_TYPES:
        raise ValueError(f"content_type={content_type!r} is not one of {CONTENT_TYPES}")
    aws = job.Aws(options.region, options.profile)
    arn = job.role_arn(role, aws)
    name = endpoint_name or job.job_name(options.base_job_name)
    data_url = _model_data(model, name, options, aws)
    _create(name, aws.client("sagemaker"), image_uri(aws.region), data_url, arn,
            instance_type, initial_instance_count, options)
    predictor = Predictor(name, content_type=content_type, accept=accept, aws=aws)
    if wait:
        predictor.wait(options)
    return predictor


def _model_data(model: Any, name: str, options: JobOptions, aws: job.Aws) -> str:
    """The s3:// URI of the model's model.tar.gz: the training job's, or a fresh upload."""
    trained = getattr(model, "model_data_", None)
    if trained:  # a refit drops it; partial_fit cannot continue a SageMaker model
        return trained
    bucket = options.bucket or aws.default_bucket
    job.check_bucket(bucket, aws, create=options.bucket is None)
    key = f"{options.prefix}/models/{name}/model.tar.gz"
    with tempfile.TemporaryDirectory() as folder:
        path = model.save(Path(folder) / "model.tar.gz")
        extra = {"ServerSideEncryption": "AES256"} if options.encrypt else {}
        aws.client("s3").upload_file(str(path), bucket, key, ExtraArgs=extra)
    return f"s3://{bucket}/{key}"


def _create(name: str, client: Any, image: str, data_url: str, role_arn: str,
            instance_type: str, count: int, options: JobOptions) -> None:
    """Model, EndpointConfig and Endpoint, all named `name`; what was made is deleted again
    if a later step fails."""
    tags = [{"Key": k, "Value": v} for k, v in options.tags]
    made: list[tuple[str, dict]] = []
    try:
        client.create_model(ModelName=name, ExecutionRoleArn=role_arn,
                            PrimaryContainer={"Image": image, "ModelDataUrl": data_url},
                            **({"Tags": tags} if tags else {}))
        made.append(("delete_model", {"ModelName": name}))
        variant = {"VariantName": "AllTraffic", "ModelName": name,
                   "InitialInstanceCount": count, "InstanceType": instance_type,
                   "InitialVariantWeight": 1.0}
        config = {"EndpointConfigName": name, "ProductionVariants": [variant]}
        if options.output_kms_key:
            config["KmsKeyId"] = options.output_kms_key
        client.create_endpoint_config(**config, **({"Tags": tags} if tags else {}))
        made.append(("delete_endpoint_config", {"EndpointConfigName": name}))
        client.create_endpoint(EndpointName=name, EndpointConfigName=name,
                               **({"Tags": tags} if tags else {}))
    except BaseException:
        for action, kwargs in reversed(made):
            getattr(client, action)(**kwargs)
        raise
    logger.info("created the SageMaker endpoint %s", name)


class Predictor:
    """Rows in, SageMaker K-Means' answers out, for one endpoint.

    Parameters
    ----------
    endpoint_name : str
    content_type : str
        ``text/csv`` (default), ``application/json``, ``application/jsonlines`` or
        ``application/x-recordio-protobuf`` (what SDK 2.x's KMeansPredictor sent).
    accept : str
        The answer's type, any of the same four.
    region, profile : str, optional
        The boto3 session's.
    """

    def __init__(self, endpoint_name: str, *, content_type: str = "text/csv",
                 accept: str = "application/json", region: str | None = None,
                 profile: str | None = None, aws: Any = None) -> None:
        self.endpoint_name = endpoint_name
        self.content_type = content_type
        self.accept = accept
        self._aws = aws or job.Aws(region, profile)

    def predict(self, X: Any) -> tuple[np.ndarray, np.ndarray]:
        """``(closest_cluster, distance_to_cluster)`` of every row of X (int32, float32).

        X is a 2-D array or scipy sparse matrix (a 1-D array is one row); it is sent in as
        many requests as keep each body under SageMaker's 6 MB limit.

        Raises
        ------
        ValueError
            When the endpoint refuses the rows (SageMaker's ModelError, such as "unable to
            evaluate payload provided" for a wrong number of features), with its message.
        """
        X = np.atleast_2d(X) if not hasattr(X, "tocsr") else X.tocsr()
        if X.shape[0] == 0:
            return np.zeros(0, np.int32), np.zeros(0, np.float32)
        runtime = self._aws.client("sagemaker-runtime")
        parts = []
        for rows in self._chunks(X):
            parts.append(self._invoke(runtime, encode_request(X[rows], self.content_type)))
        return (np.concatenate([p[0] for p in parts]),
                np.concatenate([p[1] for p in parts]))

    def _invoke(self, runtime: Any, body: bytes) -> tuple[np.ndarray, np.ndarray]:
        from botocore.exceptions import ClientError

        try:
            answer = runtime.invoke_endpoint(EndpointName=self.endpoint_name, Body=body,
                                             ContentType=self.content_type, Accept=self.accept)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ModelError":
                raise
            message = exc.response["Error"].get("Message", str(exc))
            raise ValueError(f"endpoint {self.endpoint_name}: {message}") from exc
        return decode_response(answer["Body"].read(), self.accept)

    def _chunks(self, X: Any):
        """Row slices whose encoded bodies stay under MAX_BODY_BYTES (sized on the first
        row's encoding, with room to spare)."""
        per_row = max(1, len(encode_request(X[:1], self.content_type)))
        rows = max(1, MAX_BODY_BYTES // (2 * per_row))
        for start in range(0, X.shape[0], rows):
            yield slice(start, start + rows)

    def wait(self, options: JobOptions | None = None) -> None:
        """Poll DescribeEndpoint until InService; raise RuntimeError with SageMaker's
        FailureReason if creating it failed."""
        options = options or JobOptions()
        client = self._aws.client("sagemaker")
        interval, last = options.poll, None
        while True:
            description = client.describe_endpoint(EndpointName=self.endpoint_name)
            status = description["EndpointStatus"]
            if status != last and options.progress:
                print(f"{self.endpoint_name}: {status}", file=sys.stderr, flush=True)
            last = status
            if status == "InService":
                return
            if status in ("Failed", "OutOfService"):
                reason = description.get("FailureReason", "no reason given")
                raise RuntimeError(f"SageMaker endpoint {self.endpoint_name} is {status}: "
                                   f"{reason}")
            time.sleep(interval)
            interval = min(interval * 1.5, options.max_poll)

    def delete_endpoint(self, delete_model: bool = True) -> None:
        """Delete the endpoint, its EndpointConfig and (by default) its Model."""
        client = self._aws.client("sagemaker")
        config = client.describe_endpoint(
            EndpointName=self.endpoint_name)["EndpointConfigName"]
        models = [v["ModelName"] for v in client.describe_endpoint_config(
            EndpointConfigName=config)["ProductionVariants"]]
        client.delete_endpoint(EndpointName=self.endpoint_name)
        client.delete_endpoint_config(EndpointConfigName=config)
        if delete_model:
            for name in models:
                client.delete_model(ModelName=name)
        logger.info("deleted the SageMaker endpoint %s", self.endpoint_name)

