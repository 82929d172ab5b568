"""Channel vocabulary: which renderer channel names carry which feature.

A *feature* is what a stage asks for (``color``, ``alpha``, ``albedo``, ``normal``, ``depth``,
``motion``); a renderer writes it under its own AOV names. A channel name is split into
``<layer>.<pass>.<component>`` from the right: ``ViewLayer.Denoising Albedo.R`` is pass
``Denoising Albedo``, component ``R``; a bare ``R`` is pass ``""``, component ``R``.

Blender Cycles is implemented and tested; the other renderers' names are listed from their
documentation (see docs/channels.md) and are matched the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

FEATURES: tuple[str, ...] = ("color", "alpha", "albedo", "normal", "depth", "motion")

# Components each feature needs, in order.
FEATURE_WIDTH = {"color": 3, "alpha": 1, "albedo": 3, "normal": 3, "depth": 1, "motion": 4}


@dataclass(frozen=True)
class PassName:
    """One way a renderer names a feature: a pass name and its component letters, in order."""

    pass_name: str
    components: tuple[str, ...]


def _p(pass_name: str, components: str | tuple[str, ...]) -> PassName:
    comps = tuple(components) if isinstance(components, str) else components
    return PassName(pass_name, comps)


# Plain EXR convention (RGBA, Z): used by every vocabulary as the last resort for colour/alpha/depth.
_PLAIN = {
    "color": (_p("", "RGB"), _p("rgba", "RGB"), _p("beauty", "RGB")),
    "alpha": (_p("", "A"), _p("rgba", "A"), _p("beauty", "A")),
    "depth": (_p("", "Z"), _p("depth", "Z")),
}

VOCABULARIES: dict[str, dict[str, tuple[PassName, ...]]] = {
    # Blender Cycles multilayer EXR (one part per pass, or one part holding every channel).
    "blender": {
        "color": (_p("Combined", "RGB"),),
        "alpha": (_p("Combined", "A"),),
        "albedo": (_p("Denoising Albedo", "RGB"),),
        "normal": (_p("Denoising Normal", "XYZ"), _p("Normal", "XYZ")),
        "depth": (_p("Depth", "Z"), _p("Denoising Depth", "Z")),
        "motion": (_p("Vector", "XYZW"),),
    },
    # Arnold (AOV names from the Arnold user guide; denoise_albedo is written for OIDN/Noice).
    "arnold": {
        "color": (_p("RGBA", "RGB"),),
        "alpha": (_p("RGBA", "A"),),
        "albedo": (_p("denoise_albedo", "RGB"), _p("albedo", "RGB")),
        "normal": (_p("N", "XYZ"), _p("N", "RGB")),
        "depth": (_p("Z", "Z"), _p("Z", "R")),
        "motion": (_p("motionvector", "RGB"),),
    },
    # Houdini Karma (Karma AOV names; albedo/N are what Karma's OIDN denoiser reads).
    "karma": {
        "color": (_p("C", "RGB"),),
        "alpha": (_p("C", "A"),),
        "albedo": (_p("albedo", "RGB"),),
        "normal": (_p("N", "XYZ"), _p("N", "RGB")),
        "depth": (_p("Pz", "R"), _p("Pz", "Z")),
        "motion": (_p("motionvector", "RGB"), _p("motionvector", "XYZ")),
    },
    # Pixar RenderMan (Ci/a and the denoiser's mse_albedo, Nn, zfiltered, motion AOVs).
    "renderman": {
        "color": (_p("Ci", "RGB"),),
        "alpha": (_p("a", "R"), _p("a", "A")),
        "albedo": (_p("mse_albedo", "RGB"), _p("albedo", "RGB")),
        "normal": (_p("Nn", "RGB"), _p("normal", "RGB")),
        "depth": (_p("zfiltered", "R"), _p("z", "R")),
        "motion": (_p("motionFore", "RGB"),),
    },
    # Chaos V-Ray render elements (VRayDiffuseFilter, VRayNormals, VRayZDepth, VRayVelocity).
    "vray": {
        "color": (_p("RGBA", "RGB"), _p("RGB color", "RGB")),
        "alpha": (_p("RGBA", "A"), _p("Alpha", "R")),
        "albedo": (_p("diffuse", "RGB"), _p("DiffuseFilter", "RGB")),
        "normal": (_p("normals", "XYZ"), _p("normals", "RGB"), _p("Normals", "RGB")),
        "depth": (_p("zDepth", "R"), _p("ZDepth", "Z")),
        "motion": (_p("velocity", "RGB"), _p("Velocity", "RGB")),
    },
}

# Order in which vocabularies are tried when a file does not say which renderer wrote it.
AUTO_ORDER: tuple[str, ...] = ("blender", "arnold", "karma", "renderman", "vray")

# What to enable in each renderer to get a missing feature (for error messages).
HOW_TO_ENABLE = {
    "albedo": "enable the 'Denoising Data' passes (Blender: View Layer > Passes > Data > Denoising Data)",
    "normal": "enable the 'Denoising Data' passes (Blender: View Layer > Passes > Data > Denoising Data)",
    "depth": "enable the Z/Depth pass (Blender: View Layer > Passes > Data > Z)",
    "motion": "enable the Vector pass and disable motion blur (Blender: View Layer > Passes > Data > Vector)",
    "color": "write the beauty/Combined pass",
    "alpha": "render with an alpha channel (Blender: Film > Transparent, or RGBA output)",
}


def split_channel(name: str) -> tuple[str, str, str]:
    """Split ``layer.pass.component`` from the right.

    ``"ViewLayer.Combined.R"`` -> ``("ViewLayer", "Combined", "R")``, ``"N.X"`` -> ``("", "N", "X")``,
    ``"R"`` -> ``("", "", "R")``. Pass names may contain spaces but not dots.
    """
    pieces = name.rsplit(".", 2)
    if len(pieces) == 3:
        return pieces[0], pieces[1], pieces[2]
    if len(pieces) == 2:
        return "", pieces[0], pieces[1]
    return "", "", pieces[0]


def candidates(feature: str, vocabulary: str | None = None) -> tuple[PassName, ...]:
    """The pass names that may carry ``feature``: the vocabulary's own, then the plain EXR ones.

    Raises:
        KeyError: unknown feature or vocabulary (callers turn this into a FarmplugError).
    """
    if feature not in FEATURE_WIDTH:
        raise KeyError(f"unknown feature {feature!r}; known: {', '.join(FEATURES)}")
    names = AUTO_ORDER if vocabulary is None else (vocabulary,)
    found: list[PassName] = []
    for vocab in names:
        if vocab not in VOCABULARIES:
            raise KeyError(f"unknown renderer vocabulary {vocab!r}; known: {', '.join(VOCABULARIES)}")
        found.extend(VOCABULARIES[vocab].get(feature, ()))
    found.extend(_PLAIN.get(feature, ()))
    return tuple(found)


# How a layer may be resampled in space or time, by pass name (case-insensitive, Blender first).
# "id" layers hold labels (object/material index, Cryptomatte): they must never be blended.
_LAYER_KINDS: tuple[tuple[str, str], ...] = (
    ("vector", "vector"),
    ("motionvector", "vector"),
    ("velocity", "vector"),
    ("depth", "depth"),
    ("denoising depth", "depth"),
    ("z", "depth"),
    ("pz", "depth"),
    ("zdepth", "depth"),
    ("normal", "normal"),
    ("denoising normal", "normal"),
    ("n", "normal"),
    ("nn", "normal"),
    ("normals", "normal"),
    ("object index", "id"),
    ("material index", "id"),
    ("indexob", "id"),
    ("indexma", "id"),
    ("crypto", "id"),
    ("objectid", "id"),
    ("materialid", "id"),
    ("id", "id"),
)


def layer_kind(pass_name: str) -> str:
    """How a pass may be resampled: ``color``, ``depth``, ``normal``, ``vector`` or ``id``.

    Anything not recognised is treated as colour-like (filtered linearly), which is right for
    beauty, albedo, light groups and other radiometric AOVs. Cryptomatte layers (``CryptoObject00``
    and friends) are ``id``.
    """
    name = pass_name.strip().lower()
    if name.startswith("crypto"):
        return "id"
    for key, kind in _LAYER_KINDS:
        if name == key:
            return kind
    return "color"
