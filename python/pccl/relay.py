"""The `pccl_relay` command (also `python -m pccl.relay`): a relay for peers behind NAT, in a
process of its own, until SIGINT or SIGTERM.

    pccl_relay --listen-address 0.0.0.0:48149 --key-file PATH

The masters it serves are started with `--external-relay HOST:PORT --relay-key-file PATH`
(the same key; HOST:PORT as the peers reach this relay). The master gives each peer a
ticket made with the key; the relay forwards only for peers with a valid ticket, and what it
forwards stays end-to-end authenticated (docs/security.md). A master runs a relay of its own
by default; this one is for a host with more bandwidth than the master's, or one that peers
behind a firewall can reach.
"""

from __future__ import annotations

import argparse
import sys

from pccl._cli import secret_from_file, stop_on_signals
from pccl._master import RelayNode

__all__ = ["main"]

DEFAULT_LISTEN_ADDRESS = "0.0.0.0:48149"


def main(argv: list[str] | None = None) -> int:
    """The `pccl_relay` command: relays until SIGINT or SIGTERM, then exits with 0."""
    parser = argparse.ArgumentParser(
        prog="pccl_relay", description="Relays connections for peers behind NAT.")
    parser.add_argument("--listen-address", default=DEFAULT_LISTEN_ADDRESS,
                        metavar="HOST:PORT",
                        help=f"address to listen on (default {DEFAULT_LISTEN_ADDRESS})")
    parser.add_argument("--key-file", required=True, metavar="PATH",
                        help="file holding the relay key (at least 16 bytes), shared with "
                             "the master's --relay-key-file")
    args = parser.parse_args(argv)
    key = secret_from_file(parser, args.key_file, "--key-file")
    assert key is not None  # --key-file is required
    with stop_on_signals() as stop:
        try:
            relay = RelayNode(args.listen_address, key)
        except (TypeError, ValueError, RuntimeError) as e:
            print(f"pccl_relay: {e}", file=sys.stderr, flush=True)
            return 1
        try:
            host = args.listen_address.rsplit(":", 1)[0]
            print(f"pccl relay listening on {host}:{relay.port}", flush=True)
            stop.wait()
        finally:
            relay.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
