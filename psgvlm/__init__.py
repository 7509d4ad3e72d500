"""psgvlm: polysomnography as images for vision-language models.

The library, in layers; a module imports from its own layer and the ones below it, never above:

- foundation: :mod:`~psgvlm.stages` (stage codes), :mod:`~psgvlm.provenance` (meta.json, atomic
  writes), :mod:`~psgvlm.metrics`, :mod:`~psgvlm.splits`, :mod:`~psgvlm.predictions` (the
  predictions.jsonl contract), :mod:`~psgvlm.training` (what the recipes share), :mod:`~psgvlm.plots`
  (hypnogram/hypnodensity figures, the one stage palette);
- :mod:`psgvlm.io`: EDF, the readers per dataset format, channel names, :class:`Recording`;
- :mod:`psgvlm.signal` (epochs, resampling, corruption) and :mod:`psgvlm.synth` (synthetic PSG);
- :mod:`psgvlm.image`: the epoch -> image renderer and patch attribution;
- :mod:`psgvlm.vlm` (LLaVA-NeXT and image classifiers), :mod:`psgvlm.baselines` (signal models),
  :mod:`psgvlm.reference` (YASA): the stagers;
- :mod:`psgvlm.night`: one recording staged end to end, output writers, sleep statistics, uploads,
  the app's session store;
- :mod:`psgvlm.cli`: ``psgvlm <command>``.

The stages above the library (render/, recipes/, evals/, app.py, benchmarks/) import it and talk to each
other through files on disk; the library imports none of them (tests/test_layers.py). Importing
``psgvlm`` loads only the names below; the model layers pull in torch when imported.
"""

from psgvlm.io.recording import MODALITIES, Channel, Recording
from psgvlm.stages import EPOCH_S, N_STAGES, STAGES, UNSCORED

__version__ = "0.1.0"

__all__ = [
    "EPOCH_S",
    "MODALITIES",
    "N_STAGES",
    "STAGES",
    "UNSCORED",
    "Channel",
    "Recording",
    "__version__",
]
