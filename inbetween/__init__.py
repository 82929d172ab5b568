"""Inbetween stage: frames between rendered keyframes, from the renderer's motion vectors and depth.

The interpolation core (:mod:`farmplug.inbetween.interpolate`) imports torch; importing this package does not.
"""
