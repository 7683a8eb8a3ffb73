"""Scoring predicted spectral volumes against ground truth (``image-dynamics evaluate``).

* ``metrics``   - pure numpy score functions (phase-invariant amplitude L1, moving-region mask IoU,
  power per frequency, loop closure, sample diversity) and the model card's bar check
* ``baselines`` - the trivial predictors every score is compared with: zero motion, the image-blind
  mean prior, and an adapter for the direct-regression network
"""
