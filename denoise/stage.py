"""The denoise stage on the OIDN backend: HDR colour, with albedo and normal where the render has them."""

from __future__ import annotations

import logging

import numpy as np

from farmplug.denoise.config import DESCRIPTOR, DenoiseConfig
from farmplug.errors import MissingPassError
from farmplug.imageio import Frame
from farmplug.imageio.channels import HOW_TO_ENABLE
from farmplug.stages.base import ProcessInfo

log = logging.getLogger(__name__)


class OidnDenoiseStage:
    """Denoise a frame's colour with Intel Open Image Denoise; alpha and every other layer pass through."""

    descriptor = DESCRIPTOR

    def __init__(self, config: DenoiseConfig | None = None) -> None:
        self.config = config or DenoiseConfig()
        self._denoiser = None

    @property
    def device_name(self) -> str:
        return self._denoiser.device_name if self._denoiser is not None else self.config.device

    def open(self) -> None:
        """Create the OIDN device and filters (once per task)."""
        from farmplug.denoise.oidn import OidnDenoiser, OidnOptions

        if self._denoiser is None:
            self._denoiser = OidnDenoiser(
                OidnOptions(
                    quality=self.config.quality,
                    clean_aux=self.config.clean_aux,
                    prefilter_aux=self.config.prefilter_aux,
                    device=self.config.device,
                )
            )

    def _aux(self, frame: Frame, feature: str, color_window, info: ProcessInfo) -> np.ndarray | None:
        if not frame.has(feature):
            problem = f"no {feature} pass: {HOW_TO_ENABLE[feature]}"
        elif frame.feature_window(feature) != color_window:
            problem = f"the {feature} pass has a different data window from the colour"
        else:
            return frame.feature(feature)
        if self.config.missing_aux == "error":
            raise MissingPassError(problem, path=frame.path)
        info.warnings.append(f"{frame.path}: {problem}; denoising without it (lower quality)")
        return None

    def _aux_passes(self, frame: Frame, info: ProcessInfo) -> tuple[np.ndarray | None, np.ndarray | None]:
        """The albedo and normal OIDN is given for ``frame`` (None where missing, with a warning in
        ``info``, or MissingPassError with ``missing_aux: error``). OIDN takes a normal only
        together with an albedo."""
        window = frame.feature_window("color")
        albedo = self._aux(frame, "albedo", window, info)
        normal = self._aux(frame, "normal", window, info)
        if normal is not None and albedo is None:
            info.warnings.append(f"{frame.path}: normal pass ignored because there is no albedo pass")
            normal = None
        return albedo, normal

    def process(self, frame: Frame) -> tuple[Frame, ProcessInfo]:
        """Denoise ``frame``'s colour.

        Raises:
            MissingPassError: no colour, or missing albedo/normal when ``missing_aux`` is ``error``.
        """
        if self._denoiser is None:
            self.open()
        info = ProcessInfo()
        color = frame.feature("color")
        albedo, normal = self._aux_passes(frame, info)
        result = self._denoiser.denoise(color, albedo=albedo, normal=normal)
        for message in info.warnings:
            log.warning(message)
        return frame.with_feature("color", result), info

    def close(self) -> None:
        if self._denoiser is not None:
            self._denoiser.close()
            self._denoiser = None
