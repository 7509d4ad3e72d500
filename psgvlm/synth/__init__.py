"""Synthetic polysomnography: physiology apart from the datasets' on-disk layouts.

``noise`` (seeded random building blocks) -> ``hypnogram`` (stage sequences, a second scorer) ->
``sources`` (per-stage controls, events, shared signals of a night) -> ``physiology``
(``synth_night``: subjects and channels, arrays only) -> ``layouts`` (each dataset's channel sets,
files and label files; ``synth_dataset`` and the ``psgvlm synth`` command).
"""
