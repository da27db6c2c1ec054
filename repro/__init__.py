"""repro: declarative, spec-driven reproduction of open LM pretraining experiments."""

__version__ = "0.1.0"
