"""What the benchmarks share (library modules only; no entry points).

common.py        sizes, bus traffic factor, free ports, table cells, JSON output
procs.py         spawned worker processes with one pipe each: gather replies, stop them
data.py          verification data: exact-sum all-reduce inputs, shared-state content
loopback.py      the all-reduce backends on loopback (pccl, Gloo, plain-socket ceiling)
netns.py         network namespaces: the one place that creates, enters and deletes them
shaped.py        namespaces + veth + tc htb as regions and hosts; a pccl run across them
shaped_peer.py   the pccl peer that shaped.py runs in each host (python -m bench.lib.shaped_peer)
kernel_cases/    the kernel benchmark's cases, one module per kernel family
"""
