"""The `pccl` command: `pccl status HOST:PORT` prints a run's master status as tables (from
the master's HTTP /status; `pccl_master --http-address`)."""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error

from pccl._status import fetch_status, format_status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pccl", description="pccl's command line tools.")
    commands = parser.add_subparsers(dest="command", required=True)
    status = commands.add_parser("status", help="print a run's status, as its master sees it")
    status.add_argument("address", metavar="HOST:PORT",
                        help="the master's HTTP address (pccl_master --http-address)")
    status.add_argument("--json", action="store_true", help="print the raw JSON instead")
    status.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS")
    args = parser.parse_args(argv)
    try:
        run = fetch_status(args.address, timeout=args.timeout)
    except (OSError, urllib.error.URLError, ValueError) as e:
        print(f"pccl status: cannot read http://{args.address}/status: {e}", file=sys.stderr)
        return 1
    print(json.dumps(run, indent=1) if args.json else format_status(run))
    return 0


if __name__ == "__main__":
    sys.exit(main())
