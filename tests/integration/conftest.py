"""Fixtures shared by the integration tests (heavy imports stay inside them)."""

from __future__ import annotations

from pathlib import Path

import pytest

#: A guided upscaler small enough to run in milliseconds (untrained: albedo-demodulated upsampling).
TINY_UPSCALER = {"features": 8, "blocks": 1, "head_features": 8}


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    """Weights of an untrained tiny guided upscaler, written as real safetensors with metadata."""
    torch = pytest.importorskip("torch", reason="torch not installed")
    pytest.importorskip("safetensors", reason="safetensors not installed (pip install farmplug[models])")
    from farmplug.nn.registry import architecture
    from farmplug.nn.weights import save_weights

    torch.manual_seed(0)
    arch = architecture("guided-sr-2x")
    net = arch.build(**TINY_UPSCALER)
    path = tmp_path_factory.mktemp("model") / "tiny.safetensors"
    save_weights(path, arch, net.state_dict(), hparams=TINY_UPSCALER, command="test")
    return path
