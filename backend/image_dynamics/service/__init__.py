"""The backend service behind ``image-dynamics serve`` (wire format: ``image_dynamics.protocol``).

* ``engine``   - ``MotionEngine`` interface, the ``MotionPredictor`` adapter, ``create_engine``
* ``server``   - ``Server``: ROUTER socket, job queue, worker thread, heartbeats, shutdown
* ``security`` - bind policy (loopback only unless CurveZMQ keys) and key files
* ``limits``   - ``Limits`` with safe defaults

Nothing here is imported by the protocol package; importing this package does not import torch
(``engine.create_engine`` does, when the server starts).
"""
