"""Watching each new batch with the champion: drift scoring, and probation after a promotion."""
