"""Sleep-staging metrics on AASM codes (unscored epochs excluded and counted).

Everything is computed from the 5x5 confusion matrix, so the same code scores one run, one subject,
or a stack of bootstrap resamples (a batch of confusion matrices) at numpy speed. The `evaluate`
module in ``evals/metrics/sleep_staging`` wraps :func:`stage_metrics`; tests cross-check both against
scikit-learn.
"""

from __future__ import annotations

import warnings

import numpy as np

from psgvlm.stages import N_STAGES, STAGES, UNSCORED

SCALAR_METRICS: tuple[str, ...] = ("accuracy", "balanced_accuracy", "kappa", "weighted_f1", "macro_f1")


def confusion_matrix(y_true, y_pred, n_classes: int = N_STAGES) -> np.ndarray:
    """Counts, rows = truth, columns = prediction, shape (n_classes, n_classes)."""
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true, int), np.asarray(y_pred, int)), 1)
    return cm


def scores_from_confusion(cm) -> dict[str, np.ndarray]:
    """Scalar metrics and per-class F1 of one confusion matrix or a batch of them.

    Parameters
    ----------
    cm : array-like, shape (..., n_classes, n_classes)
        Counts (or non-negative weights), rows = truth, columns = prediction.

    Returns
    -------
    dict: ``accuracy``, ``balanced_accuracy``, ``kappa``, ``macro_f1``, ``weighted_f1`` of shape
    ``cm.shape[:-2]`` and ``per_class_f1`` of shape ``cm.shape[:-1]`` (NaN for a class absent from
    both truth and prediction; such classes are left out of macro F1, and classes absent from the
    truth are left out of balanced accuracy).
    """
    cm = np.asarray(cm, dtype=np.float64)
    n = cm.sum((-2, -1))
    support = cm.sum(-1)
    predicted = cm.sum(-2)
    tp = np.diagonal(cm, axis1=-2, axis2=-1)
    # classes absent from a (resampled) night give NaN and are left out; silence numpy's empty-slice warnings
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        acc = tp.sum(-1) / n
        recall = np.where(support > 0, tp / support, np.nan)
        f1 = np.where(support + predicted > 0, 2 * tp / (support + predicted), np.nan)
        pe = (support * predicted).sum(-1) / (n * n)
        kappa = np.where(pe < 1, (acc - pe) / (1 - pe), 1.0)
        bacc = np.nanmean(recall, -1)
        macro = np.nanmean(f1, -1)
        weighted = (np.nan_to_num(f1) * support).sum(-1) / support.sum(-1)
    return {"accuracy": acc, "balanced_accuracy": bacc, "kappa": kappa, "macro_f1": macro,
            "weighted_f1": weighted, "per_class_f1": f1}


def _validated(y_true, y_pred) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scored (truth, prediction) pairs and the keep mask; raises on bad shapes or codes."""
    y_true = np.asarray(y_true, dtype=int)
    y_pred = np.asarray(y_pred, dtype=int)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true has shape {y_true.shape} but y_pred has {y_pred.shape}")
    keep = y_true != UNSCORED
    bad_true = sorted(set(np.unique(y_true[keep]).tolist()) - set(range(N_STAGES)))
    if bad_true:
        raise ValueError(f"truth holds codes {bad_true}; allowed: 0..{N_STAGES - 1} or {UNSCORED}")
    if not keep.any():
        raise ValueError("no scored epochs to evaluate")
    bad = sorted(set(np.unique(y_pred[keep]).tolist()) - set(range(N_STAGES)))
    if bad:
        raise ValueError(f"predictions hold codes {bad}; allowed: 0..{N_STAGES - 1}")
    return y_true[keep], y_pred[keep], keep


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
    n_total = len(np.asarray(y_true))
    y_true, y_pred, _ = _validated(y_true, y_pred)
    cm = confusion_matrix(y_true, y_pred)
    s = scores_from_confusion(cm)
    predicted = cm.sum(0)
    precision = np.where(predicted > 0, np.diag(cm) / np.maximum(predicted, 1), 0.0)
    return {
        "accuracy": float(s["accuracy"]),
        "balanced_accuracy": float(s["balanced_accuracy"]),
        "kappa": float(s["kappa"]),
        "macro_f1": float(s["macro_f1"]),
        "weighted_f1": float(s["weighted_f1"]),
        "per_class_f1": {st: (None if np.isnan(v) else float(v)) for st, v in zip(STAGES, s["per_class_f1"])},
        "per_class_precision": {st: float(v) for st, v in zip(STAGES, precision)},
        "confusion": cm.tolist(),
        "n_epochs": int(cm.sum()),
        "n_unscored": int(n_total - cm.sum()),
    }


def row_normalised(cm) -> np.ndarray:
    """Confusion matrix with each row divided by its sum (recall per true class); empty rows stay 0."""
    cm = np.asarray(cm, dtype=np.float64)
    rows = cm.sum(-1, keepdims=True)
    return np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)


def subject_confusions(y_true, y_pred, subjects) -> tuple[list[str], np.ndarray]:
    """Sorted subject ids and their confusion matrices, shape (n_subjects, 5, 5); unscored dropped."""
    subjects = np.asarray(subjects).astype(str)
    if len(subjects) != len(np.asarray(y_true)):
        raise ValueError(f"subjects has {len(subjects)} entries but y_true has {len(np.asarray(y_true))}")
    y_true, y_pred, keep = _validated(y_true, y_pred)
    subjects = subjects[keep]
    ids, inverse = np.unique(subjects, return_inverse=True)
    cms = np.zeros((len(ids), N_STAGES, N_STAGES), dtype=np.int64)
    np.add.at(cms, (inverse, y_true, y_pred), 1)
    return ids.tolist(), cms


def _resample_weights(n_subjects: int, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, n_subjects) multiplicities of subjects drawn with replacement, seeded."""
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_subjects, size=(n_boot, n_subjects))
    return np.stack([np.bincount(d, minlength=n_subjects) for d in draws]).astype(np.float64)


def _interval(values: np.ndarray, alpha: float) -> list[float | None]:
    with warnings.catch_warnings():  # a class absent from every resample has no interval (None)
        warnings.simplefilter("ignore", RuntimeWarning)
        lo, hi = np.nanpercentile(values, [100 * alpha / 2, 100 * (1 - alpha / 2)], axis=0)
    return [None if np.isnan(lo) else float(lo), None if np.isnan(hi) else float(hi)]


def bootstrap_ci(y_true, y_pred, subjects, *, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05) -> dict:
    """Percentile bootstrap confidence intervals, resampling whole subjects with replacement.

    Epochs of one night are correlated, so the unit of resampling is the subject: each resample
    draws ``n_subjects`` subjects with replacement and pools their confusion matrices.

    Parameters
    ----------
    y_true, y_pred : array-like of int, shape (n_epochs,)
        AASM codes; unscored truth excluded.
    subjects : array-like of str, shape (n_epochs,)
        Subject of each epoch.
    n_boot : int
        Number of resamples.
    seed : int
        Seed of the local generator; the same seed gives the same intervals.
    alpha : float
        1 - confidence level (0.05 -> 95% intervals).

    Returns
    -------
    dict: metric -> [low, high] for the scalar metrics, ``per_class_f1`` -> {stage: [low, high]},
    plus ``n_boot``, ``n_subjects``, ``alpha``, ``seed`` and ``unit`` ("subject").
    """
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot!r}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    _, cms = subject_confusions(y_true, y_pred, subjects)
    weights = _resample_weights(len(cms), n_boot, seed)
    scores = scores_from_confusion(np.einsum("bs,sij->bij", weights, cms))
    out = {k: _interval(scores[k], alpha) for k in SCALAR_METRICS}
    out["per_class_f1"] = {st: _interval(scores["per_class_f1"][:, i], alpha) for i, st in enumerate(STAGES)}
    out.update(n_boot=int(n_boot), n_subjects=len(cms), alpha=float(alpha), seed=int(seed), unit="subject")
    return out


def paired_bootstrap_delta(y_true, pred_a, pred_b, subjects, *, n_boot: int = 1000, seed: int = 0,
                           alpha: float = 0.05) -> dict:
    """Metric differences ``b - a`` on the same epochs with subject-resampled CIs (paired).

    Used for corrupted-minus-clean: both prediction sets are resampled with the same subjects, so
    the interval reflects the change, not the spread between subjects.

    Returns
    -------
    dict: metric -> {"delta": float, "ci": [low, high]} for the scalar metrics, plus the
    resampling settings.
    """
    ids_a, cms_a = subject_confusions(y_true, pred_a, subjects)
    ids_b, cms_b = subject_confusions(y_true, pred_b, subjects)
    assert ids_a == ids_b
    weights = _resample_weights(len(cms_a), n_boot, seed)
    sa = scores_from_confusion(np.einsum("bs,sij->bij", weights, cms_a))
    sb = scores_from_confusion(np.einsum("bs,sij->bij", weights, cms_b))
    pa, pb = scores_from_confusion(cms_a.sum(0)), scores_from_confusion(cms_b.sum(0))
    out = {k: {"delta": float(pb[k] - pa[k]), "ci": _interval(sb[k] - sa[k], alpha)} for k in SCALAR_METRICS}
    out.update(n_boot=int(n_boot), n_subjects=len(cms_a), alpha=float(alpha), seed=int(seed), unit="subject")
    return out


def seed_summary(results: list[dict], keys=SCALAR_METRICS) -> dict:
    """Mean, sample standard deviation (ddof=1; 0 for one run), min and max of metrics over runs.

    Parameters
    ----------
    results : list of dict
        One :func:`stage_metrics` dict per run (e.g. per seed).

    Returns
    -------
    dict: metric -> {"mean", "sd", "min", "max", "n"}; ``per_class_f1`` -> {stage: {...}}.
    """
    if not results:
        raise ValueError("seed_summary needs at least one result")

    def summarise(values):
        v = np.array([np.nan if x is None else x for x in values], dtype=np.float64)
        v = v[~np.isnan(v)]
        if len(v) == 0:
            return {"mean": None, "sd": None, "min": None, "max": None, "n": 0}
        return {"mean": float(v.mean()), "sd": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
                "min": float(v.min()), "max": float(v.max()), "n": len(v)}

    out = {k: summarise([r[k] for r in results]) for k in keys}
    out["per_class_f1"] = {st: summarise([r["per_class_f1"][st] for r in results]) for st in STAGES}
    return out
