"""Eval suites over run dirs and image datasets: ``python -m evals <suite>`` (see evals/__main__.py).

Modules: ``common`` (run/dataset I/O, matching, band layout, results writing), ``inference``
(scoring datasets, re-rendering like a run, recipe commands), ``attribution`` (feature ablation),
``plots`` (PNG plots without pyplot state), ``metrics/`` (the `evaluate` module, loaded by path)
and ``suites/`` (one module per suite).
"""
