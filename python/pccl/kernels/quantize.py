"""Quantize kernels (csrc/pccl/kernels/quantize.h). Placeholder until that work lands."""

from __future__ import annotations

__all__: list[str] = []
