"""pccl's benchmarks: each verifies its results and prints a table and JSON.

Run them from the repository root, against the installed pccl:

    python -m bench.all_reduce [--quick]     loopback all-reduce: pccl vs Gloo vs a socket ring
    sudo python -m bench.all_reduce --quant  quantized vs float32 on capped uplinks
    python -m bench.shared_state             shared state to a joiner vs plain TCP
    python -m bench.faults                   failure detection and recovery vs Gloo
    python -m bench.diloco                   DiLoCo vs async DiLoCo vs DDP
    sudo python -m bench.topology            optimize_topology() on a two-region network
    python -m bench.kernels                  kernel throughput per ISA path
    sudo python -m bench.wan_bench           pccl vs Gloo across the emulated WAN
    sudo python -m bench.wan_chaos           a DiLoCo-shaped run under seeded WAN faults
    sudo python -m bench.wan.lab ...         the WAN lab itself (run, selfcheck, cleanup)

The modules directly in bench/ are entry points and never import each other; what they
share is in bench/lib/ (processes, sizes and JSON, verification data, the loopback
backends, the one network-namespace layer and the tc-shaped networks built on it) and
bench/wan/ (the WAN lab, built on the same namespace layer).
"""
