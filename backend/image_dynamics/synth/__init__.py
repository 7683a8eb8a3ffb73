"""Procedural scenes with exact ground-truth motion: the project's synthetic training data.

``make_scene(seed)`` builds a random scene (grass, trees, shrubs, flowers, reeds, cloth, flags,
candles, lanterns in front of static scenery) whose motion is linear modal motion with
band-limited spectra, so its spectral volume is known exactly; ``dataset`` writes clips and
compact training shards. See DESIGN.md section 1 for the spectral-volume convention.

Modules: ``modal_field`` (compact motion description, exact volumes), ``wind`` (forces and
oscillator physics), ``shapes`` (anti-aliased SDF rasterisation), ``textures`` (photos, noise,
palettes), ``elements`` (moving things), ``backdrops`` (static scenery), ``render`` (layers,
warping, compositing, camera), ``scene`` (recipes), ``dataset`` (clips, shards, reader).
"""

from .modal_field import SourceBank, coordinates, displacements, volume_from_modal, zero_dc
from .scene import RECIPES, Scene, make_scene

__all__ = ["RECIPES", "Scene", "SourceBank", "coordinates", "displacements", "make_scene", "volume_from_modal",
           "zero_dc"]
