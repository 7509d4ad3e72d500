"""psgvlm: polysomnography as images for vision-language models.

The library layer: recordings and readers, stages, splits, metrics, the predictions contract, and
(imported lazily, they pull torch) the models. Stages of the pipeline talk through files on disk.
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
