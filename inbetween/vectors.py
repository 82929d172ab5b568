"""Blender Cycles' Vector pass convention, as the inbetween stage uses it.

The convention and its helpers live in the core (:mod:`farmplug.motion`), shared with the
temporal denoiser; this module keeps the inbetween stage's own name for them.
"""

from __future__ import annotations

from farmplug.motion import TO_NEXT_SIGN, TO_PREV_SIGN, join_blender_vectors, split_blender_vectors

__all__ = ["TO_NEXT_SIGN", "TO_PREV_SIGN", "join_blender_vectors", "split_blender_vectors"]
