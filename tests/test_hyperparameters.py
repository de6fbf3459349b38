import inspect

import numpy as np
import pytest

from kmeans_stream import InvalidHyperparameterError, KMeans
from kmeans_stream.hyperparameters import (
    ALGORITHM_KNOBS,
    BY_NAME,
    HYPERPARAMETERS,
    from_strings,
    job_strings,
    numpydoc_parameters,
    validate_all,
    validate_value,
)

# Every key, as SageMaker's SDKs, Spark and the container's own defaults send it.
AS_SENT = [
    ("k", "10", 10),
    ("feature_dim", "784", 784),
    ("mini_batch_size", "5000", 5000),
    ("mini_batch_size", "500.0", 500),
    ("epochs", "1", 1),
    ("init_method", "kmeans++", "kmeans++"),
    ("init_method", "random", "random"),
    ("extra_center_factor", "auto", "auto"),
    ("extra_center_factor", "4", 4),
    ("half_life_time_size", "0", 0),
    ("local_lloyd_init_method", "random", "random"),
    ("local_lloyd_max_iter", "300", 300),
    ("local_lloyd_num_trials", "auto", "auto"),
    ("local_lloyd_num_trials", "3", 3),
    ("local_lloyd_tol", "0.0001", 0.0001),
    ("local_lloyd_tol", "1.0", 1.0),
    ("local_lloyd_tol", "1", 1.0),
    ("eval_metrics", '["msd", "ssd"]', ("msd", "ssd")),
    ("eval_metrics", "['msd', 'ssd']", ("msd", "ssd")),
    ("eval_metrics", "[ssd, msd]", ("ssd", "msd")),
    ("eval_metrics", "msd", ("msd",)),
    ("eval_metrics", '["msd"]', ("msd",)),
    ("force_dense", "True", True),
    ("force_dense", "true", True),
    ("force_dense", "false", False),
    ("backend", "numpy", "numpy"),
    ("random_state", "7", 7),
    ("shuffle", "True", True),
    ("shuffle", "auto", "auto"),
    ("reassignment_ratio", "0.01", 0.01),
    ("reassignment_ratio", "0", 0.0),
    ("shuffle_buffer", "64MiB", "64MiB"),
    ("shuffle_buffer", "100000", 100000),
    ("precision", "tf32", "tf32"),
    ("scheduler_address", "tcp://10.0.0.5:8786", "tcp://10.0.0.5:8786"),
    ("verbose", "0", 0),
    ("compute_labels", "False", False),
    ("role", "arn:aws:iam::123456789012:role/kmeans", "arn:aws:iam::123456789012:role/kmeans"),
    ("instance_type", "ml.c5.xlarge", "ml.c5.xlarge"),
    ("instance_count", "4", 4),
    ("sagemaker_options", '{"region": "eu-west-1"}', {"region": "eu-west-1"}),
]


@pytest.mark.parametrize(("name", "text", "value"), AS_SENT)
def test_strings_as_sdks_send_them(name, text, value):
    assert validate_value(name, text) == value


def test_every_key_has_a_string_case():
    assert {name for name, _, _ in AS_SENT} == set(BY_NAME)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("k", 0,
         "The 'k' parameter of KMeans must be an int in the range [1, inf). Got 0 instead."),
        ("k", None, "The 'k' parameter of KMeans is required"),
        ("k", 2.5, "Got 2.5 instead"),
        ("k", True, "Got True instead"),
        ("mini_batch_size", "many", "Got 'many' instead"),
        ("init_method", "kmeans||", "a str among {'random', 'kmeans++'}"),
        ("extra_center_factor", "0", "an int in the range [1, inf) or a str among {'auto'}"),
        ("local_lloyd_tol", 1.5, "a float in the range [0.0, 1.0]"),
        ("eval_metrics", '["mse"]', "a list of str among {'msd', 'ssd'}"),
        ("eval_metrics", [], "Got [] instead"),
        ("half_life_time_size", -1, "Got -1 instead"),
        ("backend", "tpu", "Got 'tpu' instead"),
        ("random_state", -3, "Got -3 instead"),
    ],
)
def test_bad_values_name_the_key(name, value, message):
    with pytest.raises(InvalidHyperparameterError) as info:
        validate_value(name, value)
    assert message in str(info.value)
    assert f"'{name}'" in str(info.value)
    assert isinstance(info.value, ValueError)


def test_unknown_and_internal_keys():
    sent = {"k": "3", "_kvstore": "auto", "_num_gpus": "auto", "force_dense": "True"}
    values = from_strings(sent)
    assert values == {"k": 3, "force_dense": True}
    with pytest.raises(InvalidHyperparameterError, match="local_lloyd_max_iterations"):
        from_strings({"k": "3", "local_lloyd_max_iterations": "10"})


def test_validation_happens_at_fit_not_init():
    model = KMeans(k=0)  # stores only
    assert model.get_params()["k"] == 0
    with pytest.raises(InvalidHyperparameterError, match="'k' parameter"):
        model.fit(np.zeros((3, 2)))
    assert not hasattr(model, "cluster_centers_")


def test_to_sagemaker_hyperparameters_strings_and_omissions():
    model = KMeans(k=8, eval_metrics=["msd", "ssd"], random_state=3, backend="numpy",
                   shuffle=False, role="r", instance_type="ml.c5.xlarge")
    sent = model.to_sagemaker_hyperparameters(feature_dim=7)
    # Defaults are left to the container (the same values); local knobs and job settings never
    # travel as hyperparameters; force_dense as the SDK always added it.
    assert sent == {"k": "8", "feature_dim": "7", "eval_metrics": '["msd", "ssd"]',
                    "force_dense": "True"}


def test_strings_equal_what_sdk2_kmeans_sent():
    # SageMaker Python SDK 2.x, tests/unit/test_kmeans.py::test_all_hyperparameters: KMeans(k=2,
    # init_method="random", max_iterations=3, tol=0.5, num_trials=5, local_init_method=
    # "kmeans++", half_life_time_size=0, epochs=10, center_factor=2, eval_metrics=["msd", "ssd"])
    # gave these strings, plus feature_dim from the RecordSet at fit time. Here init_method and
    # local_init_method are SageMaker's defaults and half_life_time_size is set to 100 instead
    # of 0: a default, which the SDK sent because it was given, is not sent here.
    sdk = {"k": "2", "init_method": "kmeans++", "local_lloyd_max_iter": "3",
           "local_lloyd_tol": "0.5", "local_lloyd_num_trials": "5",
           "local_lloyd_init_method": "random", "half_life_time_size": "100", "epochs": "10",
           "extra_center_factor": "2", "eval_metrics": '["msd", "ssd"]', "force_dense": "True",
           "feature_dim": "10", "mini_batch_size": "200"}
    model = KMeans(k=2, init_method="kmeans++", local_lloyd_max_iter=3, local_lloyd_tol=0.5,
                   local_lloyd_num_trials=5, local_lloyd_init_method="random",
                   half_life_time_size=100, epochs=10, extra_center_factor=2,
                   eval_metrics=["msd", "ssd"], mini_batch_size=200)
    assert model.to_sagemaker_hyperparameters(feature_dim=10) == sdk
    # The SDK cast tol with float(): an int tolerance travels as '1.0'.
    assert KMeans(k=2, local_lloyd_tol=1).to_sagemaker_hyperparameters(3)[
        "local_lloyd_tol"] == "1.0"


def test_algorithm_knobs_for_kmeans_streams_own_image():
    values = validate_all(KMeans(k=3, random_state=7, shuffle=False,
                                 reassignment_ratio=0).get_params())
    sent = job_strings(values, 4, knobs=True)
    assert {k: sent[k] for k in ALGORITHM_KNOBS} == {
        "random_state": "7", "shuffle": "False", "reassignment_ratio": "0.0",
        "shuffle_buffer": "64MiB"}
    assert KMeans.from_sagemaker_hyperparameters(sent).get_params()["random_state"] == 7


def test_feature_dim_from_fitted_data_or_error():
    with pytest.raises(ValueError, match="feature_dim is unknown"):
        KMeans(k=2).to_sagemaker_hyperparameters()
    X = np.random.default_rng(0).normal(size=(50, 4))
    model = KMeans(k=2, random_state=0, backend="numpy").fit(X)
    assert model.to_sagemaker_hyperparameters()["feature_dim"] == "4"


@pytest.mark.parametrize(
    "params",
    [
        {"k": 3},
        {"k": 10, "mini_batch_size": 700, "epochs": 4, "init_method": "kmeans++",
         "extra_center_factor": 4, "half_life_time_size": 1000,
         "local_lloyd_init_method": "random", "local_lloyd_max_iter": 50,
         "local_lloyd_num_trials": 2, "local_lloyd_tol": 0.5, "eval_metrics": ("ssd", "msd"),
         "force_dense": True},
    ],
)
def test_round_trip(params):
    model = KMeans(**params)
    again = KMeans.from_sagemaker_hyperparameters(model.to_sagemaker_hyperparameters(5))
    expected = validate_all({**model.get_params(), "feature_dim": 5})
    got = validate_all(again.get_params())
    # force_dense goes as 'True' whatever was set, as the SDK sent it; it is ignored.
    local = {hp.name for hp in HYPERPARAMETERS if not hp.sagemaker} | {"force_dense"}
    assert {n: v for n, v in got.items() if n not in local} == {
        n: v for n, v in expected.items() if n not in local
    }


def test_docstring_lists_every_hyperparameter_and_init_agrees():
    signature = inspect.signature(KMeans.__init__)
    assert [p for p in signature.parameters if p != "self"] == [hp.name for hp in HYPERPARAMETERS]
    for hp in HYPERPARAMETERS:
        assert signature.parameters[hp.name].default == hp.default
    # The docstring is written in the class (so editors show it) and must say what the table
    # says, word for word.
    assert numpydoc_parameters() in KMeans.__doc__
