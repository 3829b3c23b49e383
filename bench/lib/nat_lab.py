"""The NAT lab: a public network and two private ones behind real NATs (nftables).

    public      10.77.0.1 (lo)  the master and public peers
                10.77.1.1 -- 10.77.1.2  nat-eim   masquerade (endpoint-independent:
                                        192.168.7.1   the source port is kept)
                                           |
                                        192.168.7.2  home-eim
                10.77.2.1 -- 10.77.2.2  nat-sym   masquerade fully-random (symmetric:
                                        192.168.8.1   a random port per connection)
                                           |
                                        192.168.8.2  home-sym

The public namespace has no route into either private network; each NAT has its default
route into the public one, each home its default route via its NAT. A host behind a NAT
reaches the public side only through the masquerade, and nothing reaches it unasked: a
connection to the NAT's public address is refused by the router itself. Used by
tests/python/test_nat.py and bench/nat.py. Needs root, `ip` and `nft`.
"""

from __future__ import annotations

import shutil

from bench.lib import netns

PUBLIC_IP = "10.77.0.1"
KINDS = ("public", "eim", "sym")  # where a process can run: the keys of build()'s result


def unavailable_reason() -> str | None:
    if shutil.which("nft") is None:
        return "needs the `nft` command (apt-get install nftables)"
    return netns.unavailable_reason()


def build(net: netns.Namespaces) -> dict[str, str]:
    """Builds the lab in `net`; returns the namespace of each of KINDS."""
    public = net.add("public")
    net.address(public, "lo", f"{PUBLIC_IP}/32")
    names = {"public": public}
    for kind, octet, masquerade in (("eim", 1, ["masquerade"]),
                                    ("sym", 2, ["masquerade", "fully-random"])):
        nat, home = net.add(f"nat-{kind}"), net.add(f"home-{kind}")
        net.veth(public, f"eth{octet}", nat, "wan0")
        net.veth(home, "eth0", nat, "lan0")
        net.address(public, f"eth{octet}", f"10.77.{octet}.1/24")
        net.address(nat, "wan0", f"10.77.{octet}.2/24")
        net.address(nat, "lan0", f"192.168.{6 + octet}.1/24")
        net.address(home, "eth0", f"192.168.{6 + octet}.2/24")
        net.ip(nat, "route", "add", "default", "via", f"10.77.{octet}.1")
        net.ip(home, "route", "add", "default", "via", f"192.168.{6 + octet}.1")
        net.sysctl(nat, [("net.ipv4.ip_forward", "1")])
        for rule in (["add", "table", "ip", "nat"],
                     ["add", "chain", "ip", "nat", "post",
                      "{ type nat hook postrouting priority 100 ; }"],
                     ["add", "rule", "ip", "nat", "post", "oifname", "wan0", "ip", "saddr",
                      f"192.168.{6 + octet}.0/24", *masquerade]):
            net.run(nat, "nft", *rule)
        names[kind] = home
    return names
