"""The seed papers' numbers that ``python -m evals report --layout`` prints beside ours.

Reference numbers exactly as printed in the seed papers (../shared/papers; DESIGN.md section 8 quotes
the main ones). Literal tables, never computed.
"""

# PSG-image paper (psg-image-llava.txt), Table 1: epoch-level 8:2 split, 5 seeds; per dataset
# (Acc, B-Acc, kappa, W-F1). "CLIP (vision encoder)" is its Figure 3 (three decimals there).
PSG_LLAVA_TABLE1 = {
    "Image based": {
        "ConvNext": {"ISRUC": (0.7558, 0.7150, 0.6815, 0.7496), "MASS": (0.7761, 0.6828, 0.6616, 0.7687),
                     "SHHS": (0.8074, 0.7016, 0.7300, 0.8043)},
        "MaxViT": {"ISRUC": (0.7875, 0.7500, 0.7231, 0.7839), "MASS": (0.8281, 0.7504, 0.7436, 0.8222),
                   "SHHS": (0.8474, 0.7474, 0.7863, 0.8447)},
        "Resnet101": {"ISRUC": (0.7940, 0.7528, 0.7310, 0.7907), "MASS": (0.8510, 0.7959, 0.7802, 0.8482),
                      "SHHS": (0.8562, 0.7574, 0.7984, 0.8535)},
        "Resnet152": {"ISRUC": (0.7958, 0.7528, 0.7330, 0.7894), "MASS": (0.8475, 0.7813, 0.7718, 0.8446),
                      "SHHS": (0.8590, 0.7602, 0.8023, 0.8564)},
        "Swin-ViT": {"ISRUC": (0.7551, 0.7009, 0.6779, 0.7458), "MASS": (0.8007, 0.7061, 0.6985, 0.7896),
                     "SHHS": (0.7734, 0.6355, 0.6769, 0.7613)},
        "ViM": {"ISRUC": (0.7759, 0.7280, 0.7064, 0.7700), "MASS": (0.8118, 0.7386, 0.7197, 0.8079),
                "SHHS": (0.8382, 0.7364, 0.7738, 0.8354)},
        "ViT": {"ISRUC": (0.7022, 0.6517, 0.6108, 0.6966), "MASS": (0.7710, 0.6677, 0.6533, 0.7605),
                "SHHS": (0.7348, 0.6026, 0.6228, 0.7233)},
        "CLIP (vision encoder)": {"ISRUC": (0.770, 0.754, 0.704, 0.776), "MASS": (0.813, 0.718, 0.715, 0.799),
                                  "SHHS": (0.813, 0.692, 0.738, 0.805)},
    },
    "Signal based": {
        "MultiSleepNet": {"ISRUC": (0.7169, 0.6554, 0.6278, 0.7032), "MASS": (0.8079, 0.7360, 0.7178, 0.8003),
                          "SHHS": (0.7815, 0.7033, 0.7014, 0.7778)},
        "TinySleepNet": {"ISRUC": (0.7896, 0.7553, 0.7422, 0.7890), "MASS": (0.8321, 0.7860, 0.7741, 0.8360),
                         "SHHS": (0.8584, 0.7245, 0.7996, 0.8511)},
        "SleepWaveNet": {"ISRUC": (0.7765, 0.7121, 0.6924, 0.7128), "MASS": (0.8012, 0.7293, 0.7061, 0.7161),
                         "SHHS": (0.8102, 0.6971, 0.7203, 0.6927)},
    },
    "Foundation": {
        "LaBraM": {"ISRUC": (0.7917, 0.7503, 0.7279, 0.7886), "MASS": (0.8565, 0.7965, 0.7864, 0.8544),
                   "SHHS": (0.8219, 0.7216, 0.7525, 0.8207)},
        "CBraMod": {"ISRUC": (0.8384, 0.7891, 0.7889, 0.8290), "MASS": (0.8806, 0.8065, 0.8216, 0.8720),
                    "SHHS": (0.8751, 0.7613, 0.8258, 0.8714)},
    },
    "Ours": {
        "PSG-LLaVA": {"ISRUC": (0.8596, 0.8301, 0.8172, 0.8588), "MASS": (0.8879, 0.8393, 0.8337, 0.8865),
                      "SHHS": (0.8782, 0.7815, 0.8291, 0.8754)},
    },
}
TABLE1_METRICS = (("accuracy", "Acc"), ("balanced_accuracy", "B-Acc"), ("kappa", "Kappa"), ("weighted_f1", "W-F1"))

# sleep2vec.txt, Table 1 (SHHS, five classes): the sleep2vec row of each channel set: Acc %, kappa,
# MF1 %, Sens %, Spec %, F1 % of W, N1, N2, N3, REM. The extracted table shifts the channel-set labels
# of the IBI & RESP and ECG & ABD groups by one row; the text (sleep2vec IBI & RESP Acc 83.0) fixes them.
SLEEP2VEC_TABLE1 = {
    "EEG": (87.4, 0.82, 77.3, 76.2, 96.1, 92.4, 40.1, 86.5, 77.7, 88.7),
    "IBI & RESP": (83.0, 0.75, 65.9, 65.8, 95.1, 86.6, 5.3, 80.3, 60.9, 84.9),
    "ECG & ABD": (82.7, 0.75, 65.6, 65.2, 95.0, 92.6, 6.2, 80.6, 62.4, 86.1),
    "EEG & EOG & EMG": (88.3, 0.83, 78.7, 77.9, 96.8, 94.5, 40.6, 87.8, 79.8, 89.0),
    "FULL CHANNELS": (88.6, 0.84, 79.5, 78.4, 96.8, 94.8, 44.1, 88.2, 79.2, 91.2),
}

# sdreamer-summary.txt (mice, three classes: Wake, SWS, REM), Table I and the Table III ablation:
# multi-channel Acc %, macro F1 %, then single-channel (EEG-only, EMG-only) Acc % of the multi-channel model.
SDREAMER_ABLATION = {
    "Sequence sDREAMER": (91.72, 87.64, 88.12, 83.78),
    "Sequence sDREAMER w/o distillation": (None, None, 62.71, 7.85),
    "Epoch sDREAMER": (88.25, None, None, None),
    "Epoch sDREAMER w/o distillation": (None, None, None, None),
}

# nap-summary.txt: zero-shot macro F1 on out-of-domain datasets, (best single model, NAP); NAP was
# trained on the private BSWR dataset. Soft voting is compared there without numbers in the summary.
NAP_ZERO_SHOT = {"DCSM": (0.803, 0.815), "DOD-H": (0.828, 0.834), "DOD-O": (0.790, 0.776),
                 "PHYS": (0.693, 0.732), "SEDF-SC": (0.734, 0.752), "SEDF-ST": (0.761, 0.796)}

# psg-image-llava.txt, Figure 7 (correctly classified ISRUC epochs): where the attribution falls per stage;
# Figure 12 (appendix J): misclassified epochs.
PSG_LLAVA_ATTRIBUTION = {"W": "all EEG channels", "N1": "EOG and EEG together",
                         "N2": "EOG and EEG, EMG assisting", "N3": "EEG, other EEG channels assisting",
                         "REM": "fast EOG segments", "misclassified": "away from the regions experts read (Fig. 12)"}
