"""The WAN lab: an emulated wide-area network on one machine (needs root).

network.py   Lab: node namespaces behind a router whose TUN device feeds wanemu
faults.py    Lab's faults at run time: blackhole, heal, flap, loss_burst, set_link, reset_link
topology.py  the one-line topology language (peers, regions, rtt, rate, loss, window, ...)
probes.py    RTT and throughput measurements across a lab, and its self-check
lab.py       the command line: python -m bench.wan.lab run|selfcheck|cleanup|build
wanemu.h     the packet-level link emulator (built into build/wan/ on first use): its
             story, config and control commands; wanemu.cc the data path,
             wanemu_faults.cc the control socket, blackholes, timers and TCP resets
"""
