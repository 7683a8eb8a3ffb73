"""Motion math: spectral volumes, normalization, resampling, loops and modal dynamics (bpy-free)."""
