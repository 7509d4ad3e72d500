"""Signal baselines trained on the same subject-wise splits as the VLM: sleep2vec, sDREAMER and NAP.

One model contract: keyword-only constructors (``config=`` a hyper-parameter dataclass whose field names
carry units: ``sfreq``, ``epoch_s``, ``patch_s``), and ``forward(x)`` where ``x`` maps an input name
(a modality such as ``"EEG"``; for NAP a stream ``"predictor@channel"``) to a tensor
(batch, n_epochs, ...) and the output is logits (batch, n_epochs, 5) over W, N1, N2, N3, REM. Extra
training outputs come from separately documented methods (``SDreamer.forward_train``,
``Sleep2vec.embed``, ``NAP.forward_grid``). ``tests/test_baseline_contract.py`` checks every entry.

``BASELINES`` is the one registry: name -> the model class, its hyper-parameter dataclass, the size
presets, the recipes that train it and the loader of a trained run dir. YASA (a real pretrained stager,
not trained here) lives in :mod:`psgvlm.reference.yasa` and feeds NAP.
"""

from __future__ import annotations

from dataclasses import dataclass

from psgvlm.baselines import nap, sdreamer, sleep2vec


@dataclass(frozen=True)
class Baseline:
    model: type  # torch module; forward(dict of named tensors) -> logits (batch, n_epochs, 5)
    config: type  # hyper-parameter dataclass
    sizes: dict  # preset name -> config overrides
    recipes: tuple[str, ...]  # training scripts, in order
    inputs: str  # the keys and shapes of forward's input dict
    load: object  # run dir -> trained model (eval mode)


BASELINES = {
    "sleep2vec": Baseline(
        model=sleep2vec.Sleep2vecStager, config=sleep2vec.Sleep2vecConfig, sizes=sleep2vec.SIZES,
        recipes=("recipes/sleep2vec_pretrain.py", "recipes/sleep2vec_finetune.py"),
        inputs="{modality: (batch, n_epochs, n_times)} for any non-empty subset of the pre-trained "
               "modalities (EEG/EOG/EMG/ECG at 128 Hz: n_times 3840; RESP/SPO2 at 4 Hz: 120)",
        load=sleep2vec.load_stager),
    "sdreamer": Baseline(
        model=sdreamer.SDreamer, config=sdreamer.SDreamerConfig, sizes=sdreamer.SIZES,
        recipes=("recipes/sdreamer.py",),
        inputs='{"EEG" and/or "EMG": (batch, K, 3840)} at 128 Hz, K = config.seq_len (16) consecutive epochs',
        load=sdreamer.load),
    "nap": Baseline(
        model=nap.NAP, config=nap.NAPConfig, sizes={"paper": {}},
        recipes=("recipes/nap.py",),
        inputs='{"predictor@channel": (batch, n_epochs, 5)} hypnodensities of frozen predictors, any set',
        load=nap.load),
}

__all__ = ["BASELINES", "Baseline"]
