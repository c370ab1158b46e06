"""Precision advice follows what the CPU has: bf16 pays off with AMX only."""

from __future__ import annotations

import torch

from sam3_core import device as dev


def test_bf16_advice_follows_amx(monkeypatch) -> None:
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)
    assert dev.fast_bf16("cpu") and dev.recommended_precision("cpu") == "bf16"
    assert dev.precision_note("cpu", "bf16") is None
    assert "bf16" in dev.precision_note("cpu", "fp32")
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    assert not dev.fast_bf16("cpu") and dev.recommended_precision("cpu") == "fp32"
    assert "no faster than fp32" in dev.precision_note("cpu", "bf16")
    assert dev.precision_note("cpu", "fp32") is None
