"""Inbetween stage (render every Nth frame, interpolate from motion vectors). Not built yet."""
