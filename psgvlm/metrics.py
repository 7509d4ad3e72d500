"""Sleep-staging metrics on AASM codes (unscored epochs excluded and counted)."""

from __future__ import annotations

import numpy as np

from psgvlm.stages import N_STAGES, STAGES, UNSCORED


def confusion_matrix(y_true, y_pred, n_classes: int = N_STAGES) -> np.ndarray:
    """Counts, rows = truth, columns = prediction, shape (n_classes, n_classes)."""
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true, int), np.asarray(y_pred, int)), 1)
    return cm


def stage_metrics(y_true, y_pred) -> dict:
    """Accuracy, balanced accuracy, Cohen's kappa, macro/weighted/per-class F1 and the confusion matrix.

    Parameters
    ----------
    y_true, y_pred : array-like of int, shape (n_epochs,)
        AASM codes 0..4; epochs whose truth is ``UNSCORED`` are excluded and counted in ``n_unscored``.

    Returns
    -------
    dict of floats plus ``per_class_f1`` (stage -> F1), ``confusion`` (5x5 counts) and counts.
    Classes absent from both truth and prediction get F1 NaN and are left out of macro F1.
    """
    y_true = np.asarray(y_true, dtype=int)
    y_pred = np.asarray(y_pred, dtype=int)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true has shape {y_true.shape} but y_pred has {y_pred.shape}")
    keep = y_true != UNSCORED
    n_unscored = int((~keep).sum())
    y_true, y_pred = y_true[keep], y_pred[keep]
    if len(y_true) == 0:
        raise ValueError("no scored epochs to evaluate")
    bad = sorted(set(np.unique(y_pred).tolist()) - set(range(N_STAGES)))
    if bad:
        raise ValueError(f"predictions hold codes {bad}; allowed: 0..{N_STAGES - 1}")
    cm = confusion_matrix(y_true, y_pred)
    n = cm.sum()
    support = cm.sum(1)
    predicted = cm.sum(0)
    tp = np.diag(cm).astype(float)
    acc = tp.sum() / n
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = tp / support
        precision = np.where(predicted > 0, tp / np.maximum(predicted, 1), 0.0)
        f1 = np.where(support + predicted > 0, 2 * tp / (support + predicted), np.nan)
    present = support > 0
    bacc = float(np.mean(recall[present]))
    pe = float((support * predicted).sum()) / float(n * n)
    kappa = float((acc - pe) / (1 - pe)) if pe < 1 else 1.0
    f1_present = np.where(np.isnan(f1), 0.0, f1)
    macro = float(np.nanmean(f1)) if np.any(~np.isnan(f1)) else float("nan")
    weighted = float((f1_present * support).sum() / support.sum())
    return {
        "accuracy": float(acc),
        "balanced_accuracy": bacc,
        "kappa": kappa,
        "macro_f1": macro,
        "weighted_f1": weighted,
        "per_class_f1": {s: (None if np.isnan(v) else float(v)) for s, v in zip(STAGES, f1)},
        "per_class_precision": {s: float(v) for s, v in zip(STAGES, precision)},
        "confusion": cm.tolist(),
        "n_epochs": int(n),
        "n_unscored": n_unscored,
    }
