"""Alias moves with their event rows under one lock, and retention of version weights."""
