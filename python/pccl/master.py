"""The `pccl_master` command (also `python -m pccl.master`): serves a run until SIGINT or
SIGTERM.

    pccl_master --listen-address 0.0.0.0:48148 [--heartbeat-timeout 3] [--link-timeout 30]
                [--secret-file PATH] [--transport plain|encrypted]
                [--relay-address HOST:PORT|off | --external-relay HOST:PORT --relay-key-file PATH]

Without --secret-file the run secret comes from PCCL_RUN_SECRET or PCCL_RUN_SECRET_FILE, if
set (docs/security.md); a secret is never taken on the command line, where other users of
the machine could read it.

`from pccl.master import MasterNode` works as in PCCL 1.0; the class is pccl._master's.
"""

from __future__ import annotations

import argparse
import sys

from pccl._cli import secret_from_file, stop_on_signals
from pccl._master import DEFAULT_LISTEN_ADDRESS, MasterNode

__all__ = ["MasterNode", "main"]


def main(argv: list[str] | None = None) -> int:
    """The `pccl_master` command: serves until SIGINT or SIGTERM, then exits with 0."""
    parser = argparse.ArgumentParser(
        prog="pccl_master", description="Runs the master of a pccl run."
    )
    parser.add_argument(
        "--listen-address",
        default=DEFAULT_LISTEN_ADDRESS,
        metavar="HOST:PORT",
        help=f"address to listen on (default {DEFAULT_LISTEN_ADDRESS}; port 0 = any free port)",
    )
    parser.add_argument(
        "--link-timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="seconds a member may take to connect its ring links (default 30)",
    )
    parser.add_argument(
        "--heartbeat-timeout",
        type=float,
        default=3.0,
        metavar="SECONDS",
        help="seconds without a heartbeat before a peer is kicked (default 3)",
    )
    parser.add_argument(
        "--secret-file",
        metavar="PATH",
        help="file holding the run secret (default: PCCL_RUN_SECRET, PCCL_RUN_SECRET_FILE)",
    )
    parser.add_argument(
        "--relay-address",
        metavar="HOST:PORT",
        help="where the relay for peers behind NAT listens: 'off', or HOST:PORT "
             "(default: the listen host, any free port)",
    )
    parser.add_argument(
        "--external-relay",
        metavar="HOST:PORT",
        help="a pccl_relay, as peers dial it, instead of the master's own relay",
    )
    parser.add_argument(
        "--relay-key-file",
        metavar="PATH",
        help="file holding the key the external relay was started with",
    )
    parser.add_argument(
        "--transport",
        choices=("plain", "encrypted"),
        help="plain or encrypted (default: PCCL_TRANSPORT, else plain)",
    )
    parser.add_argument(
        "--http-address",
        metavar="HOST:PORT",
        help="serve /status (JSON) and /metrics (Prometheus) over HTTP there "
             "(default: no HTTP; `pccl status HOST:PORT` reads it)",
    )
    parser.add_argument(
        "--state-file",
        metavar="PATH",
        help="keep what the master knows of the run there; started again with the same "
             "file (after a crash, say), it waits for those peers to resume first",
    )
    parser.add_argument(
        "--resume-window",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="how long a restarted master waits for the peers to resume (default 5)",
    )
    args = parser.parse_args(argv)
    secret = secret_from_file(parser, args.secret_file, "--secret-file")
    relay_key = secret_from_file(parser, args.relay_key_file, "--relay-key-file")
    with stop_on_signals() as stop:
        try:
            node = MasterNode(args.listen_address, link_timeout=args.link_timeout,
                              heartbeat_timeout=args.heartbeat_timeout, secret=secret,
                              transport=args.transport, relay_address=args.relay_address,
                              external_relay=args.external_relay, relay_key=relay_key,
                              http_address=args.http_address, state_file=args.state_file,
                              resume_window=args.resume_window)
        except (TypeError, ValueError) as e:
            parser.error(str(e))
        try:
            node.run()
        except (ValueError, RuntimeError) as e:
            print(f"pccl_master: {e}", file=sys.stderr, flush=True)
            return 1
        try:
            print(f"pccl master listening on {node.address}", flush=True)
            if args.http_address is not None:
                print(f"pccl master status on http://{args.http_address.rpartition(':')[0]}:"
                      f"{node.http_port}/status", flush=True)
            while not stop.wait(1.0):
                if not node.running:
                    print("pccl_master: server stopped unexpectedly", file=sys.stderr)
                    return 1
        finally:
            node.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
