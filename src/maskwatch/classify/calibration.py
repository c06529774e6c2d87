"""Calibrated probabilities and abstention for a classifier's softmax output.

* **Temperature scaling** (Guo et al., 2017): ``p_T = softmax(log(p) / T)`` with one ``T`` fitted on
  validation data by minimising the negative log-likelihood. ``T > 1`` softens an over-confident
  model; the top label never changes.
* **Expected calibration error** (ECE): the mean gap between confidence and accuracy over 15
  equal-width confidence bins, weighted by bin size.
* **Class bias** (optional): a log-prior shift of one rare class (``mask_incorrect``), chosen on
  validation data by :func:`choose_class_bias` as the best recall of that class at which at most a
  set share of another class (correctly masked faces) is called it; applied after the temperature.
* **Abstention**: a face whose calibrated top probability is below ``abstain_below`` is marked
  ``uncertain`` rather than given a confident label. :func:`choose_abstention` picks the lowest such
  threshold at which the faces that keep a label are right at least ``target`` of the time on
  validation data.

A model file stores what was fitted under ``calibration`` in its metadata (:func:`calibration_from_metadata`);
models without it (older files) are used as they are and never abstain.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Calibration:
    """Temperature and abstention threshold of one model (identity and never-abstain by default)."""

    temperature: float = 1.0
    abstain_below: float | None = None
    #: Log-prior shift per output (``None``: none): ``p_k * exp(bias_k)``, renormalised, after the
    #: temperature. Used to make a rare class (mask_incorrect) win more often, fitted on validation data.
    class_bias: tuple[float, ...] | None = None

    def apply(self, probs: np.ndarray) -> np.ndarray:
        """Temperature-scaled (and class-bias-shifted) probabilities (rows sum to 1)."""
        return apply_class_bias(apply_temperature(probs, self.temperature), self.class_bias)

    def uncertain(self, probs: np.ndarray) -> np.ndarray:
        """``True`` for each row of (already calibrated) probabilities whose top value is below the threshold."""
        probs = np.asarray(probs, np.float64).reshape(len(probs), -1) if len(probs) else np.zeros((0, 1))
        if self.abstain_below is None or len(probs) == 0:
            return np.zeros(len(probs), dtype=bool)
        return probs.max(1) < self.abstain_below


def apply_temperature(probs: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(log(probs) / temperature)``, computed stably; ``temperature == 1`` returns ``probs``."""
    probs = np.asarray(probs, dtype=np.float32)
    if temperature == 1.0 or probs.size == 0:
        return probs
    logits = np.log(np.clip(probs.astype(np.float64), 1e-12, 1.0)) / float(temperature)
    logits -= logits.max(axis=1, keepdims=True)
    e = np.exp(logits)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def apply_class_bias(probs: np.ndarray, bias: Sequence[float] | None) -> np.ndarray:
    """``probs * exp(bias)`` per column, rows renormalised to 1; ``None`` or all zeros return ``probs``."""
    probs = np.asarray(probs, dtype=np.float32)
    if bias is None or probs.size == 0 or not np.any(bias):
        return probs
    shifted = probs.astype(np.float64) * np.exp(np.asarray(bias, np.float64))[None, :]
    return (shifted / shifted.sum(axis=1, keepdims=True)).astype(np.float32)


def choose_class_bias(probs: np.ndarray, y: Sequence[int], k: int, protect: int, max_false: float = 0.02,
                      grid: Sequence[float] | None = None) -> dict[str, Any]:
    """The log-prior shift of class ``k`` with the best recall of ``k`` at which at most ``max_false`` of
    class ``protect`` (e.g. correctly masked faces) is called ``k`` (the smallest shift reaching that
    recall). Returns ``bias``, ``recall``, ``false_rate`` and the unshifted ``recall_before`` / ``false_before``."""
    probs, y = np.asarray(probs, np.float64), np.asarray(y)
    grid = np.round(np.arange(0.0, 4.01, 0.1), 2) if grid is None else grid
    pos, neg = y == k, y == protect

    def rates(b: float) -> tuple[float, float]:
        bias = np.zeros(probs.shape[1])
        bias[k] = b
        pred = apply_class_bias(probs, bias).argmax(1)
        return (float((pred[pos] == k).mean()) if pos.any() else 0.0,
                float((pred[neg] == k).mean()) if neg.any() else 0.0)

    r0, f0 = rates(0.0)
    best = {"bias": 0.0, "recall": r0, "false_rate": f0}
    for b in grid:
        r, f = rates(float(b))
        if f <= max_false and r > best["recall"]:
            best = {"bias": float(b), "recall": r, "false_rate": f}
    return {**best, "recall_before": r0, "false_before": f0, "max_false": max_false,
            "n_class": int(pos.sum()), "n_protected": int(neg.sum())}


def nll(probs: np.ndarray, y: Sequence[int]) -> float:
    """Mean negative log-likelihood of the true classes."""
    probs = np.asarray(probs, np.float64)
    return float(-np.mean(np.log(np.clip(probs[np.arange(len(probs)), np.asarray(y)], 1e-12, 1.0))))


def expected_calibration_error(probs: np.ndarray, y: Sequence[int], bins: int = 15) -> float:
    """ECE over ``bins`` equal-width bins of top-1 confidence."""
    probs = np.asarray(probs, np.float64)
    y = np.asarray(y)
    if len(probs) == 0:
        return float("nan")
    conf = probs.max(1)
    correct = probs.argmax(1) == y
    edges = np.linspace(0.0, 1.0, bins + 1)
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        inside = (conf > lo) & (conf <= hi) if lo > 0 else (conf >= lo) & (conf <= hi)
        if inside.any():
            ece += inside.mean() * abs(correct[inside].mean() - conf[inside].mean())
    return float(ece)


def fit_temperature(probs: np.ndarray, y: Sequence[int], grid: np.ndarray | None = None) -> float:
    """The temperature minimising validation NLL (grid search from 0.25 to 10, then a finer pass)."""
    grid = np.exp(np.linspace(np.log(0.25), np.log(10.0), 81)) if grid is None else grid
    losses = [nll(apply_temperature(probs, t), y) for t in grid]
    best = float(grid[int(np.argmin(losses))])
    fine = np.linspace(best / 1.05, best * 1.05, 21)
    losses = [nll(apply_temperature(probs, t), y) for t in fine]
    return float(round(fine[int(np.argmin(losses))], 4))


def choose_abstention(probs: np.ndarray, y: Sequence[int], target: float = 0.95,
                      grid: Sequence[float] | None = None) -> dict[str, Any]:
    """Lowest threshold on calibrated top probability at which the kept faces reach ``target`` accuracy.

    Returns ``threshold`` (``None`` when no abstention is needed: accuracy already meets the target),
    ``coverage`` (share of faces kept), ``kept_accuracy`` and ``accuracy`` (without abstention).
    """
    probs = np.asarray(probs, np.float64)
    y = np.asarray(y)
    conf, correct = probs.max(1), probs.argmax(1) == y
    acc = float(correct.mean()) if len(y) else float("nan")
    out = {"target": target, "accuracy": acc, "threshold": None, "coverage": 1.0, "kept_accuracy": acc}
    if len(y) == 0 or acc >= target:
        return out
    for t in grid if grid is not None else np.round(np.arange(0.40, 0.99, 0.01), 2):
        keep = conf >= t
        if keep.any() and correct[keep].mean() >= target:
            return {**out, "threshold": float(t), "coverage": float(keep.mean()),
                    "kept_accuracy": float(correct[keep].mean())}
    return {**out, "threshold": None, "note": "target not reachable; no abstention"}


def calibration_from_metadata(meta: dict[str, Any]) -> Calibration:
    """The :class:`Calibration` a model file stores (``{"temperature", "abstain_below"}``), or identity."""
    cal = meta.get("calibration") or {}
    t = float(cal.get("temperature", 1.0) or 1.0)
    thr = cal.get("abstain_below")
    bias = None
    if cal.get("class_bias"):  # {"class name": log shift}, in the file's class order
        classes = [str(c) for c in meta.get("classes", [])]
        bias = tuple(float(cal["class_bias"].get(c, 0.0)) for c in classes) or None
    return Calibration(temperature=t if t > 0 else 1.0, abstain_below=None if thr is None else float(thr),
                       class_bias=bias)
