"""THE hyperparameter table: SageMaker K-Means' keys, defaults and ranges, and the local knobs.

One tuple of records drives validation at fit time, the strings a CreateTrainingJob call sends,
parsing those strings back (artifacts, the CLI, ``hyperparameters.json``) and the estimator's
docstring. Values may be Python values or the strings SageMaker and its SDKs send ('5000',
'auto', '["msd", "ssd"]', "[msd, ssd]", 'True'); the AWS page's ranges win over the SDK's stricter
ones (k >= 1 is allowed).
"""

from __future__ import annotations

import ast
import json
import logging
import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .exceptions import InvalidHyperparameterError

logger = logging.getLogger(__name__)

_INF = math.inf


# --------------------------------------------------------------------------- constraints


@dataclass(frozen=True)
class Interval:
    """A number of `kind` ('int' or 'float') in [low, high]."""

    kind: str
    low: float
    high: float = _INF

    def __str__(self) -> str:
        article = "an" if self.kind == "int" else "a"
        high = "inf)" if self.high == _INF else f"{self.high}]"
        return f"{article} {self.kind} in the range [{self.low}, {high}"

    def parse(self, text: str) -> Any:
        value = float(text)
        if self.kind == "int":
            if not value.is_integer():
                raise ValueError(text)
            return int(value)
        return value

    def accepts(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            return False
        if self.kind == "int" and not isinstance(value, numbers.Integral):
            return False
        return self.low <= value <= self.high


@dataclass(frozen=True)
class Options:
    """One of a fixed set of strings."""

    options: tuple[str, ...]

    def __str__(self) -> str:
        return "a str among {" + ", ".join(repr(o) for o in self.options) + "}"

    def parse(self, text: str) -> str:
        return text.strip()

    def accepts(self, value: Any) -> bool:
        return isinstance(value, str) and value in self.options


@dataclass(frozen=True)
class Boolean:
    """True or False; strings 'True', 'true', 'false', '1', '0' too."""

    def __str__(self) -> str:
        return "a bool"

    def parse(self, text: str) -> bool:
        lowered = text.strip().lower()
        if lowered in ("true", "1", "yes"):
            return True
        if lowered in ("false", "0", "no"):
            return False
        raise ValueError(text)

    def accepts(self, value: Any) -> bool:
        return isinstance(value, bool)


@dataclass(frozen=True)
class NoneValue:
    """None: the value left unset (and not sent to SageMaker)."""

    def __str__(self) -> str:
        return "None"

    def parse(self, text: str) -> None:
        if text.strip().lower() not in ("none", "null", ""):
            raise ValueError(text)
        return None

    def accepts(self, value: Any) -> bool:
        return value is None


@dataclass(frozen=True)
class MetricList:
    """A non-empty list of metric names from `options`; SageMaker sends it as a JSON list."""

    options: tuple[str, ...]

    def __str__(self) -> str:
        return "a list of str among {" + ", ".join(repr(o) for o in self.options) + "}"

    def parse(self, text: str) -> tuple[str, ...]:
        return tuple(_parse_list(text))

    def accepts(self, value: Any) -> bool:
        if isinstance(value, str) or not isinstance(value, (list, tuple)) or not value:
            return False
        return all(isinstance(v, str) and v in self.options for v in value)


@dataclass(frozen=True)
class BackendName:
    """'auto' or the name of a registered backend (`kmeans_stream.backends.REGISTRY`), read
    at each check so that a backend registered later is valid at once."""

    def __str__(self) -> str:
        from .backends import names

        return "a str among {" + ", ".join(repr(n) for n in names()) + "}"

    def doc_text(self) -> str:
        """For the docstring, which must not change when a backend is registered."""
        return "a str among 'auto' and the registered backends"

    def parse(self, text: str) -> str:
        return text.strip()

    def accepts(self, value: Any) -> bool:
        from .backends import names

        return isinstance(value, str) and value in names()


@dataclass(frozen=True)
class Size:
    """A memory size such as '64MiB', '256MB' or '1GiB' (units B, kB/KB, MB, GB, KiB, MiB,
    GiB); parsed to bytes by `to_bytes`."""

    def __str__(self) -> str:
        return "a size such as '64MiB'"

    def parse(self, text: str) -> str:
        return text.strip()

    def accepts(self, value: Any) -> bool:
        return isinstance(value, str) and _size_bytes(value) is not None


_UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "kib": 2**10, "mib": 2**20,
          "gib": 2**30}


def _size_bytes(text: str) -> int | None:
    import re

    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]+)\s*", text)
    if not match or match.group(2).lower() not in _UNITS:
        return None
    value = int(float(match.group(1)) * _UNITS[match.group(2).lower()])
    return value if value > 0 else None


def to_bytes(size: str) -> int:
    """Bytes of a size string that `Size` accepts."""
    value = _size_bytes(size)
    if value is None:
        raise ValueError(f"not a size: {size!r}")
    return value


@dataclass(frozen=True)
class Seed:
    """None, an int >= 0, or a numpy Generator / RandomState."""

    def __str__(self) -> str:
        return "an int in the range [0, inf), a numpy Generator or None"

    def parse(self, text: str) -> int | None:
        return None if text.strip().lower() in ("none", "null") else int(text)

    def accepts(self, value: Any) -> bool:
        import numpy as np

        if value is None or isinstance(value, (np.random.Generator, np.random.RandomState)):
            return True
        return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 0


@dataclass(frozen=True)
class Text:
    """A non-empty string (an IAM role, an instance type)."""

    def __str__(self) -> str:
        return "a non-empty str"

    def parse(self, text: str) -> str:
        return text.strip()

    def accepts(self, value: Any) -> bool:
        return isinstance(value, str) and bool(value.strip())


@dataclass(frozen=True)
class Settings:
    """A dict of str keys (or its JSON text): the settings of a remote job."""

    def __str__(self) -> str:
        return "a dict"

    def parse(self, text: str) -> dict:
        value = json.loads(text)
        if not isinstance(value, dict):
            raise ValueError(text)
        return value

    def accepts(self, value: Any) -> bool:
        return isinstance(value, Mapping) and all(isinstance(k, str) for k in value)


def _parse_list(text: str) -> list[str]:
    """Parse a metric list as any client sends it: JSON, Python repr, [a, b] or a bare name."""
    text = text.strip()
    for loads in (json.loads, ast.literal_eval):
        try:
            value = loads(text)
        except (ValueError, SyntaxError):
            continue
        if isinstance(value, (list, tuple)):
            return [str(v).strip() for v in value]
        if isinstance(value, str):
            return [value.strip()]
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    return [part.strip().strip("'\"") for part in text.split(",") if part.strip()]


# --------------------------------------------------------------------------- the table


@dataclass(frozen=True)
class Hyperparameter:
    """One row of the table."""

    name: str
    default: Any
    constraints: tuple[Any, ...]
    doc: str
    sagemaker: bool = True  # sent to a SageMaker training job as a hyperparameter
    required: bool = False
    job: bool = False  # a setting of the SageMaker job itself (instance type...), not sent

    def describe(self, doc: bool = False) -> str:
        """The constraint text of the error template (or of the docstring), unions joined by
        'or'."""
        parts = [c.doc_text() if doc and hasattr(c, "doc_text") else str(c)
                 for c in self.constraints]
        return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " or " + parts[-1]


_INT1 = Interval("int", 1)
_INT0 = Interval("int", 0)
_AUTO = Options(("auto",))
_INITS = Options(("random", "kmeans++"))

HYPERPARAMETERS: tuple[Hyperparameter, ...] = (
    Hyperparameter("k", None, (_INT1,), "Number of clusters (required).", required=True),
    Hyperparameter(
        "feature_dim", None, (_INT1, NoneValue()),
        "Number of features; None takes it from the data. A given value must match the data.",
    ),
    Hyperparameter(
        "mini_batch_size", 5000, (_INT1,),
        "Rows per mini-batch of the streaming pass; the first one initialises the centers.",
    ),
    Hyperparameter("epochs", 1, (_INT1,), "Passes over the training data."),
    Hyperparameter(
        "init_method", "random", (_INITS,),
        "How the K initial centers are drawn from the first mini-batch.",
    ),
    Hyperparameter(
        "extra_center_factor", "auto", (_INT1, _AUTO),
        "K = k * extra_center_factor centers are kept while streaming; 'auto' is 10, lowered so "
        "that K never exceeds the distinct rows of the first mini-batch.",
    ),
    Hyperparameter(
        "half_life_time_size", 0, (_INT0,),
        "Points after which an observation's weight halves; 0 means no decay.",
    ),
    Hyperparameter(
        "local_lloyd_init_method", "kmeans++", (_INITS,),
        "Initialisation of the final weighted Lloyd reduction from K to k centers.",
    ),
    Hyperparameter(
        "local_lloyd_max_iter", 300, (_INT1,), "Most Lloyd iterations of one reduction trial."
    ),
    Hyperparameter(
        "local_lloyd_num_trials", "auto", (_INT1, _AUTO),
        "Reduction trials, the lowest weighted loss kept; 'auto' is 10.",
    ),
    Hyperparameter(
        "local_lloyd_tol", 0.0001, (Interval("float", 0.0, 1.0),),
        "Relative change of the weighted loss under which a reduction trial stops.",
    ),
    Hyperparameter(
        "eval_metrics", ("msd",), (MetricList(("msd", "ssd")),),
        "Metrics reported on a test channel: 'msd', 'ssd' or both.",
    ),
    Hyperparameter(
        "force_dense", None, (Boolean(), NoneValue()),
        "Accepted for SageMaker compatibility and ignored (the SDK always sends 'True').",
    ),
    Hyperparameter(
        "backend", "auto", (BackendName(),),
        "Where the fit runs and predictions are computed; 'auto' is the fastest backend "
        "installed here (numba, else numpy). Resolved again at each predict, so a model "
        "fitted anywhere predicts anywhere. Local only.",
        sagemaker=False,
    ),
    Hyperparameter(
        "precision", "fp32", (Options(("fp32", "tf32")),),
        "Arithmetic of the GPU's matrix products: 'tf32' lets the cupy backend rank centers "
        "with TF32 tensor cores (distances and sums stay fp32/fp64); CPU backends ignore it. "
        "Local only.",
        sagemaker=False,
    ),
    Hyperparameter(
        "scheduler_address", None, (Text(), NoneValue()),
        "The Dask scheduler backend='dask' fits on (such as 'tcp://10.0.0.5:8786'); None "
        "uses the active distributed.Client where there is one, else a LocalCluster of one "
        "worker process per core, started for the fit and closed after. Local only.",
        sagemaker=False,
    ),
    Hyperparameter(
        "random_state", None, (Seed(),),
        "Seed of every random choice; the same seed, data and hyperparameters give the same "
        "centers on the same backend. Local only.",
        sagemaker=False,
    ),
    Hyperparameter(
        "shuffle", "auto", (Boolean(), _AUTO),
        "Order-robust batching: in-memory rows are visited in a new random order each epoch "
        "(X is not copied), streamed rows pass through a shuffle buffer and the files of a "
        "folder, manifest or S3 prefix are read in a random order. 'auto' shuffles unless "
        "half_life_time_size is set (decay weighs recent rows, so the source's order is "
        "meant). False keeps the source's order, as SageMaker. Local only.",
        sagemaker=False,
    ),
    Hyperparameter(
        "reassignment_ratio", 0.01, (Interval("float", 0.0),),
        "Centers whose count falls below this fraction of the largest count, or whose rows "
        "a far point would serve better, are moved to a point far from every center "
        "(scikit-learn's MiniBatchKMeans name and meaning); 0 turns reassignment off. Local "
        "only.",
        sagemaker=False,
    ),
    Hyperparameter(
        "shuffle_buffer", "64MiB", (Interval("int", 1), Size()),
        "Size of the shuffle buffer of streamed sources, in rows (an int) or memory (such as "
        "'64MiB'): the memory a shuffled stream adds. Local only.",
        sagemaker=False,
    ),
    Hyperparameter(
        "compute_labels", True, (Boolean(),),
        "Set labels_ and inertia_ of the training rows after a fit on in-memory data "
        "(scikit-learn's MiniBatchKMeans name and meaning): where the final refinement did "
        "not label them already, one more assignment pass, and n int32 of memory either way. "
        "False leaves them unset. Local only.",
        sagemaker=False,
    ),
    Hyperparameter(
        "role", None, (Text(), NoneValue()),
        "The IAM role (its ARN, or its name in the caller's account) a SageMaker training job "
        "runs as; required with backend='sagemaker'.",
        sagemaker=False, job=True,
    ),
    Hyperparameter(
        "instance_type", None, (Text(), NoneValue()),
        "The SageMaker instance type of the training job (such as 'ml.c5.xlarge'); required "
        "with backend='sagemaker'.",
        sagemaker=False, job=True,
    ),
    Hyperparameter(
        "instance_count", 1, (_INT1,),
        "Instances of the SageMaker training job; the data is written in one shard per "
        "instance.",
        sagemaker=False, job=True,
    ),
    Hyperparameter(
        "sagemaker_options", None, (Settings(), NoneValue()),
        "Further settings of the SageMaker training job (region, bucket, output_path, "
        "image_uri, volume_size, max_runtime, use_spot, max_wait, tags, volume_kms_key, "
        "output_kms_key, subnets, security_group_ids, logs...; see "
        "kmeans_stream.backends.sagemaker.JobOptions).",
        sagemaker=False, job=True,
    ),
    Hyperparameter(
        "verbose", False, (Boolean(), _INT0),
        "Progress and per-trial log lines. Local only.",
        sagemaker=False,
    ),
)

BY_NAME: dict[str, Hyperparameter] = {hp.name: hp for hp in HYPERPARAMETERS}
DEFAULT_EXTRA_CENTER_FACTOR = 10
DEFAULT_NUM_TRIALS = 10


def _error(hp: Hyperparameter, value: Any) -> InvalidHyperparameterError:
    return InvalidHyperparameterError(
        f"The {hp.name!r} parameter of KMeans must be {hp.describe()}. Got {value!r} instead."
    )


def validate_value(name: str, value: Any) -> Any:
    """Return `value` for hyperparameter `name`, parsed from a string where needed.

    Raises
    ------
    InvalidHyperparameterError
        With scikit-learn's template when the value fits none of the constraints.
    """
    hp = BY_NAME[name]
    if hp.required and value is None:
        raise InvalidHyperparameterError(
            f"The {name!r} parameter of KMeans is required (SageMaker K-Means has no default). "
            "Got None instead."
        )
    for constraint in hp.constraints:
        if constraint.accepts(value):
            return tuple(value) if isinstance(constraint, MetricList) else value
    if isinstance(value, str):
        for constraint in hp.constraints:
            try:
                parsed = constraint.parse(value)
            except (ValueError, TypeError, SyntaxError):
                continue
            if constraint.accepts(parsed):
                return parsed
    raise _error(hp, value)


def validate_all(params: Mapping[str, Any]) -> dict[str, Any]:
    """Validate every hyperparameter of `params` (a get_params() dict); unknown keys are errors."""
    unknown = sorted(set(params) - set(BY_NAME))
    if unknown:
        raise InvalidHyperparameterError(f"Unknown hyperparameter(s) for KMeans: {unknown}.")
    return {name: validate_value(name, params.get(name, BY_NAME[name].default))
            for name in BY_NAME}


# Local knobs that kmeans_stream's own training image reads when they are sent (SageMaker's
# image does not know them); where and how a model computes stays the caller's business.
ALGORITHM_KNOBS = ("random_state", "shuffle", "reassignment_ratio", "shuffle_buffer")


def job_strings(values: Mapping[str, Any], feature_dim: int, *,
                knobs: bool = False) -> dict[str, str]:
    """The hyperparameters of a SageMaker training job, as SageMaker Python SDK 2.x's KMeans
    sent them for the same settings.

    ``k`` and ``feature_dim`` always; every other SageMaker hyperparameter only where it differs
    from SageMaker's default (the SDK sent only what was set, and an unsent value takes the
    container's default, which is the same); ``force_dense='True'`` as the SDK always added.
    Numbers as the SDK cast them (``local_lloyd_tol=1`` is ``'1.0'``), lists as JSON. With
    `knobs`, the local `ALGORITHM_KNOBS` too (an integer `random_state` only), for
    kmeans_stream's own image.
    """
    out: dict[str, str] = {"k": _sdk_string(BY_NAME["k"], values["k"]),
                           "feature_dim": str(int(feature_dim))}
    for hp in HYPERPARAMETERS:
        value = values.get(hp.name, hp.default)
        if not hp.sagemaker or hp.name in out or value is None or _same(value, hp.default):
            continue
        out[hp.name] = _sdk_string(hp, value)
    out["force_dense"] = "False" if values.get("force_dense") is False else "True"
    if knobs:
        for name in ALGORITHM_KNOBS:
            value = values.get(name, BY_NAME[name].default)
            if name == "random_state" and not isinstance(value, numbers.Integral):
                continue
            out[name] = _sdk_string(BY_NAME[name], value)
    return out


def _sdk_string(hp: Hyperparameter, value: Any) -> str:
    """`value` as the SDK sent it: lists as JSON, numbers of a float hyperparameter cast to
    float first (``1`` is ``'1.0'``), anything else as `str` gives it."""
    if isinstance(value, (list, tuple)):
        return json.dumps(list(value))
    floats = any(isinstance(c, Interval) and c.kind == "float" for c in hp.constraints)
    if floats and isinstance(value, numbers.Real) and not isinstance(value, bool):
        return str(float(value))
    return str(value)


def _same(value: Any, default: Any) -> bool:
    """Whether `value` is the default (a list equal to a default tuple is; True is not 1)."""
    if isinstance(value, (list, tuple)) or isinstance(default, (list, tuple)):
        return isinstance(value, (list, tuple)) and isinstance(default, (list, tuple)) \
            and tuple(value) == tuple(default)
    if isinstance(value, bool) or isinstance(default, bool):
        return value is default
    return value == default


def from_strings(strings: Mapping[str, Any]) -> dict[str, Any]:
    """Parse a SageMaker hyperparameter map into validated Python values.

    `force_dense` and the internal `_*` keys of the container's defaults are accepted and
    ignored; any other unknown key is an error, as a typo would otherwise be silently lost.
    """
    values: dict[str, Any] = {}
    unknown = []
    for key, value in strings.items():
        if key.startswith("_"):
            logger.debug("ignoring SageMaker internal hyperparameter %s=%r", key, value)
            continue
        if key not in BY_NAME:
            unknown.append(key)
            continue
        values[key] = validate_value(key, value)
    if unknown:
        raise InvalidHyperparameterError(
            f"Unknown SageMaker K-Means hyperparameter(s): {sorted(unknown)}. Known keys: "
            f"{sorted(hp.name for hp in HYPERPARAMETERS)} and the internal '_*' keys."
        )
    return values


def numpydoc_parameters(indent: str = "    ") -> str:
    """The Parameters section of the estimator's docstring, generated from the table.

    KMeans' docstring holds this text literally (editors show it); a test checks they agree.
    """
    import textwrap

    lines = []
    for hp in HYPERPARAMETERS:
        local = " (job)" if hp.job else "" if hp.sagemaker else " (local)"
        lines.append(f"{indent}{hp.name} : {hp.describe(doc=True)}, default={hp.default!r}{local}")
        lines += textwrap.wrap(hp.doc, width=96, initial_indent=indent * 2,
                               subsequent_indent=indent * 2)
    return "\n".join(lines)
