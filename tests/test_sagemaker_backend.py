"""backend='sagemaker' against a played SageMaker platform (tests/sagemaker_platform.py) in
front of moto's real AWS API server: no AWS account needed."""

from __future__ import annotations

import io
import itertools
import json
import re

import numpy as np
import pytest

import kmeans_stream
from kmeans_stream import InvalidHyperparameterError, KMeans
from kmeans_stream.io import read_recordio

boto3 = pytest.importorskip("boto3")
pytest.importorskip("moto.server")
botocore_validate = pytest.importorskip("botocore.validate")

from sagemaker_platform import Server  # noqa: E402

ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"
OWN_IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/kmeans-stream:latest"
PARITY = {"shuffle": False, "reassignment_ratio": 0, "random_state": 7}
_buckets = itertools.count()


@pytest.fixture(scope="module")
def platform():
    with Server() as played:
        yield played


@pytest.fixture
def aws(platform, monkeypatch):
    """Every boto3 client goes to the platform; a fresh bucket per test."""
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": "us-east-1",
                       "AWS_ENDPOINT_URL": platform.url}.items():
        monkeypatch.setenv(key, value)
    for key in ("AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "AWS_REGION"):
        monkeypatch.delenv(key, raising=False)
    bucket = f"kmeans-test-{next(_buckets)}"
    platform.client("s3").create_bucket(Bucket=bucket)
    platform.requests.clear()
    return platform, bucket


def blobs(n=600, seed=3):
    rng = np.random.default_rng(seed)
    parts = [rng.normal(loc, 0.3, size=(n // 3, 4)) for loc in (0.0, 4.0, 8.0)]
    return np.concatenate(parts).astype(np.float32)


def remote(bucket, **params):
    options = {"bucket": bucket, "poll": 0.01, "max_poll": 0.02,
               **params.pop("sagemaker_options", {})}
    return KMeans(**{"backend": "sagemaker", "role": ROLE, "instance_type": "ml.c5.xlarge",
                     "sagemaker_options": options, **params})


def own_image(bucket, **params):
    """kmeans_stream's own image, which is sent the seed and the parity knobs."""
    options = {"image_uri": OWN_IMAGE, "algorithm_knobs": True,
               **params.pop("sagemaker_options", {})}
    return remote(bucket, sagemaker_options=options, **params)


def created(platform):
    return [body for action, body in platform.requests if action == "CreateTrainingJob"]


def objects(platform, bucket):
    listing = platform.client("s3").list_objects_v2(Bucket=bucket).get("Contents", [])
    return sorted(o["Key"] for o in listing)


# --------------------------------------------------------------------------- the same fit


def test_the_job_gives_the_centers_of_a_local_fit_with_the_same_seed(aws, tmp_path):
    platform, bucket = aws
    X = blobs()
    params = {"k": 3, "mini_batch_size": 100, "epochs": 2, **PARITY}
    model = own_image(bucket, **params).fit(X)
    local = KMeans(backend="numpy", **params).fit(X)
    np.testing.assert_allclose(model.cluster_centers_, local.cluster_centers_, rtol=1e-5)
    np.testing.assert_array_equal(model.predict(X), local.predict(X))
    np.testing.assert_array_equal(model.labels_, local.labels_)
    assert model.training_job_name_.startswith("kmeans-stream-")
    assert model.model_data_ == (f"s3://{bucket}/kmeans-stream/output/"
                                 f"{model.training_job_name_}/output/model.tar.gz")
    assert model.metrics_["train:msd"] == pytest.approx(local.train_msd_, rel=1e-5)
    assert model.n_features_in_ == 4
    assert platform.jobs[model.training_job_name_].status == "Completed"
    # A job's model saves and loads like any other, and predicts without boto3's backend.
    loaded = kmeans_stream.load(model.save(tmp_path))
    np.testing.assert_array_equal(loaded.cluster_centers_, model.cluster_centers_)
    assert loaded.backend == "auto"


def test_pipe_mode(aws):
    platform, bucket = aws
    X = blobs()
    params = {"k": 3, "mini_batch_size": 100, "epochs": 2, **PARITY}
    model = own_image(bucket, sagemaker_options={"input_mode": "Pipe"}, **params).fit(X)
    request = created(platform)[-1]
    assert request["AlgorithmSpecification"]["TrainingInputMode"] == "Pipe"
    assert request["InputDataConfig"][0]["InputMode"] == "Pipe"
    local = KMeans(backend="numpy", **params).fit(X)
    np.testing.assert_allclose(model.cluster_centers_, local.cluster_centers_, rtol=1e-5)


def test_attach_gives_the_finished_jobs_model(aws):
    platform, bucket = aws
    X = blobs()
    model = own_image(bucket, k=3, **PARITY).fit(X)
    again = KMeans.attach(model.training_job_name_, sagemaker_options={"poll": 0.01,
                                                                         "max_poll": 0.02})
    np.testing.assert_array_equal(again.cluster_centers_, model.cluster_centers_)
    assert again.k == 3 and again.backend == "sagemaker" and again.role == ROLE
    assert again.instance_type == "ml.c5.xlarge"
    assert again.model_data_ == model.model_data_
    np.testing.assert_array_equal(again.predict(X), model.predict(X))


def test_a_test_channel_gives_the_jobs_test_metrics(aws):
    platform, bucket = aws
    X, T = blobs(seed=3), blobs(seed=4)
    params = {"k": 3, "eval_metrics": ["msd", "ssd"], **PARITY}
    model = own_image(bucket, **params).fit(X, test=T)
    assert set(model.metrics_) == {"train:msd", "test:msd", "test:ssd"}
    local = KMeans(backend="numpy", **params).fit(X, test=T)
    assert model.metrics_["test:msd"] == pytest.approx(local.metrics_["test:msd"], rel=1e-4)
    assert model.metrics_["test:ssd"] == pytest.approx(local.metrics_["test:ssd"], rel=1e-4)
    channel = created(platform)[-1]["InputDataConfig"][1]
    assert channel["ChannelName"] == "test"
    assert channel["DataSource"]["S3DataSource"]["S3DataDistributionType"] == "FullyReplicated"


def test_an_s3_prefix_is_used_in_place(aws):
    platform, bucket = aws
    X = blobs()
    text = "\n".join(",".join(repr(float(v)) for v in row) for row in X) + "\n"
    platform.client("s3").put_object(Bucket=bucket, Key="csv/part-0.csv", Body=text.encode())
    params = {"k": 3, "mini_batch_size": 200, **PARITY}
    model = own_image(bucket, **params).fit(f"s3://{bucket}/csv/")
    local = KMeans(backend="numpy", **params).fit(X)
    np.testing.assert_allclose(model.cluster_centers_, local.cluster_centers_, rtol=1e-5)
    channel = created(platform)[-1]["InputDataConfig"][0]
    assert channel["ContentType"] == "text/csv"
    assert channel["DataSource"]["S3DataSource"] == {
        "S3DataType": "S3Prefix", "S3Uri": f"s3://{bucket}/csv/",
        "S3DataDistributionType": "ShardedByS3Key"}
    assert objects(platform, bucket)[0] == "csv/part-0.csv"
    assert not any(key.startswith("kmeans-stream/record-sets") for key in objects(platform,
                                                                                     bucket))


# --------------------------------------------------------------------------- the request


def test_the_create_training_job_request_is_exact_and_valid(aws):
    platform, bucket = aws
    model = remote(bucket, k=5, epochs=3, mini_batch_size=100, instance_count=2,
                   random_state=1,
                   sagemaker_options={"volume_size": 50, "max_runtime": 3600,
                                      "tags": {"team": "ml"}, "use_spot": True,
                                      "max_wait": 7200, "volume_kms_key": "vkey",
                                      "output_kms_key": "okey", "subnets": ["subnet-1"],
                                      "security_group_ids": ["sg-1"],
                                      "job_name": "exact-request"})
    X = blobs(n=300)
    # SageMaker's image: the job fails in the played platform only if the algorithm does.
    model.fit(X)
    request = created(platform)[-1]
    prefix = f"s3://{bucket}/kmeans-stream/record-sets/exact-request/train/"
    assert request == {
        "TrainingJobName": "exact-request",
        "AlgorithmSpecification": {
            "TrainingImage": "382416733822.dkr.ecr.us-east-1.amazonaws.com/kmeans:1",
            "TrainingInputMode": "File"},
        "RoleArn": ROLE,
        "HyperParameters": {"k": "5", "feature_dim": "4", "epochs": "3",
                            "mini_batch_size": "100", "force_dense": "True"},
        "InputDataConfig": [{
            "ChannelName": "train",
            "DataSource": {"S3DataSource": {"S3DataType": "ManifestFile",
                                            "S3Uri": prefix + ".amazon.manifest",
                                            "S3DataDistributionType": "ShardedByS3Key"}},
            "ContentType": "application/x-recordio-protobuf",
            "InputMode": "File"}],
        "OutputDataConfig": {"S3OutputPath": f"s3://{bucket}/kmeans-stream/output",
                             "KmsKeyId": "okey"},
        "ResourceConfig": {"InstanceType": "ml.c5.xlarge", "InstanceCount": 2,
                           "VolumeSizeInGB": 50, "VolumeKmsKeyId": "vkey"},
        "StoppingCondition": {"MaxRuntimeInSeconds": 3600, "MaxWaitTimeInSeconds": 7200},
        "EnableManagedSpotTraining": True,
        "VpcConfig": {"Subnets": ["subnet-1"], "SecurityGroupIds": ["sg-1"]},
        "Tags": [{"Key": "team", "Value": "ml"}],
    }
    # botocore's own check against the real service model of SageMaker.
    shape = boto3.session.Session().client("sagemaker").meta.service_model \
        .operation_model("CreateTrainingJob").input_shape
    report = botocore_validate.ParamValidator().validate(request, shape)
    assert not report.has_errors(), report.generate_report()


def test_two_instances_get_the_sdks_shards_and_manifest(aws):
    platform, bucket = aws
    X = blobs(n=303)
    remote(bucket, k=3, instance_count=2, sagemaker_options={"job_name": "two-shards"}).fit(X)
    s3 = platform.client("s3")
    prefix = "kmeans-stream/record-sets/two-shards/train/"
    assert [k for k in objects(platform, bucket) if k.startswith(prefix)] == [
        prefix + ".amazon.manifest", prefix + "matrix_0.pbr", prefix + "matrix_1.pbr"]
    manifest = json.loads(s3.get_object(Bucket=bucket, Key=prefix + ".amazon.manifest")
                          ["Body"].read())
    assert manifest == [{"prefix": f"s3://{bucket}/{prefix}"}, "matrix_0.pbr", "matrix_1.pbr"]
    shards = [read_recordio(io.BytesIO(s3.get_object(Bucket=bucket, Key=prefix + name)
                                       ["Body"].read()))[0] for name in manifest[1:]]
    assert [len(s) for s in shards] == [151, 152]  # int(n / 2) rows, the last the rest
    np.testing.assert_array_equal(np.concatenate(shards), X)


def test_the_hyperparameters_sent_to_sagemakers_image_have_no_local_knobs(aws):
    platform, bucket = aws
    remote(bucket, k=3, random_state=5, shuffle=False, reassignment_ratio=0.5,
           init_method="kmeans++").fit(blobs())
    assert created(platform)[-1]["HyperParameters"] == {
        "k": "3", "feature_dim": "4", "init_method": "kmeans++", "force_dense": "True"}


# --------------------------------------------------------------------------- waiting, failing


def test_progress_lines_and_logs(aws, capsys):
    platform, bucket = aws
    own_image(bucket, k=3, sagemaker_options={"logs": True}, **PARITY).fit(blobs())
    err = capsys.readouterr().err
    assert re.search(r"kmeans-stream-\S+: InProgress - Starting \(Preparing", err)
    assert "InProgress - Training" in err and ": Completed - Completed" in err
    assert "#quality_metric: host=algo-1, train msd <loss>=" in err  # the job's log stream


def test_a_failed_job_raises_with_sagemakers_failure_reason(aws):
    platform, bucket = aws
    model = own_image(bucket, k=50, extra_center_factor=1, **PARITY)
    X = np.repeat(blobs(n=30)[:10], 3, axis=0)  # 10 distinct points for k=50
    with pytest.raises(RuntimeError, match=r"SageMaker training job \S+ failed: .*distinct"):
        model.fit(X)
    assert not hasattr(model, "cluster_centers_")
    assert platform.jobs[created(platform)[-1]["TrainingJobName"]].status == "Failed"


def test_ctrl_c_offers_to_stop_the_job_and_a_stopped_job_raises(aws, monkeypatch, capsys):
    platform, bucket = aws
    from kmeans_stream.backends import _sagemaker_job

    platform.hold_next = True

    def interrupt(seconds):
        raise KeyboardInterrupt

    class Terminal:
        def isatty(self):
            return True

    monkeypatch.setattr(_sagemaker_job, "_sleep", interrupt)
    monkeypatch.setattr(_sagemaker_job.sys, "stdin", Terminal())
    monkeypatch.setattr("builtins.input", lambda prompt: "y")
    with pytest.raises(KeyboardInterrupt):
        own_image(bucket, k=3, **PARITY).fit(blobs())
    name = created(platform)[-1]["TrainingJobName"]
    assert ("StopTrainingJob", {"TrainingJobName": name}) in platform.requests
    assert f"stopping {name}" in capsys.readouterr().err
    monkeypatch.undo()
    monkeypatch.setenv("AWS_ENDPOINT_URL", platform.url)
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(RuntimeError, match=f"{name} was stopped"):
        KMeans.attach(name, sagemaker_options={"poll": 0.01, "max_poll": 0.02})


def test_ctrl_c_without_a_terminal_leaves_the_job_running(aws, monkeypatch, capsys):
    platform, bucket = aws
    from kmeans_stream.backends import _sagemaker_job

    platform.hold_next = True
    monkeypatch.setattr(_sagemaker_job, "_sleep",
                        lambda s: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        own_image(bucket, k=3, **PARITY).fit(blobs())
    name = created(platform)[-1]["TrainingJobName"]
    assert not any(action == "StopTrainingJob" for action, _ in platform.requests)
    assert f"KMeans.attach({name!r})" in capsys.readouterr().err


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(("change", "error", "message"), [
    ({"role": None}, ValueError, "needs role="),
    ({"instance_type": None}, ValueError, "needs instance_type="),
    ({"instance_type": "ml.x9.huge"}, ValueError, "not offered for SageMaker K-Means"),
    ({"k": 0}, InvalidHyperparameterError, "'k' parameter"),
    ({"local_lloyd_tol": 2.0}, InvalidHyperparameterError, "'local_lloyd_tol'"),
    ({"instance_count": 0}, InvalidHyperparameterError, "'instance_count'"),
    ({"role": "arn:aws:iam::12:role/x"}, ValueError, "not an IAM role ARN"),
    ({"sagemaker_options": {"bucket": "no-such-bucket"}}, ValueError,
     "'no-such-bucket' does not exist"),
    ({"sagemaker_options": {"volume": 3}}, ValueError, r"unknown sagemaker_options \['volume'\]"),
    ({"sagemaker_options": {"input_mode": "Stream"}}, ValueError, "input_mode"),
    ({"sagemaker_options": {"region": "xx-nowhere-1"}}, ValueError,
     "not offered in region 'xx-nowhere-1'"),
    ({"feature_dim": 5}, ValueError, "feature_dim=5 but the data has 4 features"),
])
def test_bad_input_fails_before_any_job_and_leaves_nothing(aws, change, error, message):
    platform, bucket = aws
    params = {"k": 3, **change}
    options = params.pop("sagemaker_options", {})
    model = remote(bucket, sagemaker_options=options, **params)
    with pytest.raises(error, match=message):
        model.fit(blobs())
    assert created(platform) == []
    assert objects(platform, bucket) == []


def test_no_region_is_a_clear_error(aws, monkeypatch):
    platform, bucket = aws
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    with pytest.raises(ValueError, match="needs an AWS region"):
        remote(bucket, k=3).fit(blobs())
    assert created(platform) == []


def test_sample_weight_and_bad_rows_fail_before_upload(aws):
    platform, bucket = aws
    X = blobs()
    with pytest.raises(ValueError, match="no sample_weight"):
        remote(bucket, k=3).fit(X, sample_weight=np.ones(len(X)))
    X[5, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        remote(bucket, k=3).fit(X)
    assert created(platform) == [] and objects(platform, bucket) == []


def test_a_bad_test_set_removes_the_train_channel_already_uploaded(aws):
    platform, bucket = aws
    T = blobs(seed=4)
    T[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        remote(bucket, k=3).fit(blobs(), test=T)
    assert created(platform) == [] and objects(platform, bucket) == []


def test_fewer_rows_than_instances(aws):
    platform, bucket = aws
    with pytest.raises(ValueError, match="3 rows for 4 instances"):
        remote(bucket, k=1, instance_count=4).fit(blobs()[:3])
    assert created(platform) == [] and objects(platform, bucket) == []


def test_image_uri_table():
    from kmeans_stream.backends.sagemaker import image_uri

    assert image_uri("us-west-2") == "174872318107.dkr.ecr.us-west-2.amazonaws.com/kmeans:1"
    assert image_uri("eu-west-1") == "438346466558.dkr.ecr.eu-west-1.amazonaws.com/kmeans:1"
    assert image_uri("cn-north-1").endswith(".amazonaws.com.cn/kmeans:1")
    with pytest.raises(ValueError, match="us-east-1"):
        image_uri("mars-1")


# --------------------------------------------------------------------------- deployment


@pytest.mark.parametrize(("content_type", "accept"), [
    ("text/csv", "application/json"),
    ("application/json", "application/jsonlines"),
    ("application/jsonlines", "text/csv"),
    ("application/x-recordio-protobuf", "application/x-recordio-protobuf"),
])
def test_deploy_a_local_model_and_predict_through_the_endpoint(aws, content_type, accept):
    platform, bucket = aws
    X = blobs()
    model = KMeans(k=3, random_state=0, backend="numpy").fit(X)
    predictor = model.deploy(role=ROLE, content_type=content_type, accept=accept,
                             sagemaker_options={"bucket": bucket, "poll": 0.01,
                                                "max_poll": 0.02})
    closest, distance = predictor.predict(X[:50])
    expected = model.predict_with_distance(X[:50])
    np.testing.assert_array_equal(closest, expected[0])
    np.testing.assert_allclose(distance, expected[1], rtol=1e-5)
    assert closest.dtype == np.int32
    create = [body for action, body in platform.requests if action == "CreateModel"][-1]
    assert create["PrimaryContainer"] == {
        "Image": "382416733822.dkr.ecr.us-east-1.amazonaws.com/kmeans:1",
        "ModelDataUrl": f"s3://{bucket}/kmeans-stream/models/{predictor.endpoint_name}"
                        "/model.tar.gz"}
    predictor.delete_endpoint()
    sagemaker = platform.client("sagemaker")
    with pytest.raises(sagemaker.exceptions.ClientError):
        sagemaker.describe_endpoint(EndpointName=predictor.endpoint_name)
    with pytest.raises(sagemaker.exceptions.ClientError):
        sagemaker.describe_model(ModelName=predictor.endpoint_name)


def test_deploy_a_sagemaker_trained_model_reuses_its_artifact(aws):
    platform, bucket = aws
    model = own_image(bucket, k=3, **PARITY).fit(blobs())
    predictor = model.deploy(endpoint_name="trained-endpoint")
    create = [body for action, body in platform.requests if action == "CreateModel"][-1]
    assert create["PrimaryContainer"]["ModelDataUrl"] == model.model_data_
    assert create["ExecutionRoleArn"] == ROLE
    np.testing.assert_array_equal(predictor.predict(blobs()[:7])[0], model.predict(blobs()[:7]))
    predictor.delete_endpoint()


def test_deploy_refuses_bad_settings_before_creating_anything(aws):
    platform, bucket = aws
    model = KMeans(k=2, random_state=0, backend="numpy").fit(blobs())
    options = {"bucket": bucket}
    with pytest.raises(ValueError, match="deploy needs role="):
        model.deploy(sagemaker_options=options)
    with pytest.raises(ValueError, match="not offered for SageMaker K-Means endpoints"):
        model.deploy(role=ROLE, instance_type="ml.x1.tiny", sagemaker_options=options)
    with pytest.raises(ValueError, match="content_type"):
        model.deploy(role=ROLE, content_type="text/plain", sagemaker_options=options)
    assert not [a for a, _ in platform.requests if a.startswith("Create")]
    assert objects(platform, bucket) == []


def test_a_bad_payload_is_sagemakers_model_error(aws):
    platform, bucket = aws
    model = KMeans(k=2, random_state=0, backend="numpy").fit(blobs())
    predictor = model.deploy(role=ROLE, sagemaker_options={"bucket": bucket, "poll": 0.01})
    with pytest.raises(ValueError, match="unable to evaluate payload provided: expected 4"):
        predictor.predict(np.ones((2, 3)))  # 3 features for a 4-feature model
    predictor.delete_endpoint()
