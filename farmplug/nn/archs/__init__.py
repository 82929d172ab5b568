"""Torch modules of the registered architectures (importing any of them imports torch)."""
