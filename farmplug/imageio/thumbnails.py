"""Small display PNGs for the report: tone-mapped renders and FLIP error heat maps.

Thumbnails are written with OpenImageIO, downscaled with a filtered resize so noise is shown
honestly averaged rather than aliased, and written atomically (temp file + rename) so a reader
never sees a half-written PNG.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

import numpy as np
import OpenImageIO as oiio

from farmplug.errors import ImageError
from farmplug.quality import tonemap
from farmplug.schema import default_file_mode

log = logging.getLogger(__name__)


def tonemap_png(rgb: np.ndarray, path: Path, *, max_width: int = 480) -> None:
    """Write linear HDR RGB as a display-referred 8-bit PNG thumbnail.

    The tone curve is :func:`farmplug.quality.tonemap` (NaN and negatives to 0, Reinhard
    ``x / (1 + x)`` at a fixed exposure, then the sRGB OETF), the same curve PSNR and SSIM are
    computed on, so the thumbnails show what the numbers measure. The exposure is not
    normalised per image: a darker result looks darker.

    Args:
        rgb: HxWx3 (or HxWx4, alpha ignored) linear float image.
        path: Output ``.png`` path; parent folders are created.
        max_width: Downscale (keeping the aspect ratio) when the image is wider than this.

    Raises:
        ImageError: The array has the wrong shape or the PNG cannot be written.
    """
    array = np.asarray(rgb)
    if array.ndim != 3 or array.shape[2] < 3:
        raise ImageError(f"expected an HxWx3 image, got shape {array.shape}", path=path)
    display = tonemap(array[:, :, :3])
    _write_png(display, Path(path), max_width=max_width)


def error_map_png(err: np.ndarray, path: Path, *, max_width: int = 480) -> None:
    """Write a per-pixel error map (FLIP, in [0, 1]) as a magma heat-map PNG.

    Magma is the colour map FLIP's own tools use, so the picture reads like FLIP's output:
    black is no error, pale yellow the largest. Values are clamped to [0, 1]; NaN counts as 1
    (a broken pixel is the worst error, as in :mod:`farmplug.quality`). The map is downscaled
    before colouring, so a thumbnail shows the local mean error.

    Args:
        err: HxW (or HxWx1) error values.
        path: Output ``.png`` path; parent folders are created.
        max_width: Downscale (keeping the aspect ratio) when the map is wider than this.

    Raises:
        ImageError: The array has the wrong shape or the PNG cannot be written.
    """
    array = np.asarray(err, dtype=np.float32)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim != 2:
        raise ImageError(f"expected an HxW error map, got shape {array.shape}", path=path)
    values = np.clip(np.nan_to_num(array, nan=1.0, posinf=1.0, neginf=0.0), 0.0, 1.0)
    buf = _resized(_to_imagebuf(values[:, :, None]), max_width)
    coloured = oiio.ImageBufAlgo.color_map(buf, 0, "magma")
    if coloured.has_error:
        raise ImageError(f"cannot colour the error map: {coloured.geterror()}", path=path)
    _write_buf(coloured, Path(path))


def _to_imagebuf(pixels: np.ndarray) -> oiio.ImageBuf:
    height, width, channels = pixels.shape
    buf = oiio.ImageBuf(oiio.ImageSpec(width, height, channels, oiio.FLOAT))
    buf.set_pixels(oiio.ROI(), np.ascontiguousarray(pixels, dtype=np.float32))
    return buf


def _resized(buf: oiio.ImageBuf, max_width: int) -> oiio.ImageBuf:
    spec = buf.spec()
    if max_width <= 0 or spec.width <= max_width:
        return buf
    new_height = max(1, round(spec.height * max_width / spec.width))
    roi = oiio.ROI(0, max_width, 0, new_height, 0, 1, 0, spec.nchannels)
    return oiio.ImageBufAlgo.resize(buf, roi=roi)


def _write_png(display: np.ndarray, path: Path, *, max_width: int) -> None:
    _write_buf(_resized(_to_imagebuf(display), max_width), path)


def _write_buf(buf: oiio.ImageBuf, path: Path) -> None:
    """Write ``buf`` as 8-bit PNG through a temp file in the same folder and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # OIIO picks the format from the extension, so the temp name must end in .png.
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp.png", dir=path.parent)
    os.close(fd)
    try:
        if not buf.write(tmp, oiio.UINT8, "png"):
            raise ImageError(f"cannot write PNG: {buf.geterror() or oiio.geterror()}", path=path)
        os.chmod(tmp, default_file_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    log.debug("wrote thumbnail %s (%dx%d)", path, buf.spec().width, buf.spec().height)
