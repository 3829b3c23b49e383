"""DiLoCo and async DiLoCo on pccl (needs torch): `from pccl.diloco import DiLoCo`.

outer_state.py holds the outer parameters, outer optimizer and pseudo-gradient buffers;
helper.py runs the outer step protocol over a Communicator (its docstring tells the story).
"""

from __future__ import annotations

from pccl.diloco.helper import DiLoCo, OuterStepInfo
from pccl.diloco.outer_state import OuterState, default_outer_optimizer

__all__ = ["DiLoCo", "OuterState", "OuterStepInfo", "default_outer_optimizer"]
