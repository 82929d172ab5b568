"""Denoise stage: few samples per pixel, denoised with the renderer's albedo and normal AOVs."""
