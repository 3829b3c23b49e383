"""The WAN lab: an emulated wide-area network on one machine (needs root).

network.py   Lab: node namespaces behind a router whose TUN device feeds wanemu
topology.py  the one-line topology language (peers, regions, rtt, rate, loss, window, ...)
probes.py    RTT and throughput measurements across a lab, and its self-check
lab.py       the command line: python -m bench.wan.lab run|selfcheck|cleanup|build
wanemu.cc    the packet-level link emulator (built into build/wan/ on first use)
"""
