"""scikit-learn's own estimator checks, run on KMeans."""

import pytest

pytest.importorskip("sklearn")

from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

from kmeans_stream import KMeans  # noqa: E402

# Checks that fail only where SageMaker's semantics truly differ, each with the reason.
EXPECTED_FAILED = {
    # As scikit-learn's own KMeans and MiniBatchKMeans (its expected failures too): a row of
    # weight 2 counts as two rows in every sum, but the random draws (the initial centers, the
    # order of the rows) are made over other rows, so repeated rows and weights do not give
    # bit-identical fits. tests/test_data_path.py checks the equivalence where draws agree.
    "check_sample_weight_equivalence_on_dense_data":
        "sample_weight is not equivalent to repeating rows in the random draws",
    "check_sample_weight_equivalence_on_sparse_data":
        "sample_weight is not equivalent to repeating rows in the random draws",
}


@parametrize_with_checks(
    [KMeans(k=3, backend="numpy", random_state=0)],
    expected_failed_checks=lambda estimator: EXPECTED_FAILED,
)
def test_scikit_learn_checks(estimator, check):
    check(estimator)
