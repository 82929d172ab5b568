"""Reading and writing render frames (single-part, multi-part and Blender multilayer EXR) on OpenImageIO.

A :class:`Frame` is every part (OIIO subimage) of a file with its header and pixels. Stages take
features out of it (:meth:`Frame.feature`) and put results back (:meth:`Frame.with_feature`);
:func:`write_frame` writes every part again, so layers the stage did not change, the header
metadata and the data/display windows survive, and adds farmplug provenance attributes. Writes
go to a temp file in the destination folder and are renamed into place, and never replace an
input file.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import OpenImageIO as oiio

from farmplug.errors import ImageError, MissingPassError
from farmplug.imageio.channels import (
    FEATURE_WIDTH,
    HOW_TO_ENABLE,
    candidates,
    split_channel,
)
from farmplug.schema import default_file_mode

log = logging.getLogger(__name__)

PROVENANCE_PREFIX = "farmplug:"
# Attributes OIIO adds when reading that describe the old file, not the image; never copied.
_READER_ONLY_ATTRIBUTES = ("openexr:chunkCount", "oiio:subimages", "oiio:subimagename")


@dataclass(frozen=True)
class Window:
    """A pixel rectangle: origin and size (EXR data or display window)."""

    x: int
    y: int
    width: int
    height: int


@dataclass(frozen=True)
class Part:
    """One EXR part: its header (an OIIO ImageSpec, treated as read-only) and float32 pixels.

    ``pixels`` has shape (height, width, channels) and covers the data window.
    """

    spec: oiio.ImageSpec
    pixels: np.ndarray

    @property
    def name(self) -> str:
        return str(self.spec.getattribute("name") or "")

    @property
    def channels(self) -> tuple[str, ...]:
        return tuple(self.spec.channelnames)

    @property
    def data_window(self) -> Window:
        s = self.spec
        return Window(s.x, s.y, s.width, s.height)

    @property
    def display_window(self) -> Window:
        s = self.spec
        return Window(s.full_x, s.full_y, s.full_width, s.full_height)


@dataclass(frozen=True)
class FeatureLocation:
    """Where a feature lives: the part index and the channel indices, in component order."""

    part: int
    channels: tuple[int, ...]
    names: tuple[str, ...]


@dataclass(frozen=True)
class Frame:
    """Every part of one image file."""

    parts: tuple[Part, ...]
    path: Path | None = None
    vocabulary: str | None = None
    _locations: dict = field(default_factory=dict, compare=False, repr=False)

    def locate(self, feature: str) -> FeatureLocation | None:
        """Find the channels carrying ``feature``, or None when the file has none."""
        if feature in self._locations:
            return self._locations[feature]
        try:
            wanted = candidates(feature, self.vocabulary)
        except KeyError as err:
            raise ImageError(str(err.args[0]), path=self.path) from None
        if feature != "color" and "color" not in self._locations:
            self.locate("color")
        found = None
        for pass_name in wanted:
            found = self._find(pass_name.pass_name, pass_name.components)
            if found is not None:
                break
        self._locations[feature] = found
        return found

    def _part_order(self) -> list[int]:
        # In a multi-view file, look first in the parts of the colour's view (left with left).
        order = list(range(len(self.parts)))
        color = self._locations.get("color")
        if color is None:
            return order
        view = self.parts[color.part].spec.getattribute("view")
        return sorted(order, key=lambda i: self.parts[i].spec.getattribute("view") != view)

    def _find(self, pass_name: str, components: tuple[str, ...]) -> FeatureLocation | None:
        for index in self._part_order():
            part = self.parts[index]
            # A multi-part writer may put the layer/pass in the part name and bare letters in channels.
            part_pass = part.name.rsplit(".", 1)[-1] if part.name else ""
            by_layer: dict[str, dict[str, int]] = {}
            for ch_index, full in enumerate(part.channels):
                layer, pname, comp = split_channel(full)
                if pname == "" and part_pass and pass_name:
                    pname = part_pass
                if pname == pass_name and comp in components:
                    by_layer.setdefault(layer, {}).setdefault(comp, ch_index)
            for comps in by_layer.values():
                if all(c in comps for c in components):
                    idx = tuple(comps[c] for c in components)
                    return FeatureLocation(index, idx, tuple(part.channels[i] for i in idx))
        return None

    def features(self) -> set[str]:
        """The features this frame has."""
        return {f for f in FEATURE_WIDTH if self.locate(f) is not None}

    def has(self, feature: str) -> bool:
        return self.locate(feature) is not None

    def feature(self, feature: str) -> np.ndarray:
        """The feature's pixels, (height, width, components) float32 over its part's data window.

        Raises:
            MissingPassError: the frame has no such pass; the message says what to enable.
        """
        loc = self.locate(feature)
        if loc is None:
            raise MissingPassError(
                f"no {feature} pass in this file; {HOW_TO_ENABLE.get(feature, 'enable it in the renderer')}",
                path=self.path,
            )
        return self.parts[loc.part].pixels[:, :, list(loc.channels)]

    def feature_window(self, feature: str) -> Window:
        """The data window of the part holding ``feature``.

        Raises:
            MissingPassError: the frame has no such pass.
        """
        loc = self.locate(feature)
        if loc is None:
            raise MissingPassError(f"no {feature} pass in this file", path=self.path)
        return self.parts[loc.part].data_window

    def with_feature(self, feature: str, values: np.ndarray) -> Frame:
        """A new frame with ``feature``'s channels replaced by ``values``; everything else untouched.

        Raises:
            MissingPassError: the frame has no such pass.
            ImageError: ``values`` has the wrong shape.
        """
        loc = self.locate(feature)
        if loc is None:
            raise MissingPassError(f"cannot replace {feature}: no such pass", path=self.path)
        part = self.parts[loc.part]
        expected = part.pixels.shape[:2] + (len(loc.channels),)
        if values.shape != expected:
            raise ImageError(f"{feature} result has shape {values.shape}, expected {expected}", path=self.path)
        pixels = part.pixels.copy()
        pixels[:, :, list(loc.channels)] = values.astype(np.float32, copy=False)
        parts = list(self.parts)
        parts[loc.part] = Part(part.spec, pixels)
        return replace(self, parts=tuple(parts), _locations=dict(self._locations))

    @property
    def header(self) -> Mapping[str, object]:
        """The first part's header attributes (name -> value)."""
        return {a.name: a.value for a in self.parts[0].spec.extra_attribs}


def _printable(name: str) -> bool:
    return bool(name) and all(32 <= ord(c) < 127 for c in name)


def _clear_oiio_errors(inp: oiio.ImageInput | None = None) -> str:
    """Collect (and so clear) pending OIIO errors; OIIO complains at exit about unread ones."""
    msgs = []
    if inp is not None:
        msgs.append(inp.geterror())
    msgs.append(oiio.geterror())
    return "; ".join(m.strip().replace("\n", " ") for m in msgs if m and m.strip())


def _check_spec(spec: oiio.ImageSpec, index: int, path: Path) -> None:
    if spec.deep:
        raise ImageError(f"part {index} is a deep image; deep EXR is not supported", path=path)
    if spec.width <= 0 or spec.height <= 0 or spec.nchannels <= 0:
        raise ImageError(f"part {index} has an empty data window or no channels", path=path)
    if spec.width * spec.height * spec.nchannels > 1 << 31:
        raise ImageError(f"part {index} is implausibly large ({spec.width}x{spec.height}x{spec.nchannels})", path=path)
    bad = [a.name for a in spec.extra_attribs if not _printable(a.name)]
    bad += [c for c in spec.channelnames if not _printable(c)]
    if bad:
        raise ImageError(f"corrupt header in part {index}: unreadable attribute or channel name {bad[0]!r}", path=path)
    if len(set(spec.channelnames)) != len(spec.channelnames):
        raise ImageError(f"corrupt header in part {index}: duplicate channel names", path=path)


#: The memory an image may ask for, in MB (``FARMPLUG_IMAGE_MEMORY_MB``); default a quarter of
#: this machine's memory, at least 1 GB.
MEMORY_ENV = "FARMPLUG_IMAGE_MEMORY_MB"


def memory_budget_mb() -> int:
    """How much memory reading one image may take (see :data:`MEMORY_ENV`).

    Raises:
        ImageError: the environment variable is not a positive number.
    """
    configured = os.environ.get(MEMORY_ENV, "").strip()
    if configured:
        try:
            value = int(float(configured))
        except ValueError:
            value = 0
        if value <= 0:
            raise ImageError(f"{MEMORY_ENV}={configured!r} must be a positive number of megabytes")
        return value
    try:
        physical = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        physical = 4 << 30
    return max(1024, physical // 4 >> 20)


def _check_memory(specs: list[oiio.ImageSpec], path: Path) -> None:
    """Refuse an image whose headers ask for more memory than the budget (a header bomb: a small file
    whose data window claims gigapixels), before any pixel is read."""
    # Each part becomes a float32 array, and OpenImageIO holds a decode buffer of about the same size.
    need = sum(spec.width * spec.height * spec.nchannels * 4 for spec in specs) * 2
    budget = memory_budget_mb()
    if need > budget << 20:
        raise ImageError(f"needs {need >> 20} MB of memory to read ({len(specs)} part(s), {specs[0].width}x"
                         f"{specs[0].height}), over the budget of {budget} MB ({MEMORY_ENV})", path=path)


@contextmanager
def _native_stderr_to_log() -> Iterator[None]:
    """Route what native code writes to file descriptor 2 into the debug log while reading.

    OpenEXR's C core prints every decode problem of a damaged file straight to stderr (dozens of
    lines for one file); farmplug reports one line naming the file, and keeps the rest for ``-v``.
    """
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            text = sink.read().decode("utf-8", errors="replace").strip()
            if text:
                log.debug("image library messages:\n%s", text)


def read_header(path: str | Path, *, vocabulary: str | None = None) -> Frame:
    """Every part's header, without the pixels (each part's ``pixels`` is empty): enough to see
    which passes a file holds, its windows and its size, for the cost of reading its headers.

    Raises:
        ImageError: missing, unreadable or corrupt header; the message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageError("file not found" if not path.exists() else "not a regular file", path=path)
    with _native_stderr_to_log():
        inp = oiio.ImageInput.open(str(path))
        if inp is None:
            raise ImageError(f"cannot open: {_clear_oiio_errors() or 'not an image OpenImageIO can read'}", path=path)
        try:
            parts = []
            while inp.seek_subimage(len(parts), 0):
                spec = inp.spec().copy() if hasattr(inp.spec(), "copy") else oiio.ImageSpec(inp.spec())
                _check_spec(spec, len(parts), path)
                parts.append(Part(spec, np.empty((0, 0, spec.nchannels), dtype=np.float32)))
        except (UnicodeDecodeError, ValueError, RuntimeError, TypeError) as err:
            # As read_frame: fuzzed headers can hold bytes that are not text, or values the bindings cannot convert.
            raise ImageError(f"corrupt header: {type(err).__name__}: {err}", path=path) from None
        finally:
            _clear_oiio_errors(inp)
            inp.close()
    if not parts:
        raise ImageError("no image in the file", path=path)
    return Frame(tuple(parts), path=path, vocabulary=vocabulary)


def read_frame(path: str | Path, *, vocabulary: str | None = None) -> Frame:
    """Read every part of an image file (mip level 0) as float32.

    Args:
        path: the file.
        vocabulary: renderer channel vocabulary (``blender``, ``arnold``...); None tries them all.

    Raises:
        ImageError: missing, unreadable, corrupt or unsupported file; the message names it.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageError("file not found" if not path.exists() else "not a regular file", path=path)
    with _native_stderr_to_log():
        return _read_parts(path, vocabulary)


def _read_parts(path: Path, vocabulary: str | None) -> Frame:
    inp = oiio.ImageInput.open(str(path))
    if inp is None:
        msg = _clear_oiio_errors() or "not an image OpenImageIO can read"
        raise ImageError(f"cannot open: {msg}", path=path)
    try:
        # Every header first: an image is sized (and refused, when too large) before a pixel is read.
        specs: list[oiio.ImageSpec] = []
        while inp.seek_subimage(len(specs), 0):
            spec = inp.spec().copy() if hasattr(inp.spec(), "copy") else oiio.ImageSpec(inp.spec())
            _check_spec(spec, len(specs), path)
            specs.append(spec)
        _check_memory(specs, path)
        parts: list[Part] = []
        declared = None
        for index, spec in enumerate(specs):
            if not inp.seek_subimage(index, 0):
                raise ImageError(f"part {index} cannot be read back: {_clear_oiio_errors(inp)}", path=path)
            if declared is None:
                declared = spec.getattribute("oiio:subimages")
            pixels = inp.read_image(index, 0, 0, spec.nchannels, "float")
            err = _clear_oiio_errors(inp)
            if pixels is None or err:
                raise ImageError(f"corrupt pixel data in part {index}: {err or 'read failed'}", path=path)
            pixels = np.asarray(pixels, dtype=np.float32)
            if pixels.ndim == 2:
                pixels = pixels[:, :, None]
            if pixels.shape != (spec.height, spec.width, spec.nchannels):
                raise ImageError(
                    f"corrupt part {index}: pixel data {pixels.shape} does not match the header "
                    f"({spec.height}, {spec.width}, {spec.nchannels})",
                    path=path,
                )
            for attr in _READER_ONLY_ATTRIBUTES:
                spec.erase_attribute(attr)
            parts.append(Part(spec, pixels))
        err = _clear_oiio_errors(inp)
        if not parts:
            raise ImageError(f"no readable image data: {err or 'empty file'}", path=path)
        if declared is not None and int(declared) != len(parts):
            raise ImageError(f"corrupt file: header declares {declared} parts but {len(parts)} can be read", path=path)
        return Frame(tuple(parts), path=path, vocabulary=vocabulary)
    except (UnicodeDecodeError, ValueError, RuntimeError, TypeError) as err:
        # Fuzzed headers can hold bytes that are not text, or values the bindings cannot convert.
        raise ImageError(f"corrupt header: {type(err).__name__}: {err}", path=path) from None
    finally:
        inp.close()
        _clear_oiio_errors(inp)


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def write_frame(
    path: str | Path,
    frame: Frame,
    *,
    provenance: Mapping[str, object] | None = None,
    inputs: Iterable[str | Path] = (),
) -> Path:
    """Write every part of ``frame`` to ``path`` atomically, with provenance attributes.

    Each part keeps its header, channel names and per-channel storage format (half stays half),
    data window and display window. ``provenance`` keys are written as ``farmplug:<key>``
    attributes on every part.

    Args:
        path: destination (the extension picks the format; ``.exr`` for multi-part).
        frame: what to write.
        provenance: e.g. ``{"stage": "denoise", "backend": "oidn", "version": "0.1.0", "plan": "..."}``.
        inputs: files this output was made from; writing over any of them is refused.

    Raises:
        ImageError: the destination is an input, the format cannot hold the parts, or the write fails.
    """
    path = Path(path)
    sources = [Path(p) for p in inputs] + ([frame.path] if frame.path is not None else [])
    for src in sources:
        if path.resolve() == src.resolve() or _same_file(path, src):
            raise ImageError(f"refusing to overwrite the input file {src}", path=path)
    if path.is_dir():
        raise ImageError("is a folder, not a file; choose a file name (with a frame token for several frames)", path=path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        specs = []
        for part in frame.parts:
            spec = oiio.ImageSpec(part.spec)
            for key, value in (provenance or {}).items():
                spec.attribute(PROVENANCE_PREFIX + key, str(value))
            specs.append(spec)
        out = oiio.ImageOutput.create(str(tmp))
        if out is None:
            raise ImageError(f"no writer for this extension: {_clear_oiio_errors()}", path=path)
        try:
            if len(specs) > 1 and not out.supports("multiimage"):
                raise ImageError(f"this format cannot hold {len(specs)} parts; use .exr", path=path)
            ok = out.open(str(tmp), specs) if len(specs) > 1 else out.open(str(tmp), specs[0], "Create")
            for index, (part, spec) in enumerate(zip(frame.parts, specs, strict=True)):
                if index > 0:
                    ok = ok and out.open(str(tmp), spec, "AppendSubimage")
                ok = ok and out.write_image(np.ascontiguousarray(part.pixels, dtype=np.float32))
                if not ok:
                    break
            ok = out.close() and ok
            if not ok:
                raise ImageError(f"write failed: {out.geterror() or _clear_oiio_errors()}{disk_full_hint(tmp)}",
                                 path=path)
        finally:
            _clear_oiio_errors()
        os.chmod(tmp, default_file_mode())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    log.debug("wrote %s (%d parts)", path, len(frame.parts))
    return path


def image_is_valid(path: str | Path) -> bool:
    """True when ``path`` exists and reads back completely (used to skip finished tasks)."""
    try:
        read_frame(path)
    except ImageError:
        return False
    return True


def disk_full_hint(tmp: Path) -> str:
    """`` (the disk is full: ...)`` when the folder's file system has no room left, which OpenEXR's
    own message ("Failed to write pixel data") does not say."""
    try:
        written = tmp.stat().st_size if tmp.exists() else 0
        room = os.statvfs(tmp.parent)
    except OSError:
        return ""
    free = room.f_bavail * room.f_frsize
    if free > max(written, 1 << 16):
        return ""
    return f" (no space left on the device: {free // 1024} KB free in {tmp.parent})"
