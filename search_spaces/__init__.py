"""Built-in search spaces; importing this package registers them."""
from search_spaces import hytra, lmuformer, lsnet, mbconv, mixer, nats_sss, nb201, spaceevo, wavemix  # noqa: F401
