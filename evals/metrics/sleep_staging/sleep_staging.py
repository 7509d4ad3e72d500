"""Sleep-staging metrics as an `evaluate` module, loaded by path (no hub).

    import evaluate
    from evals.metrics import SLEEP_STAGING_PATH
    metric = evaluate.load(str(SLEEP_STAGING_PATH))
    metric.compute(predictions=[2, 2, 0], references=[2, 1, 0])

Inputs are AASM codes (W=0, N1=1, N2=2, N3=3, REM=4); references equal to -1 (unscored) are
excluded and counted. The numbers come from :func:`psgvlm.metrics.stage_metrics`, the single
implementation the run dirs also use.
"""

import datasets
import evaluate

from psgvlm.metrics import stage_metrics

_DESCRIPTION = """Accuracy, balanced accuracy, Cohen's kappa, weighted F1, macro F1, per-class F1,
per-class precision and the 5x5 confusion matrix (rows truth, columns prediction) for five-class
AASM sleep staging. Unscored reference epochs (-1) are excluded and reported in n_unscored."""

_KWARGS_DESCRIPTION = """
Args:
    predictions (list of int): predicted stage codes 0..4.
    references (list of int): expert stage codes 0..4, or -1 for unscored epochs.
Returns:
    accuracy, balanced_accuracy, kappa, weighted_f1, macro_f1 (float), per_class_f1 (dict stage ->
    float or None when the stage is absent from both), per_class_precision, confusion (5x5 list),
    n_epochs, n_unscored.
"""

_CITATION = """Cohen, J. (1960). A coefficient of agreement for nominal scales.
Brodersen et al. (2010). The balanced accuracy and its posterior distribution."""


class SleepStaging(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("int32"), "references": datasets.Value("int32")}
            ),
        )

    def _compute(self, predictions, references):
        return stage_metrics(references, predictions)
