"""The Flower App components that ``flwr run`` loads (see :func:`cflkit.flower.deploy.write_app`):
``cflkit.flower.app:serverapp`` and ``cflkit.flower.app:clientapp``. Imports flwr: only
Flower itself imports this module."""
from .client import make_client_app
from .server import make_server_app

serverapp = make_server_app()
clientapp = make_client_app()
