"""Built-in predictors; importing this package registers them."""
from predictors import gnn, sklearn_models, zero_cost  # noqa: F401
