"""Metrics for a classifier on labelled crops: loss, accuracy, per-class P/R/F1, ROC AUC, confusion matrix."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np


def roc_auc(y_true: np.ndarray, score: np.ndarray) -> float | None:
    """Area under the ROC curve (rank statistic, ties averaged); ``None`` if only one class is present."""
    y_true = np.asarray(y_true).astype(bool)
    n_pos, n_neg = int(y_true.sum()), int((~y_true).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(score, kind="mergesort")
    ranks = np.empty(len(score), dtype=np.float64)
    s = np.asarray(score)[order]
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and s[j + 1] == s[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[y_true].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def classification_metrics(y_true: Sequence[int], probs: np.ndarray, classes: Sequence[str]) -> dict[str, Any]:
    """All metrics for integer labels ``y_true`` and probabilities ``probs`` ``(N, C)``.

    ``loss`` is binary cross-entropy averaged over classes and samples, as Keras computes it for
    one-hot targets on a softmax output.
    """
    y = np.asarray(y_true, dtype=int)
    p = np.clip(np.asarray(probs, dtype=np.float64), 1e-7, 1 - 1e-7)
    n, c = p.shape
    onehot = np.eye(c)[y]
    loss = float(-(onehot * np.log(p) + (1 - onehot) * np.log(1 - p)).mean()) if n else float("nan")
    pred = p.argmax(1)
    cm = np.zeros((c, c), dtype=int)
    for t, q in zip(y, pred):
        cm[t, q] += 1
    per_class = {}
    for k, name in enumerate(classes):
        tp = cm[k, k]
        prec = tp / cm[:, k].sum() if cm[:, k].sum() else 0.0
        rec = tp / cm[k, :].sum() if cm[k, :].sum() else 0.0
        f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
        per_class[name] = {"precision": round(float(prec), 4), "recall": round(float(rec), 4),
                           "f1": round(float(f1), 4), "support": int(cm[k, :].sum())}
    auc = roc_auc(y == 0, p[:, 0]) if c == 2 else None
    return {
        "n": int(n),
        "loss": round(loss, 4),
        "accuracy": round(float((pred == y).mean()) if n else float("nan"), 4),
        "errors": int((pred != y).sum()),
        "roc_auc": None if auc is None else round(auc, 4),
        "per_class": per_class,
        "classes": list(classes),
        "confusion_matrix": cm.tolist(),
    }


def draw_confusion_matrix(cm: Sequence[Sequence[int]], classes: Sequence[str], title: str = "") -> np.ndarray:
    """Render a confusion matrix (rows: true, columns: predicted) as a BGR image."""
    cm = np.asarray(cm)
    c = len(classes)
    cell, left, top = 150, 170, 90
    img = np.full((top + cell * c + 40, left + cell * c + 20, 3), 255, np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX
    cv2.putText(img, title or "confusion matrix", (10, 28), font, 0.7, (0, 0, 0), 2, cv2.LINE_AA)
    cv2.putText(img, "predicted ->", (left, 55), font, 0.5, (80, 80, 80), 1, cv2.LINE_AA)
    row_max = np.maximum(cm.sum(1, keepdims=True), 1)
    for i in range(c):
        cv2.putText(img, classes[i], (left + i * cell + 8, top - 8), font, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
        cv2.putText(img, classes[i], (5, top + i * cell + cell // 2), font, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
        for j in range(c):
            frac = cm[i, j] / row_max[i, 0]
            shade = int(255 - 170 * frac)
            color = (shade, shade, 255) if i != j else (shade, 255, shade)
            x0, y0 = left + j * cell, top + i * cell
            cv2.rectangle(img, (x0, y0), (x0 + cell, y0 + cell), color, -1)
            cv2.rectangle(img, (x0, y0), (x0 + cell, y0 + cell), (0, 0, 0), 1)
            cv2.putText(img, str(int(cm[i, j])), (x0 + 45, y0 + cell // 2 + 10), font, 1.0, (0, 0, 0), 2,
                        cv2.LINE_AA)
    cv2.putText(img, "rows: true class", (10, img.shape[0] - 12), font, 0.5, (80, 80, 80), 1, cv2.LINE_AA)
    return img


def save_gallery(items: Sequence[tuple[np.ndarray, str]], path: Path, tile: int = 160, cols: int = 6) -> None:
    """Save BGR thumbnails with captions (e.g. misclassified crops) as one grid image."""
    if not items:
        return
    rows = (len(items) + cols - 1) // cols
    sheet = np.full((rows * (tile + 24), cols * tile, 3), 255, np.uint8)
    for k, (img, caption) in enumerate(items):
        r, col = divmod(k, cols)
        h, w = img.shape[:2]
        s = tile / max(h, w)
        thumb = cv2.resize(img, (max(1, int(w * s)), max(1, int(h * s))), interpolation=cv2.INTER_AREA)
        y0, x0 = r * (tile + 24), col * tile
        sheet[y0:y0 + thumb.shape[0], x0:x0 + thumb.shape[1]] = thumb
        cv2.putText(sheet, caption[:26], (x0 + 2, y0 + tile + 16), cv2.FONT_HERSHEY_SIMPLEX, 0.4,
                    (0, 0, 200), 1, cv2.LINE_AA)
    cv2.imwrite(str(path), sheet)


def write_report(metrics: dict[str, Any], folder: Path, title: str = "") -> None:
    """Write ``metrics.json`` and ``confusion_matrix.png`` (and ``.json``) into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=2))
    (folder / "confusion_matrix.json").write_text(
        json.dumps({"classes": metrics["classes"], "rows": "true", "cols": "predicted",
                    "matrix": metrics["confusion_matrix"]}, indent=2))
    cv2.imwrite(str(folder / "confusion_matrix.png"),
                draw_confusion_matrix(metrics["confusion_matrix"], metrics["classes"], title))


def format_metrics(m: dict[str, Any]) -> str:
    """A short human-readable table of classification metrics."""
    lines = [f"n={m['n']}  loss={m['loss']:.4f}  accuracy={m['accuracy']:.4f}  errors={m['errors']}"
             f"  roc_auc={m['roc_auc']}"]
    lines.append(f"{'class':>14} {'precision':>9} {'recall':>7} {'f1':>7} {'support':>7}")
    for name, v in m["per_class"].items():
        lines.append(f"{name:>14} {v['precision']:9.4f} {v['recall']:7.4f} {v['f1']:7.4f} {v['support']:7d}")
    cm = m["confusion_matrix"]
    lines.append("confusion matrix (rows true, cols predicted): " + json.dumps(cm))
    return "\n".join(lines)
