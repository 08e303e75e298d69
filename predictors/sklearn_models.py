"""Scikit-learn regressors on architecture encodings: random forest, gradient boosting, MLP.

Each takes an `encoding` from `predictors.encodings` ("onehot", "adjacency" or "path") and learns
standardized targets; features constant over the training set are dropped. Defaults (set once, not tuned
per benchmark): a random forest of 500 trees with `max_features=0.5` (NASLib's random forest uses 116
trees); histogram gradient boosting (LightGBM's algorithm, as NASLib's "lgb") with 400 trees of at most
31 leaves, learning rate 0.05; an MLP with two hidden layers of 128 ReLU units, Adam, L2 1e-3 (NASLib's
MLP / BANANAS meta network is deeper and narrower, 20 layers of 20 units, with an L1 penalty). Fitting runs
on one thread: OpenMP threads thrash on a small, busy machine.
"""
from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from nas.registry import register_predictor
from nas.space import SearchSpace
from predictors.base import Predictor, Standardizer
from predictors.encodings import encode


class SklearnPredictor(Predictor):
    """A scikit-learn regressor on one encoding, with standardized targets."""

    name = "sklearn"
    defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, encoding: str = "onehot", seed: int = 0, **params: Any) -> None:
        self.encoding = encoding
        self.seed = seed % 2**32  # scikit-learn takes 32-bit seeds; BANANAS derives larger ones from its own
        self.params = {**self.defaults, **params}
        self.model: Any = None
        self.columns = np.zeros(0, dtype=int)
        self.scale: Standardizer | None = None

    @abstractmethod
    def make_model(self) -> Any:
        """A fresh, unfitted scikit-learn regressor."""

    def fit(self, space: SearchSpace, archs: Sequence[Mapping],
            targets: Sequence[float] | np.ndarray) -> SklearnPredictor:
        from threadpoolctl import threadpool_limits

        x = encode(space, archs, self.encoding)
        self.columns = np.flatnonzero(x.max(axis=0) > x.min(axis=0))  # drop features constant in training
        self.scale = Standardizer(targets)
        self.model = self.make_model()
        with threadpool_limits(1):  # OpenMP threads thrash on a busy 2-core machine
            self.model.fit(x[:, self.columns], self.scale.forward(targets))
        return self

    def predict(self, space: SearchSpace, archs: Sequence[Mapping]) -> np.ndarray:
        from threadpoolctl import threadpool_limits

        if self.model is None or self.scale is None:
            raise RuntimeError(f"fit the {self.name} predictor before predicting")
        with threadpool_limits(1):
            y = self.model.predict(encode(space, archs, self.encoding)[:, self.columns])
        return self.scale.inverse(y)


@register_predictor("rf")
class RandomForestPredictor(SklearnPredictor):
    """Random forest regression on an architecture encoding."""

    name = "rf"
    defaults: ClassVar[dict[str, Any]] = {"n_estimators": 500, "max_features": 0.5, "min_samples_leaf": 1}

    def make_model(self) -> Any:
        from sklearn.ensemble import RandomForestRegressor

        return RandomForestRegressor(random_state=self.seed, n_jobs=1, **self.params)


@register_predictor("gbm")
class GradientBoostingPredictor(SklearnPredictor):
    """Histogram gradient-boosted trees (LightGBM-style) on an architecture encoding."""

    name = "gbm"
    defaults: ClassVar[dict[str, Any]] = {"max_iter": 400, "learning_rate": 0.05, "max_leaf_nodes": 31,
                                          "min_samples_leaf": 5}

    def make_model(self) -> Any:
        from sklearn.ensemble import HistGradientBoostingRegressor

        return HistGradientBoostingRegressor(random_state=self.seed, **self.params)


@register_predictor("mlp")
class MLPPredictor(SklearnPredictor):
    """A multi-layer perceptron regression on an architecture encoding."""

    name = "mlp"
    defaults: ClassVar[dict[str, Any]] = {"hidden_layer_sizes": (128, 128), "learning_rate_init": 1e-3,
                                          "alpha": 1e-3, "max_iter": 300, "batch_size": 32}

    def make_model(self) -> Any:
        from sklearn.neural_network import MLPRegressor

        params = dict(self.params, batch_size=min(self.params["batch_size"], self._n_train))
        return MLPRegressor(random_state=self.seed, **params)

    def fit(self, space: SearchSpace, archs: Sequence[Mapping], targets: Sequence[float] | np.ndarray) -> MLPPredictor:
        import warnings

        from sklearn.exceptions import ConvergenceWarning

        self._n_train = len(archs)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            super().fit(space, archs, targets)
        return self
