"""``pipedrive-sandbox`` (or ``python -m pipedrive_sandbox``): serve the sandbox until SIGTERM/SIGINT.

Prints exactly one line, the base URL, to stdout; credentials go to stderr for humans.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from types import FrameType
from typing import Any, NoReturn

from pipedrive_sandbox.company import (
    DEFAULT_PLAN,
    DEFAULT_SEATS,
    DEFAULT_SIZE,
    PLANS,
    company_preset,
)
from pipedrive_sandbox.core import Sandbox


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line naming the bad option, instead of usage text plus the error.
        self.exit(2, f"error: {message}\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="pipedrive-sandbox", description=__doc__)
    parser.add_argument("--port", type=int, default=0, help="TCP port (0 = any free port)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--burst-limit", type=int, default=80, help="0 disables the limiter")
    parser.add_argument("--burst-window", type=float, default=2.0)
    parser.add_argument(
        "--daily-budget",
        type=int,
        default=None,
        help="tokens a day (default: the plan's budget for the seats, else unlimited)",
    )
    parser.add_argument(
        "--company-size",
        type=float,
        default=None,
        help="shape the data like the model company scaled by this factor "
        f"({DEFAULT_SIZE} = 400 deals, 800 persons, ...; replaces --scale)",
    )
    parser.add_argument(
        "--plan",
        choices=[*sorted(PLANS), "none"],
        default=None,
        help="burst limits and budget of this plan "
        f"(with --company-size: {DEFAULT_PLAN}; none: the company's data without its limits)",
    )
    parser.add_argument(
        "--seats",
        type=int,
        default=None,
        help=f"active users (with --company-size: {DEFAULT_SEATS})",
    )
    parser.add_argument("--access-token-ttl", type=float, default=3600)
    parser.add_argument("--no-rotate-refresh-tokens", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    for name in ("port", "latency_ms", "daily_budget", "burst_limit", "company_size"):
        value = getattr(args, name)
        if value is not None and value < 0:
            print(f"error: --{name.replace('_', '-')} must be >= 0, got {value}", file=sys.stderr)
            return 2
    if args.scale <= 0 or args.access_token_ttl <= 0 or args.company_size == 0:
        print("error: --scale, --company-size and --access-token-ttl must be > 0", file=sys.stderr)
        return 2
    if args.seats is not None and args.seats < 1:
        print(f"error: --seats must be >= 1, got {args.seats}", file=sys.stderr)
        return 2
    plan = None if args.plan == "none" else args.plan
    shape: dict[str, Any] = {"scale": args.scale, "plan": plan, "seats": args.seats}
    if args.company_size is not None:
        preset = company_preset(
            args.company_size, args.seats or DEFAULT_SEATS, plan or DEFAULT_PLAN
        )
        shape = {
            "scale": preset.scale,
            "counts": preset.counts,
            "plan": None if args.plan == "none" else preset.plan,
            "seats": preset.seats,
        }
    sandbox = Sandbox(
        seed=args.seed,
        **shape,
        latency=args.latency_ms / 1000.0,
        burst_limit=args.burst_limit or None,
        burst_window=args.burst_window,
        daily_budget=args.daily_budget,
        access_token_ttl=args.access_token_ttl,
        rotate_refresh_tokens=not args.no_rotate_refresh_tokens,
        port=args.port,
    )
    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    try:
        sandbox.start()
    except OSError as exc:
        print(f"error: cannot listen on 127.0.0.1:{args.port}: {exc.strerror}", file=sys.stderr)
        return 1
    print(sandbox.url, flush=True)
    print(
        "sandbox credentials: api_token=sandbox-api-token client_id=sandbox-client-id "
        "client_secret=sandbox-client-secret",
        file=sys.stderr,
        flush=True,
    )
    try:
        while not stop.wait(0.5):
            pass
    finally:
        sandbox.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
