import numpy as np
import pytest

from kmeans_stream._validation import check_array, check_finite


def test_finite_values_whose_sum_overflows_pass():
    check_finite(np.full((4, 3), 3e38, dtype=np.float32))


@pytest.mark.parametrize(("value", "word"), [(np.nan, "NaN"), (np.inf, "infinity"),
                                             (-np.inf, "infinity")])
def test_the_first_bad_value_is_named(value, word):
    X = np.zeros((5, 3))
    X[3, 2] = value
    X[4, 0] = value
    with pytest.raises(ValueError, match=rf"{word}.*row 13, column 2"):
        check_finite(X, row_offset=10)


def test_float32_c_contiguous_is_not_copied():
    X = np.ones((10, 2), dtype=np.float32)
    assert check_array(X) is X
    assert check_array(np.asfortranarray(X)).flags.c_contiguous
    assert check_array(X.astype(np.int64)).dtype == np.float64
