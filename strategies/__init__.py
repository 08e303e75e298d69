"""Built-in strategies; importing this package registers them."""
from strategies import (  # noqa: F401
    bananas,
    bossnas,
    diffusionnag,
    evolution,
    genetic,
    gm_nas,
    local_search,
    optuna_sampler,
    qfa,
    random_search,
    spaceevo,
    spos,
)
