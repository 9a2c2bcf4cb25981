"""Measure the per-parent phase: requests per second against the burst limit, and 429s.

    python scripts/fanout_throughput.py [--latency 0.15] [--burst-limit 80] [--parallel 1 8]

Runs the tap in this process against a fresh sandbox once per ``--parallel`` value, with
only per-parent child streams selected, and prints for each run: the wall time of the
per-parent requests, their rate, that rate as a share of the burst limit, and the 429s the
sandbox answered. Numbers depend on the machine; nothing here is asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipedrive_sandbox import Sandbox
from tap_pipedrive.http.pacer import WINDOW_MARGIN_SECONDS, WINDOW_SECONDS
from tap_pipedrive.tap import TapPipedrive

PER_PARENT = ("deal_followers", "deal_participants", "deal_changelog", "person_followers")
# Per-parent request paths have an id segment: /api/v2/deals/17/followers.
PER_PARENT_MARKERS = ("/followers", "/participants", "/changelog")


def measure(args: argparse.Namespace, parallel: int) -> str:
    with Sandbox(
        seed=5, scale=args.scale, burst_limit=args.burst_limit, latency=args.latency
    ) as sandbox:
        config = {
            "api_token": sandbox.api_token,
            "api_url": sandbox.url,
            "max_parallel_parents": parallel,
            "progress_interval_seconds": 0,
        }
        tap = TapPipedrive(config=config, validate_config=False)
        catalog = tap.catalog_dict
        for entry in catalog["streams"]:
            for metadata in entry["metadata"]:
                if metadata["breadcrumb"] == []:
                    metadata["metadata"]["selected"] = entry["tap_stream_id"] in PER_PARENT
        # The catalog's own requests leave the burst window before the run starts.
        time.sleep(WINDOW_SECONDS + WINDOW_MARGIN_SECONDS)
        sandbox.clear_requests()
        started = time.monotonic()
        with contextlib.redirect_stdout(io.StringIO()):
            TapPipedrive(config=config, catalog=catalog).sync_all()
        elapsed = time.monotonic() - started
        times = sorted(r.time for r in sandbox.requests if r.path.endswith(PER_PARENT_MARKERS))
        span = times[-1] - times[0] if len(times) > 1 else 0.0
        rate = (len(times) - 1) / span if span else 0.0
        limit_rate = args.burst_limit / WINDOW_SECONDS
        return (
            f"max_parallel_parents={parallel}: {len(times)} per-parent requests in "
            f"{span:.1f} s ({rate:.1f}/s = {rate / limit_rate:.0%} of the burst limit "
            f"{args.burst_limit} per {WINDOW_SECONDS:.0f} s); run {elapsed:.1f} s; "
            f"429s {sandbox.stats()['rate_limited']}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.15)
    parser.add_argument("--burst-limit", type=int, default=80)
    parser.add_argument("--scale", type=float, default=0.1)
    parser.add_argument("--parallel", type=int, nargs="+", default=[1, 8])
    args = parser.parse_args()
    for parallel in args.parallel:
        print(measure(args, parallel), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
