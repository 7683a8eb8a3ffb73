"""Training the motion predictor (and the direct-regression baseline) with the project's own scripts.

Modules, one job each:

* ``data``             - the preprocessed cache at model resolution (images, normalized volumes,
  optional precomputed VAE latents) and the torch datasets over it (memory-mapped)
* ``loop``             - shared machinery: seeding, device / AMP / DDP set-up, the step loop with
  progress bar, held-out evaluation, safetensors checkpoints and resume, Ctrl-C handling
* ``train_vae``        - KL-VAE over single frequency slices (paper section 4.1)
* ``latents``          - encode the cache with a trained VAE (precomputed latents, whitening stats)
* ``train_denoiser``   - stage 1 (independent slices, frequency attention off) and stage 2
  (whole volumes, only the frequency attention trained)
* ``train_regression`` - the direct-regression baseline (photo -> normalized volume, L1)
* ``export``           - assemble a ``MotionPredictor`` (or the baseline) into a model folder

The command line is ``image-dynamics train cache|vae|latents|denoiser|regression|export``
(``commands/train.py``). Everything here imports torch; nothing is imported eagerly.
"""
