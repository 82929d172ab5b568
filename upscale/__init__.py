"""Upscale stage (render fewer pixels, upscale guided by full-resolution AOVs): not built yet."""
