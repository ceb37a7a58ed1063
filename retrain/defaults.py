"""Defaults shared by the library and the daemon's config, kept here so there is one copy of each.

Importing this module loads nothing heavy: `daemon.config` reads it on every CLI start.
"""

# Tokens kept per text; why 128 is in the description of `ModelConfig.max_length` (retrain/config.py).
MAX_LENGTH = 128
