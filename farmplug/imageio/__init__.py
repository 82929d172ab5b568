"""Image I/O on OpenImageIO: frames made of EXR parts, and the renderer channel vocabulary."""

from farmplug.imageio.channels import FEATURES, VOCABULARIES, split_channel
from farmplug.imageio.exr import (
    Frame,
    Part,
    Window,
    image_is_valid,
    read_frame,
    read_header,
    write_frame,
)

__all__ = [
    "FEATURES",
    "VOCABULARIES",
    "Frame",
    "Part",
    "Window",
    "image_is_valid",
    "read_frame",
    "read_header",
    "split_channel",
    "write_frame",
]
