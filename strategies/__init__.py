"""Built-in strategies; importing this package registers them."""
from strategies import evolution, optuna_sampler, random_search  # noqa: F401
from strategies import bossnas  # noqa: F401
from strategies import bananas  # noqa: F401
