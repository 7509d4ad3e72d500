"""Signal baselines trained on the same subject-wise splits as the VLM: sleep2vec, sDREAMER and NAP.

``BASELINES`` is the one registry: name -> the model class, its hyper-parameter dataclass, the size
presets, the recipes that train it and the loader of a trained run dir. YASA (a real pretrained stager,
not trained here) lives in :mod:`psgvlm.reference.yasa` and feeds NAP.
"""

from __future__ import annotations

from dataclasses import dataclass

from psgvlm.baselines import nap, sdreamer, sleep2vec


@dataclass(frozen=True)
class Baseline:
    model: type  # torch module; forward returns logits over W, N1, N2, N3, REM per epoch
    config: type  # hyper-parameter dataclass
    sizes: dict  # preset name -> config overrides
    recipes: tuple[str, ...]  # training scripts, in order
    inputs: str  # what the model reads
    load: object  # run dir -> trained model (eval mode)


BASELINES = {
    "sleep2vec": Baseline(
        model=sleep2vec.Sleep2vecStager, config=sleep2vec.Sleep2vecConfig, sizes=sleep2vec.SIZES,
        recipes=("recipes/sleep2vec_pretrain.py", "recipes/sleep2vec_finetune.py"),
        inputs="any non-empty subset of the pre-trained modalities (EEG/EOG/EMG/ECG at 128 Hz, RESP/SPO2 at 4 Hz)",
        load=sleep2vec.load_stager),
    "sdreamer": Baseline(
        model=sdreamer.SDreamer, config=sdreamer.SDreamerConfig, sizes=sdreamer.SIZES,
        recipes=("recipes/sdreamer.py",), inputs="EEG and/or EMG at 128 Hz, K=16 consecutive epochs",
        load=sdreamer.load),
    "nap": Baseline(
        model=nap.NAP, config=nap.NAPConfig, sizes={"paper": {}},
        recipes=("recipes/nap.py",), inputs="hypnodensities of frozen predictors (channels x epochs x predictors x 5)",
        load=nap.load),
}

__all__ = ["BASELINES", "Baseline"]
