"""The errors kmeans_stream raises on purpose; each is a ValueError so callers can catch broadly."""

import sys


class InvalidHyperparameterError(ValueError):
    """A hyperparameter is unknown, malformed or out of its documented range."""


class DataFormatError(ValueError):
    """Training or inference data is malformed; the message names the file and offset or line."""


class PayloadError(DataFormatError):
    """An inference request or response body is malformed, or of a content type not supported;
    the message names the problem (and the row and column where there is one)."""


class ModelFormatError(ValueError):
    """A model artifact (model.tar.gz, an MXNet NDArray file) is malformed or hostile."""


class NotFittedError(ValueError, AttributeError):
    """The estimator is used before `fit`; a ValueError and an AttributeError, as scikit-learn's."""

    def __reduce__(self):
        # Rebuilt through the factory, so that an error pickled where scikit-learn is loaded
        # (and is then also scikit-learn's NotFittedError) unpickles anywhere: Dask sends
        # errors back from its workers this way.
        return not_fitted_error, self.args


_COMBINED: dict[type, type] = {}


def not_fitted_error(message: str) -> NotFittedError:
    """A NotFittedError that is also scikit-learn's NotFittedError when scikit-learn is loaded.

    kmeans_stream does not import scikit-learn, but code that catches scikit-learn's error (and
    its own estimator checks) should catch ours too.
    """
    sklearn_exceptions = sys.modules.get("sklearn.exceptions")
    if sklearn_exceptions is None:
        return NotFittedError(message)
    theirs = sklearn_exceptions.NotFittedError
    if theirs not in _COMBINED:  # one class, so that errors of it compare by type
        _COMBINED[theirs] = type(
            "NotFittedError", (NotFittedError, theirs), {"__module__": __name__}
        )
    return _COMBINED[theirs](message)
