"""Run singer-io tap-pipedrive 2.1.0 against the base URL in PEER_BASE_URL.

The peer hard-codes ``BASE_URL`` in ``tap_pipedrive/config.py`` and imports it into
``tap_pipedrive/tap.py``; patching the config module before the tap module is imported is
all it takes. Runs with the peer's own interpreter (its separate virtualenv).
"""

import os

import tap_pipedrive.config as peer_config

peer_config.BASE_URL = os.environ["PEER_BASE_URL"].rstrip("/")

from tap_pipedrive.cli import main  # noqa: E402  (after the patch, on purpose)

if __name__ == "__main__":
    main()
