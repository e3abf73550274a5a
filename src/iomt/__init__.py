"""iomt: an Internet-of-Medical-Things platform.

Devices send vital signs and images; the platform triages vitals with a fuzzy-logic engine,
diagnoses images with trained models, alerts clinicians and lets hospitals train together
by federated learning. Importing this package has no side effects and never imports torch.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
