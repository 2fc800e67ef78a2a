"""Input probes: how much a trained model relies on audio (and text, and frame order).

``registry`` names and versions the perturbations, ``perturb`` computes them, ``signal`` caches
raw-input ones under their own encoder fingerprint, ``engine`` evaluates a run's selected
checkpoint under them, ``stats`` turns per-sample scores into reliance / FPR / hJ, and ``record``
writes the ``probes`` section of the run record. Nothing here imports torch at import time.
"""
