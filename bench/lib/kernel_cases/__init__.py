"""Kernel benchmark cases, one module per kernel family (reduce, quantize, modular, hash).

Each module's `cases(n_bytes)` returns one dict per kernel: name, bytes (input bytes per
call), elements, optionally touched (bytes read plus written), run() (one call on
preallocated buffers), numpy (the numpy equivalent, or None) and verify() (checks the
output against a reference). bench.kernels times them on every ISA path.
"""
