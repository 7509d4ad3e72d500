"""Eval suites over run dirs and image datasets: ``python -m evals <suite>`` (see evals/__main__.py).

Modules: ``common`` (run dirs, matching predictions with datasets, results writing), ``inference``
(scoring datasets, re-rendering like a run with the render command, recipe commands), ``plots``
(PNG plots without pyplot state), ``metrics/`` (the `evaluate` module, loaded by path) and ``suites/``
(one module per suite). Datasets are read with :mod:`psgvlm.image.dataset`; evals never import the
render stage.
"""
