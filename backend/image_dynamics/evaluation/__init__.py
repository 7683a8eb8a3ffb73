"""Scoring predicted spectral volumes against ground truth (``image-dynamics evaluate``).

* ``metrics``   - pure numpy score functions (phase-invariant amplitude L1, moving-region mask IoU,
  power per frequency, loop closure, sample diversity) and the model card's bar check
* ``baselines`` - the trivial predictors every score is compared with: zero motion, the image-blind
  mean prior, and an adapter for the direct-regression network
* ``ceilings`` - oracles that see the true motion but lose one thing each (resolution, the VAE,
  the wind level): the best any predictor here could score
* ``report``    - the default scored dataset and strict-JSON report files
"""
