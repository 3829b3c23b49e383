"""A master script as PCCL 1.0's examples write it: run() returns at once and the script
ends; the process serves until SIGINT/SIGTERM. (It also prints the bound address, which
the test needs to find the port it asked the system for.)"""

import sys

from pccl import MasterNode


def main() -> None:
    master = MasterNode(listen_address=sys.argv[1])
    master.run()
    print(f"listening on {master.address}", flush=True)


if __name__ == "__main__":
    main()
