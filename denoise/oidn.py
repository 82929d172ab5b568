"""Intel Open Image Denoise backend working on numpy arrays.

The backend follows the adaptor lifecycle of the farm workers: an :class:`OidnDenoiser` is
created once per task (one OIDN device, filters committed once per frame size), denoises every
frame of the chunk, and is closed at the end (or on cancel).

``pyoidn`` is imported lazily: it imports torch when torch is installed, and importing
``farmplug`` (or this module) must stay cheap.

Example:
    >>> with OidnDenoiser(OidnOptions(quality="high")) as denoiser:  # doctest: +SKIP
    ...     for frame in frames:
    ...         clean = denoiser.denoise(frame.color, frame.albedo, frame.normal)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from farmplug.errors import FarmplugError

if TYPE_CHECKING:
    import pyoidn

__all__ = ["OidnDenoiser", "OidnOptions", "available_devices"]

logger = logging.getLogger(__name__)

Quality = Literal["default", "fast", "balanced", "high"]
DeviceChoice = Literal["auto", "cpu", "cuda"]

_QUALITY_NAMES: tuple[str, ...] = ("default", "fast", "balanced", "high")
_DEVICE_CHOICES: tuple[str, ...] = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class OidnOptions:
    """How the OIDN ``RT`` filter is set up.

    Attributes:
        quality: OIDN filter quality; ``"high"`` is meant for final frames, ``"fast"`` and
            ``"balanced"`` for previews.
        clean_aux: ``True`` when albedo and normal are noise-free (e.g. first-hit AOVs of a
            scene without depth of field or motion blur): they are used as-is with
            ``cleanAux=1``. ``False`` (default): the noisy albedo and normal are first
            prefiltered by their own OIDN filters, then the colour is denoised with
            ``cleanAux=1``, which is OIDN's documented highest-quality path.
        prefilter_aux: Only when ``clean_aux`` is ``False``: prefilter the noisy albedo/normal
            (``True``, three filter runs per frame) or hand them to the colour filter as noisy
            with ``cleanAux=0`` (``False``, one filter run: about a third of the cost).
        device: ``"auto"`` picks CUDA when OIDN has a CUDA device here, else the CPU.
        threads: Thread count of the CPU device; ``None`` lets OIDN use every core.
        hdr: Whether the colour is HDR linear (Cycles output); ``False`` means LDR in [0, 1].
    """

    quality: Quality = "high"
    clean_aux: bool = False
    prefilter_aux: bool = True
    device: DeviceChoice = "auto"
    threads: int | None = None
    hdr: bool = True

    def __post_init__(self) -> None:
        """Reject values OIDN would reject later with a less helpful message.

        Raises:
            FarmplugError: If a field has a value outside its allowed set.
        """
        if self.quality not in _QUALITY_NAMES:
            raise FarmplugError(
                f"OIDN quality {self.quality!r} is not one of {', '.join(_QUALITY_NAMES)}"
            )
        if self.device not in _DEVICE_CHOICES:
            raise FarmplugError(
                f"OIDN device {self.device!r} is not one of {', '.join(_DEVICE_CHOICES)}"
            )
        if self.threads is not None and (isinstance(self.threads, bool) or self.threads < 1):
            raise FarmplugError(
                f"OIDN threads must be a positive integer or None, not {self.threads!r}"
            )


def _pyoidn() -> Any:
    """Import pyoidn on first use.

    Raises:
        FarmplugError: If pyoidn (Intel Open Image Denoise) is not installed.
    """
    try:
        import pyoidn
    except ImportError as exc:
        raise FarmplugError(f"Intel Open Image Denoise (pyoidn) is not installed: {exc}") from exc
    return pyoidn


def available_devices() -> list[str]:
    """List the OIDN device kinds usable on this machine.

    Returns:
        A subset of ``["cpu", "cuda"]`` in that order.

    Raises:
        FarmplugError: If pyoidn is not installed.
    """
    oidn = _pyoidn()
    devices = []
    if oidn.Device.is_cpu_available():
        devices.append("cpu")
    if oidn.Device.is_cuda_available(0):
        devices.append("cuda")
    return devices


@dataclass(frozen=True)
class _FrameLayout:
    """What the committed filters were built for; a change means re-creating them."""

    height: int
    width: int
    has_albedo: bool
    has_normal: bool


class _Pipeline:
    """The filters and OIDN buffers committed for one :class:`_FrameLayout`.

    Buffers (rather than shared numpy memory) are used so the same code works for the CPU
    device (host storage, the copy is a memcpy) and the CUDA device (device storage).
    """

    def __init__(
        self, oidn: Any, device: pyoidn.Device, layout: _FrameLayout, options: OidnOptions
    ) -> None:
        self._oidn = oidn
        self._device = device
        self.layout = layout
        self._filters: list[pyoidn.Filter] = []
        self._buffers: dict[str, pyoidn.Buffer] = {}
        self._prefilters: list[pyoidn.Filter] = []
        self._main: pyoidn.Filter | None = None
        self._nbytes = layout.height * layout.width * 3 * np.dtype(np.float32).itemsize
        try:
            self._build(options)
        except BaseException:
            self.release()
            raise

    def _buffer(self, name: str) -> pyoidn.Buffer:
        buffer = self._oidn.Buffer(self._device, self._nbytes)
        self._buffers[name] = buffer
        _check_device(self._device, f"allocating the {name} buffer")
        return buffer

    def _new_filter(self) -> pyoidn.Filter:
        flt = self._oidn.Filter(self._device, self._oidn.OIDN_FILTER_TYPE_RT)
        self._filters.append(flt)
        _check_device(self._device, "creating an RT filter")
        return flt

    def _bind(self, flt: pyoidn.Filter, slot: str, buffer: pyoidn.Buffer) -> None:
        flt.set_image(
            slot, buffer, self._oidn.OIDN_FORMAT_FLOAT3, self.layout.width, self.layout.height
        )

    def _build(self, options: OidnOptions) -> None:
        quality = _quality_constant(self._oidn, options.quality)
        layout = self.layout
        color = self._buffer("color")
        output = self._buffer("output")
        aux: dict[str, pyoidn.Buffer] = {}
        for name, present in (("albedo", layout.has_albedo), ("normal", layout.has_normal)):
            if present:
                aux[name] = self._buffer(name)

        if aux and not options.clean_aux and options.prefilter_aux:
            # Denoise each noisy auxiliary image in place with its own filter first; the colour
            # filter then treats them as clean (OIDN's recommended highest-quality path).
            for name, buffer in aux.items():
                prefilter = self._new_filter()
                self._bind(prefilter, name, buffer)
                self._bind(prefilter, "output", buffer)
                prefilter.set_quality(quality)
                prefilter.commit()
                _check_device(self._device, f"committing the {name} prefilter")
                self._prefilters.append(prefilter)

        main = self._new_filter()
        self._bind(main, "color", color)
        for name, buffer in aux.items():
            self._bind(main, name, buffer)
        self._bind(main, "output", output)
        main.set_bool("hdr", options.hdr)
        main.set_bool("cleanAux", bool(aux) and (options.clean_aux or options.prefilter_aux))
        main.set_quality(quality)
        main.commit()
        _check_device(self._device, "committing the colour filter")
        self._main = main

    def run(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """Upload the inputs, run the prefilters and the colour filter, download the result."""
        for name, image in inputs.items():
            self._buffers[name].write(0, self._nbytes, image)
        for prefilter in self._prefilters:
            prefilter.execute()
            _check_device(self._device, "running an auxiliary-image prefilter")
        if self._main is None:
            raise FarmplugError("OIDN colour filter was not built")
        self._main.execute()
        _check_device(self._device, "running the colour filter")
        result = np.empty((self.layout.height, self.layout.width, 3), dtype=np.float32)
        self._buffers["output"].read(0, self._nbytes, result)
        _check_device(self._device, "reading the denoised image")
        return result

    def release(self) -> None:
        """Release filters before the buffers they reference."""
        for flt in self._filters:
            flt.release()
        self._filters.clear()
        self._prefilters.clear()
        self._main = None
        for buffer in self._buffers.values():
            buffer.release()
        self._buffers.clear()


def _quality_constant(oidn: Any, quality: str) -> int:
    return {
        "default": oidn.OIDN_QUALITY_DEFAULT,
        "fast": oidn.OIDN_QUALITY_FAST,
        "balanced": oidn.OIDN_QUALITY_BALANCED,
        "high": oidn.OIDN_QUALITY_HIGH,
    }[quality]


def _check_device(device: pyoidn.Device, operation: str) -> None:
    """Turn OIDN's sticky device error into a FarmplugError.

    Raises:
        FarmplugError: If OIDN recorded an error since the last check.
    """
    message = device.get_error()
    if message is not None:
        raise FarmplugError(f"OIDN failed while {operation}: {message}")


def _as_rgb(name: str, image: Any, shape: tuple[int, ...] | None) -> np.ndarray:
    """Return ``image`` as a C-contiguous float32 HxWx3 array (a copy only when needed).

    Raises:
        FarmplugError: If the image is not a floating HxWx3 array or its size differs from
            ``shape``.
    """
    array = np.asarray(image)
    if not np.issubdtype(array.dtype, np.floating):
        raise FarmplugError(f"OIDN {name} image must be floating point, not {array.dtype}")
    if array.ndim != 3 or array.shape[2] != 3 or array.shape[0] == 0 or array.shape[1] == 0:
        raise FarmplugError(f"OIDN {name} image must have shape HxWx3, not {array.shape}")
    if shape is not None and array.shape != shape:
        raise FarmplugError(
            f"OIDN {name} image is {array.shape[1]}x{array.shape[0]} but colour is "
            f"{shape[1]}x{shape[0]}"
        )
    return np.ascontiguousarray(array, dtype=np.float32)


class OidnDenoiser:
    """Load once per task (create the device and filters once), denoise many frames, close().

    Filters are committed for the first frame's size and auxiliary inputs and reused while
    they stay the same; a frame of another size (or with other AOVs) re-creates them.
    Not thread-safe: use one denoiser per thread.

    Attributes:
        options: The options the denoiser was created with.
        device_name: ``"cpu"`` or ``"cuda"``, the OIDN device actually used.
    """

    def __init__(self, options: OidnOptions = OidnOptions()) -> None:
        """Create and commit the OIDN device.

        Args:
            options: Quality, auxiliary-image handling, device and thread count.

        Raises:
            FarmplugError: If pyoidn is missing, ``device="cuda"`` is requested where OIDN has
                no CUDA device, or OIDN fails to create the device.
        """
        self._oidn = _pyoidn()
        self.options = options
        self.device_name = self._choose_device(options.device)
        device_type = (
            self._oidn.OIDN_DEVICE_TYPE_CUDA
            if self.device_name == "cuda"
            else self._oidn.OIDN_DEVICE_TYPE_CPU
        )
        device = self._oidn.Device(device_type)
        if device._device == _null_handle():
            raise FarmplugError(f"OIDN could not create a {self.device_name} device")
        self._device: pyoidn.Device | None = device
        self._pipeline: _Pipeline | None = None
        try:
            if options.threads is not None and self.device_name == "cpu":
                device.set_int("numThreads", options.threads)
            device.commit()
            _check_device(device, f"creating the {self.device_name} device")
        except BaseException:
            self.close()
            raise
        logger.debug(
            "OIDN %s device ready (quality=%s, clean_aux=%s, prefilter_aux=%s, hdr=%s, threads=%s)",
            self.device_name,
            options.quality,
            options.clean_aux,
            options.prefilter_aux,
            options.hdr,
            options.threads if options.threads is not None else "all",
        )

    def _choose_device(self, choice: str) -> str:
        devices = available_devices()
        if choice == "cuda":
            if "cuda" not in devices:
                raise FarmplugError(
                    "CUDA OIDN device not available on this machine "
                    f"(available: {', '.join(devices) or 'none'}); use device='cpu' or 'auto'"
                )
            return "cuda"
        if choice == "auto" and "cuda" in devices:
            return "cuda"
        if "cpu" not in devices:
            raise FarmplugError("OIDN CPU device is not supported on this machine")
        return "cpu"

    def denoise(
        self,
        color: np.ndarray,
        albedo: np.ndarray | None = None,
        normal: np.ndarray | None = None,
    ) -> np.ndarray:
        """Denoise one frame.

        Non-finite input values are a renderer bug (NaN/Inf fireflies) that the CNN would smear
        over its whole receptive field, wiping out a block of good pixels. They are replaced by
        0 for the filter, and the original non-finite colour values are written back into the
        output at exactly those pixel channels, so the defect stays visible to the checks
        downstream instead of being silently painted over or spread.

        Args:
            color: HxWx3 linear colour (HDR unless ``options.hdr`` is False); float16/32/64,
                any strides. Never clamped.
            albedo: Optional HxWx3 albedo AOV in [0, 1].
            normal: Optional HxWx3 normal AOV in [-1, 1]; requires ``albedo`` (OIDN accepts
                normal only together with albedo).

        Returns:
            A new C-contiguous float32 HxWx3 array.

        Raises:
            FarmplugError: If the denoiser is closed, the images have the wrong shape or dtype,
                normal is given without albedo, or OIDN reports an error.
        """
        if self._device is None:
            raise FarmplugError("OIDN denoiser is closed")
        if normal is not None and albedo is None:
            raise FarmplugError("OIDN needs an albedo image when a normal image is given")
        color32 = _as_rgb("color", color, None)
        inputs = {"color": color32}
        if albedo is not None:
            inputs["albedo"] = _as_rgb("albedo", albedo, color32.shape)
        if normal is not None:
            inputs["normal"] = _as_rgb("normal", normal, color32.shape)

        color_bad = ~np.isfinite(color32)
        has_bad_color = bool(color_bad.any())
        for name, image in list(inputs.items()):
            bad = color_bad if name == "color" else ~np.isfinite(image)
            if (name == "color" and has_bad_color) or (name != "color" and bad.any()):
                logger.warning(
                    "OIDN %s input has %d non-finite values; denoising them as 0",
                    name,
                    int(bad.sum()),
                )
                # np.where copies, so the caller's arrays are never modified.
                inputs[name] = np.where(bad, np.float32(0.0), image)

        layout = _FrameLayout(
            height=color32.shape[0],
            width=color32.shape[1],
            has_albedo=albedo is not None,
            has_normal=normal is not None,
        )
        pipeline = self._pipeline_for(layout)
        result = pipeline.run(inputs)
        if has_bad_color:
            result[color_bad] = color32[color_bad]
        return result

    def _pipeline_for(self, layout: _FrameLayout) -> _Pipeline:
        if self._pipeline is not None and self._pipeline.layout == layout:
            return self._pipeline
        if self._pipeline is not None:
            logger.debug("OIDN frame layout changed to %s; re-creating filters", layout)
            self._pipeline.release()
            self._pipeline = None
        if self._device is None:
            raise FarmplugError("OIDN denoiser is closed")
        self._pipeline = _Pipeline(self._oidn, self._device, layout, self.options)
        return self._pipeline

    def close(self) -> None:
        """Release the filters, buffers and device. Safe to call more than once."""
        if self._pipeline is not None:
            self._pipeline.release()
            self._pipeline = None
        if self._device is not None:
            self._device.release()
            self._device = None

    def __enter__(self) -> OidnDenoiser:
        """Return this denoiser for use in a ``with`` block."""
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Close the denoiser."""
        self.close()


def _null_handle() -> Any:
    """OIDN's null handle, returned when a device cannot be created."""
    from pyoidn.capi import oidn_ffi

    return oidn_ffi.NULL
