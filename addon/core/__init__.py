"""bpy-free helpers of the add-on: everything here runs (and is unit-tested) without Blender.

* ``grid``      - the image-plane mesh grid, volume sampling at vertices, units, pinned border
* ``coords``    - modal coordinates q_k(t) (and rates) for loops, pokes and wind, per scene frame
* ``errors``    - backend / protocol failures -> one short sentence a user can act on
* ``volume_io`` - the canonical spectral-volume ``.npz`` (vendored reader / writer)
* ``imaging``   - Blender pixel buffers <-> the protocol's top-row-first uint8 RGB
* ``pc2``       - PC2 point-cache files for the optional bake

The motion math itself is not re-implemented: it is the backend's ``motion`` modules, copied into
``_vendor`` at build time (``scripts/build_extension.py``); ``_math`` imports them.
"""
