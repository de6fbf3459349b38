"""The SageMaker side of `kmeans_stream.KMeans`: its model archive, its hyperparameters as a
training job sends them, an endpoint on SageMaker's own image, and a model from a job started
elsewhere. A mixin, so that the estimator's module holds the fit and the predictions.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from . import backends
from .algorithm import Params
from .hyperparameters import from_strings, job_strings, validate_all, validate_value


class SageMakerMethods:
    """`save`, `to_sagemaker_hyperparameters`, `deploy`, `attach` and
    `from_sagemaker_hyperparameters` of `kmeans_stream.KMeans`."""

    def save(self, path: str | os.PathLike) -> Path:
        """Write a model.tar.gz that SageMaker's K-Means image serves and `load` reads back.

        ``model_algo-1`` holds the (k, feature_dim) float32 centers; ``kmeans_stream.json``
        holds the hyperparameters and the fitted state. Written to a temporary name, then
        renamed, so a crash never leaves a half-written model.

        Parameters
        ----------
        path : str or os.PathLike
            The archive to write, or an existing folder to write ``model.tar.gz`` into.

        Returns
        -------
        path : pathlib.Path
            The archive written.
        """
        from .persistence import save

        return save(self, path)

    def to_sagemaker_hyperparameters(self, feature_dim: int | None = None) -> dict[str, str]:
        """The string map a CreateTrainingJob call sends for this estimator, as SageMaker Python
        SDK 2.x's KMeans sent it for the same settings.

        ``k``, ``feature_dim``, every other SageMaker hyperparameter that differs from
        SageMaker's default (an unsent one takes the container's default, the same value), and
        ``force_dense='True'``. Local knobs (backend, random_state, shuffle, ...) and the job's
        own settings (role, instance_type, ...) are never sent.

        Parameters
        ----------
        feature_dim : int, optional
            Overrides the parameter; by default the parameter, else the fitted data's.

        Returns
        -------
        hyperparameters : dict of str to str
        """
        values = validate_all(self.get_params())
        dim = feature_dim or values["feature_dim"] or getattr(self, "n_features_in_", None)
        if dim is None:
            raise ValueError(
                "feature_dim is unknown: pass feature_dim=, set the parameter, or fit first."
            )
        return job_strings(values, validate_value("feature_dim", dim))

    def deploy(self, **options: Any) -> Any:
        """Serve this model on a SageMaker endpoint running SageMaker's K-Means image.

        Parameters
        ----------
        **options
            Those of `kmeans_stream.endpoint.deploy` (role, instance_type,
            initial_instance_count, endpoint_name, content_type, accept, wait,
            sagemaker_options); role and sagemaker_options default to the model's own.

        Returns
        -------
        predictor : kmeans_stream.endpoint.Predictor
            ``predictor.predict(X)`` gives ``(closest_cluster, distance_to_cluster)``;
            ``predictor.delete_endpoint()`` takes the endpoint down.
        """
        from .endpoint import deploy

        return deploy(self, **options)

    @classmethod
    def attach(cls, training_job_name: str, **params: Any) -> Any:
        """The model of a SageMaker training job started elsewhere (or left running).

        Waits for the job if it is still running, then downloads its model.tar.gz.

        Parameters
        ----------
        training_job_name : str
        **params
            Estimator parameters, such as ``sagemaker_options={"region": ...}``; the job's own
            hyperparameters, role and instances fill the rest.

        Returns
        -------
        model : KMeans
            Fitted, with backend='sagemaker', `training_job_name_`, `model_data_` and
            `metrics_`.

        Raises
        ------
        RuntimeError
            If the job failed (with SageMaker's FailureReason) or was stopped.
        """
        trainer = backends.load("sagemaker", **{"backend": "sagemaker", **params})
        result, description = trainer.attach(training_job_name)
        resources = description.get("ResourceConfig", {})
        model = cls(**{
            **from_strings(description.get("HyperParameters", {})), "backend": "sagemaker",
            "role": description.get("RoleArn"), "instance_type": resources.get("InstanceType"),
            "instance_count": resources.get("InstanceCount", 1), **params,
        })
        fitted_params = Params.from_hyperparameters(validate_all(model.get_params()))
        from .estimator import _Fitted

        model._commit(_Fitted(result.state, result.reduction, fitted_params,
                              np.random.default_rng(), result.dtype, result.n_features,
                              metrics=dict(result.metrics), attributes=dict(result.attributes)))
        return model

    @classmethod
    def from_sagemaker_hyperparameters(cls, hyperparameters: dict[str, str]) -> Any:
        """A KMeans from SageMaker's string map (hyperparameters.json, a DescribeTrainingJob).

        force_dense and the container's internal '_*' keys are accepted and ignored.

        Parameters
        ----------
        hyperparameters : dict of str to str

        Returns
        -------
        model : KMeans
            Unfitted, with those hyperparameters.
        """
        return cls(**from_strings(hyperparameters))
