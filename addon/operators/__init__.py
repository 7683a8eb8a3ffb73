"""Operators, one per module; ``classes`` lists them in registration order."""

from __future__ import annotations

from . import (
    add_poke,
    bake_cache,
    cancel_prediction,
    cancel_render_frames,
    export_motion,
    fit_to_camera,
    import_motion,
    import_photo,
    predict_motion,
    remove_poke,
    render_frames,
    setup_passes,
    start_backend,
    stop_backend,
    test_connection,
    update_motion,
    use_active_plane,
    use_mesh_motion,
)

_MODULES = (
    import_photo,
    use_active_plane,
    predict_motion,
    cancel_prediction,
    test_connection,
    start_backend,
    stop_backend,
    update_motion,
    add_poke,
    remove_poke,
    import_motion,
    export_motion,
    fit_to_camera,
    setup_passes,
    bake_cache,
    render_frames,
    cancel_render_frames,
    use_mesh_motion,
)

classes = tuple(m.OPERATOR for m in _MODULES)
