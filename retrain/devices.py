"""Pick the torch device from an explicit argument, so no module decides it behind the caller's back."""

from __future__ import annotations

import re

import torch

from retrain.errors import DeviceUnavailableError

_CUDA = re.compile(r"cuda(:\d+)?")


def resolve_device(device: str | None) -> str:
    """The device to use: "auto" (or None) is "cuda" when a GPU is visible, else "cpu"; "cpu", "cuda" and
    "cuda:N" are checked."""
    if device is None or device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return device
    if not isinstance(device, str) or not _CUDA.fullmatch(device):
        raise DeviceUnavailableError(device, "expected 'auto', 'cpu', 'cuda' or 'cuda:N'")
    if not torch.cuda.is_available():
        raise DeviceUnavailableError(device, "torch sees no CUDA GPU; use 'cpu' or 'auto'")
    index = int(device.split(":")[1]) if ":" in device else 0
    if index >= torch.cuda.device_count():
        raise DeviceUnavailableError(
            device, f"only {torch.cuda.device_count()} CUDA device(s) are visible"
        )
    return device
