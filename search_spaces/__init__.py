"""Built-in search spaces; importing this package registers them."""
from search_spaces import mbconv  # noqa: F401
from search_spaces import nb201  # noqa: F401
from search_spaces import nats_sss  # noqa: F401
from search_spaces import hytra  # noqa: F401
