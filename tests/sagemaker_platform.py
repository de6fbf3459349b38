"""SageMaker's training platform, played in front of moto's real AWS API server.

Every AWS call of a test goes over HTTP to `Platform`, a WSGI application that hands it to
moto's server application (S3, STS, CloudWatch Logs and the SageMaker API, with botocore's
request validation on the client side) and steps in where moto cannot run a job:

- CreateTrainingJob: after moto has recorded the job, the platform does what SageMaker does
  with it: downloads each channel's S3 data into a temporary ``/opt/ml`` layout, writes
  ``hyperparameters.json``, ``inputdataconfig.json`` and ``resourceconfig.json``, runs the
  ``kmeans-stream train`` entry point there (a subprocess), writes its output to the job's
  CloudWatch log stream, tars ``/opt/ml/model`` into the job's ``model.tar.gz`` on S3, and reads
  the ``#quality_metric`` lines into the final metrics (or ``/opt/ml/output/failure`` into the
  FailureReason).
- DescribeTrainingJob: moto's answer, with the job's status walking InProgress (Starting,
  Downloading, Training, Uploading) to its end over successive calls, and its outcome.
- StopTrainingJob: the job ends Stopped.
- InvokeEndpoint (sagemaker-runtime): the endpoint's model (its ModelDataUrl, as moto recorded
  CreateModel) served by kmeans_stream's serving application, which answers in SageMaker
  K-Means' formats; a refusal comes back as SageMaker's ModelError.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import boto3
from moto.server import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import make_server

METRIC = re.compile(r"#quality_metric: host=\S+, (train|test) (msd|ssd) <loss>=(\S+)")
INVOCATIONS = re.compile(r"^/endpoints/([^/]+)/invocations$")
STEPS = [("InProgress", "Starting", "Preparing the instances for training"),
         ("InProgress", "Downloading", "Downloading input data"),
         ("InProgress", "Training", "Training image download completed. Training in progress."),
         ("InProgress", "Uploading", "Uploading generated training model")]


@dataclass
class Job:
    name: str
    request: dict
    status: str = "Completed"
    failure: str | None = None
    metrics: dict = field(default_factory=dict)
    describes: int = 0
    hold: bool = False  # stays InProgress until stopped
    stopped: bool = False
    stdout: str = ""


class Platform:
    """The WSGI application; `jobs` holds what each job was asked and how it ended."""

    def __init__(self) -> None:
        self.moto = DomainDispatcherApplication(create_backend_app)
        self.jobs: dict[str, Job] = {}
        self.requests: list[tuple[str, dict]] = []  # (X-Amz-Target, body) of JSON API calls
        self.hold_next = False
        self.url = ""

    # ------------------------------------------------------------------ WSGI

    def __call__(self, environ, start_response):
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        invoked = INVOCATIONS.match(environ.get("PATH_INFO", ""))
        if invoked and environ["REQUEST_METHOD"] == "POST":
            return self._invoke(invoked[1], body, environ, start_response)
        if target.startswith("SageMaker."):
            action = target.split(".", 1)[1]
            payload = json.loads(body or b"{}")
            self.requests.append((action, payload))
            if action == "StopTrainingJob":
                return self._stop(payload, start_response)
            status, headers, out = self._forward(environ)
            if action == "CreateTrainingJob" and status.startswith("200"):
                self._run(payload)
            if action == "DescribeTrainingJob" and status.startswith("200"):
                out = self._describe(json.loads(out))
                headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
                headers.append(("Content-Length", str(len(out))))
            start_response(status, headers)
            return [out]
        return self.moto(environ, start_response)

    def _forward(self, environ) -> tuple[str, list, bytes]:
        got = {}

        def start(status, headers, exc_info=None):
            got["status"], got["headers"] = status, headers

        out = b"".join(self.moto(environ, start))
        return got["status"], got["headers"], out

    def _stop(self, payload, start_response):
        job = self.jobs[payload["TrainingJobName"]]
        job.stopped = True
        start_response("200 OK", [("Content-Type", "application/x-amz-json-1.1"),
                                  ("Content-Length", "2")])
        return [b"{}"]

    def _describe(self, answer: dict) -> bytes:
        job = self.jobs[answer["TrainingJobName"]]
        job.describes += 1
        if job.stopped:
            status, secondary, message = "Stopped", "Stopped", "Training job stopped by user"
        elif job.hold or job.describes <= len(STEPS):
            status, secondary, message = STEPS[min(job.describes, len(STEPS)) - 1]
        else:
            status = secondary = job.status
            message = "Training job completed" if job.status == "Completed" else job.failure
        answer.update(TrainingJobStatus=status, SecondaryStatus=secondary,
                      SecondaryStatusTransitions=[{"Status": secondary,
                                                   "StartTime": answer["CreationTime"],
                                                   "StatusMessage": message}],
                      FinalMetricDataList=[
                          {"MetricName": k, "Value": v, "Timestamp": answer["CreationTime"]}
                          for k, v in job.metrics.items()] if status == "Completed" else [],
                      BillableTimeInSeconds=1)
        if status == "Failed":
            answer["FailureReason"] = job.failure
        return json.dumps(answer).encode()

    def _invoke(self, endpoint: str, body: bytes, environ, start_response):
        """SageMaker's runtime in front of the endpoint's container (kmeans_stream's serving
        application on the endpoint's model): a refusal by the container comes back as
        SageMaker's ModelError (424)."""
        from kmeans_stream import load
        from kmeans_stream.serve import Application

        sagemaker = self.client("sagemaker")
        config = sagemaker.describe_endpoint(EndpointName=endpoint)["EndpointConfigName"]
        variant = sagemaker.describe_endpoint_config(
            EndpointConfigName=config)["ProductionVariants"][0]
        url = sagemaker.describe_model(ModelName=variant["ModelName"])[
            "PrimaryContainer"]["ModelDataUrl"]
        bucket, _, key = url[5:].partition("/")
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder, "model.tar.gz")
            self.client("s3").download_file(bucket, key, str(path))
            container = Application(load(path))
        got = {}

        def start(status, headers, exc_info=None):
            got["status"], got["headers"] = status, headers

        inner = {"REQUEST_METHOD": "POST", "PATH_INFO": "/invocations",
                 "CONTENT_TYPE": environ.get("CONTENT_TYPE", ""),
                 "CONTENT_LENGTH": str(len(body)), "wsgi.input": io.BytesIO(body),
                 "HTTP_ACCEPT": environ.get("HTTP_ACCEPT", "application/json")}
        out = b"".join(container(inner, start))
        if got["status"].startswith("200"):
            start_response("200 OK", [(k, v) for k, v in got["headers"]
                                      if k.lower() in ("content-type", "content-length")])
            return [out]
        message = json.dumps({"ErrorCode": "CLIENT_ERROR_FROM_MODEL",
                              "OriginalStatusCode": int(got["status"][:3]),
                              "Message": out.decode()}).encode()
        start_response("424 Failed Dependency", [("Content-Type", "application/json"),
                                                 ("x-amzn-ErrorType", "ModelError"),
                                                 ("Content-Length", str(len(message)))])
        return [message]

    # ------------------------------------------------------------------ running a job

    def client(self, service: str):
        return boto3.client(service, endpoint_url=self.url, region_name="us-east-1")

    def _run(self, request: dict) -> None:
        job = Job(request["TrainingJobName"], request, hold=self.hold_next)
        self.hold_next = False
        self.jobs[job.name] = job
        with tempfile.TemporaryDirectory() as root:
            self._layout(Path(root), request)
            env = {**os.environ, "KMEANS_STREAM_OPT_ML": root,
                   "TRAINING_JOB_NAME": job.name}
            done = subprocess.run([sys.executable, "-m", "kmeans_stream.cli", "train"],
                                  capture_output=True, text=True, env=env, timeout=300)
            job.stdout = done.stdout + done.stderr
            self._log(job)
            failure = Path(root, "output", "failure")
            if done.returncode != 0:
                job.status = "Failed"
                job.failure = (failure.read_text()[:1024] if failure.exists()
                               else f"AlgorithmError: exit code {done.returncode}")
                return
            self._upload_model(Path(root, "model"), request, job)
            job.metrics = {f"{m[1]}:{m[2]}": float(m[3]) for m in METRIC.finditer(done.stdout)}

    def _layout(self, root: Path, request: dict) -> None:
        config = root / "input" / "config"
        config.mkdir(parents=True)
        (root / "model").mkdir()
        (root / "output").mkdir()
        (config / "hyperparameters.json").write_text(json.dumps(request["HyperParameters"]))
        (config / "resourceconfig.json").write_text(json.dumps(
            {"current_host": "algo-1", "hosts": ["algo-1"], "network_interface_name": "eth0"}))
        channels = {}
        for channel in request["InputDataConfig"]:
            source = channel["DataSource"]["S3DataSource"]
            channels[channel["ChannelName"]] = {
                "ContentType": channel.get("ContentType", ""),
                "TrainingInputMode": channel.get("InputMode", "File"),
                "S3DistributionType": source["S3DataDistributionType"],
                "RecordWrapperType": "None"}
            folder = root / "input" / "data" / channel["ChannelName"]
            self._download(source, folder)
            if channel.get("InputMode") == "Pipe":  # one "pipe" per epoch: the files joined
                epochs = int(request["HyperParameters"].get("epochs", "1"))
                self._pipes(folder, epochs)
        (config / "inputdataconfig.json").write_text(json.dumps(channels))

    def _download(self, source: dict, folder: Path) -> None:
        s3 = self.client("s3")
        folder.mkdir(parents=True)
        bucket, _, key = source["S3Uri"][5:].partition("/")
        if source["S3DataType"] == "ManifestFile":
            manifest = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
            prefix = manifest[0]["prefix"]
            uris = [prefix + name for name in manifest[1:]]
        else:
            listing = s3.list_objects_v2(Bucket=bucket, Prefix=key).get("Contents", [])
            uris = [f"s3://{bucket}/{o['Key']}" for o in listing]
        for uri in uris:
            b, _, k = uri[5:].partition("/")
            s3.download_file(b, k, str(folder / k.rsplit("/", 1)[-1]))

    @staticmethod
    def _pipes(folder: Path, epochs: int) -> None:
        joined = b"".join(path.read_bytes() for path in sorted(folder.iterdir()))
        for path in folder.iterdir():
            path.unlink()
        folder.rmdir()
        for epoch in range(epochs):
            Path(f"{folder}_{epoch}").write_bytes(joined)

    def _upload_model(self, model: Path, request: dict, job: Job) -> None:
        out = io.BytesIO()
        with tarfile.open(fileobj=out, mode="w:gz") as tar:
            for path in sorted(model.iterdir()):
                tar.add(path, arcname=path.name)
        uri = (f"{request['OutputDataConfig']['S3OutputPath'].rstrip('/')}/{job.name}"
               "/output/model.tar.gz")
        bucket, _, key = uri[5:].partition("/")
        self.client("s3").put_object(Bucket=bucket, Key=key, Body=out.getvalue())

    def _log(self, job: Job) -> None:
        logs = self.client("logs")
        group = "/aws/sagemaker/TrainingJobs"
        try:
            logs.create_log_group(logGroupName=group)
        except logs.exceptions.ResourceAlreadyExistsException:
            pass
        stream = f"{job.name}/algo-1-{int(time.time())}"
        logs.create_log_stream(logGroupName=group, logStreamName=stream)
        now = int(time.time() * 1000)
        events = [{"timestamp": now, "message": line}
                  for line in job.stdout.splitlines() if line.strip()]
        if events:
            logs.put_log_events(logGroupName=group, logStreamName=stream, logEvents=events)


class Server:
    """`Platform` served on a free loopback port in a thread."""

    def __init__(self) -> None:
        self.platform = Platform()
        self.server = make_server("127.0.0.1", 0, self.platform, threaded=True)
        self.platform.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Platform:
        self.thread.start()
        return self.platform

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.thread.join()
