"""Subject-wise train/validation/test splits (and the paper's leaky epoch-level split)."""

from __future__ import annotations

import warnings

import numpy as np

SPLIT_KINDS = ("subject", "epoch", "none")


def split_subjects(subjects, *, seed: int = 0, test_frac: float = 0.2, val_frac: float = 0.1) -> dict:
    """Split subjects 8:2 into train/test, then ``val_frac`` of the train subjects to validation.

    Parameters
    ----------
    subjects : iterable of str
        Subject ids (duplicates ignored).
    seed : int
        Seed of a local ``numpy.random.default_rng``; the same seed gives the same split.
    test_frac, val_frac : float
        Fraction of all subjects in test, and of the remaining ones in validation. Each split that
        can hold a subject gets at least one when there are >= 3 subjects.

    Returns
    -------
    dict with keys ``train``, ``validation``, ``test`` -> sorted lists of subject ids.
    """
    subs = sorted(set(map(str, subjects)))
    if len(subs) < 3:
        raise ValueError(f"a subject-wise split needs >= 3 subjects, got {len(subs)}: {subs}")
    if not (0 < test_frac < 1 and 0 <= val_frac < 1):
        raise ValueError(f"test_frac {test_frac!r} must be in (0, 1) and val_frac {val_frac!r} in [0, 1)")
    rng = np.random.default_rng(seed)
    order = [subs[i] for i in rng.permutation(len(subs))]
    n_test = max(1, int(round(test_frac * len(subs))))
    test, rest = order[:n_test], order[n_test:]
    n_val = int(round(val_frac * len(rest)))
    if val_frac > 0 and n_val == 0 and len(rest) >= 2:
        n_val = 1
    val, train = rest[:n_val], rest[n_val:]
    return {"train": sorted(train), "validation": sorted(val), "test": sorted(test)}


def split_warnings(split: dict) -> list[str]:
    """Warnings about a subject split (a manifest as :func:`split_subjects` returns, or a dataset
    meta.json's ``split``): one line when a split holds fewer than 2 subjects, saying what was done.

    A model trained on one subject has seen one person's sleep; metrics of a validation or test split of
    one subject describe one person, and their subject-bootstrap interval has no spread. Other split
    kinds ("epoch", "none") give no warning.
    """
    if split.get("kind", "subject") != "subject":
        return []
    sizes = {name: len(split.get(name) or []) for name in ("train", "validation", "test")}
    small = [name for name, size in sizes.items() if size < 2]
    if not small:
        return []
    done = " / ".join(f"{sizes[k]} {k}" for k in sizes)
    names = ", ".join(f"{k} ({sizes[k]})" for k in small)
    return [f"{sum(sizes.values())} subjects were split {done} by subject (seed {split.get('seed', 0)}): "
            f"{names} {'holds' if len(small) == 1 else 'hold'} fewer than 2 subjects, so what is trained or "
            "scored there is at most one person's sleep "
            "(no subject-level spread). Render more subjects, or --split none to score them all as one set."]


def split_epochs(n_epochs: int, *, seed: int = 0, test_frac: float = 0.2, val_frac: float = 0.1) -> dict:
    """The PSG-image paper's epoch-level split: epochs of one subject land in train AND test.

    This leaks subject identity into the test set and inflates every metric; it exists only to
    reproduce the paper's protocol. Returns index arrays per split.
    """
    warnings.warn(
        "epoch-level split: epochs of the same subject are in train and test (subject leakage); "
        "metrics are optimistic and not comparable to subject-wise results",
        stacklevel=2,
    )
    rng = np.random.default_rng(seed)
    order = rng.permutation(n_epochs)
    n_test = int(round(test_frac * n_epochs))
    test, rest = order[:n_test], order[n_test:]
    n_val = int(round(val_frac * len(rest)))
    return {"train": np.sort(rest[n_val:]), "validation": np.sort(rest[:n_val]), "test": np.sort(test)}


def subjects_in_two_splits(split: dict) -> dict[str, list[str]]:
    """Subjects that a split manifest lists in more than one of train/validation/test.

    Parameters
    ----------
    split : dict
        A manifest (:func:`split_subjects` output, or a dataset meta.json's ``split``).

    Returns
    -------
    dict subject -> the splits naming it (empty for a subject-wise split). The epoch-level split
    lists nearly every subject in all three: any model that selects its data by subject would train
    on its test recordings.
    """
    names = [n for n in ("train", "validation", "test") if isinstance(split.get(n), list)]
    seen: dict[str, list[str]] = {}
    for name in names:
        for s in dict.fromkeys(map(str, split[name])):
            seen.setdefault(s, []).append(name)
    return {s: where for s, where in sorted(seen.items()) if len(where) > 1}
