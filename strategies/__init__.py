"""Built-in strategies; importing this package registers them."""
from strategies import bananas, bossnas, evolution, genetic, optuna_sampler, random_search, spos  # noqa: F401
