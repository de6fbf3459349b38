"""scikit-learn's own estimator checks, run on KMeans."""

import pytest

pytest.importorskip("sklearn")

from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

from kmeans_stream import KMeans  # noqa: E402

# Checks that fail only where SageMaker's semantics truly differ, each with the reason: none.
# The defaults and SageMaker's exact algorithm (parity mode) both pass every check.
EXPECTED_FAILED = {}


@parametrize_with_checks(
    [KMeans(k=3, backend="numpy", random_state=0),
     KMeans(k=3, backend="numpy", random_state=0, shuffle=False, reassignment_ratio=0)],
    expected_failed_checks=lambda estimator: EXPECTED_FAILED,
)
def test_scikit_learn_checks(estimator, check):
    check(estimator)
