"""The singer-sdk standard tap tests, run against the sandbox."""

from __future__ import annotations

import atexit

from singer_sdk.testing import get_tap_test_class

from pipedrive_sandbox import Sandbox
from tap_pipedrive.tap import TapPipedrive

# The SDK builds its test class (and runs a sync to parametrise it) at collection time,
# so the sandbox must already be serving then.
_SANDBOX = Sandbox(seed=3, scale=0.05, burst_limit=None)
_SANDBOX.start()
atexit.register(_SANDBOX.stop)

TestTapPipedrive = get_tap_test_class(
    tap_class=TapPipedrive,
    config={"api_token": _SANDBOX.api_token, "api_url": _SANDBOX.url},
)
