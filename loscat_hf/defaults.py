"""Defaults that several stages must agree on, stated once (torch-free, so any module may import it).

The taxonomy (sites -> classes) is in taxonomy.py and resources/taxonomy.json; the LoSCAT score components
in data/score_tables.py; the training recipe's TrainingArguments defaults in training/arguments.py.
"""

# The pretrained checkpoint `train` fine-tunes by default, and the model card's `base_model`.
BASE_MODEL = "google/vit-base-patch16-384"

# `prepare --max-side`: photos are packed with the shorter side at most this. A model folder records the
# size its training data was packed at (model/folder.py) and prediction decodes photos at
# that size, so a camera photo reaches the model as the training photos did; this is the fallback for a
# model folder without the record (another trainer, an older loscat-hf).
MAX_SIDE = 512
# Packed (and decoded) photos may come out up to 15 % under max_side when a JPEG's DCT-scaled decode lands
# there: it halves the decode time, and the model resizes to its input size anyway.
SIZE_SLACK = 0.15

# "needs review" (`predict`, the Space, `calibrate`'s report): top-1 probability below MIN_CONFIDENCE, or the
# top two within MIN_MARGIN (model/calibration.py `needs_review`)
MIN_CONFIDENCE = 0.5
MIN_MARGIN = 0.1

# Inference precisions (`predict`, `explain`, `label`, `demo`, the Space): "auto" = bf16 on a GPU, fp32 on
# CPU; "int8" = ONNX Runtime's dynamic quantisation of the MatMuls, CPU only (changes answers: opt-in).
PRECISIONS = ("auto", "fp32", "bf16", "int8")
# Where the forward pass runs (infer/backends/choice.py): "auto" = ONNX Runtime on CPU when the `onnx` extra
# is installed and its graph is exact, torch otherwise.
BACKENDS = ("auto", "torch", "onnx")
# `compare-backends --candidates` default: what a CPU user may switch to, each against torch fp32
COMPARE_CANDIDATES = ("onnx:fp32", "onnx:int8")
# A backend is "exact" when no calibrated class probability differs from torch fp32 by this much or more.
EXACT_PROB_DIFF = 1e-3
# `loscat-hf label --order`: least sure first, seeded, by path
LABEL_ORDERS = ("uncertain", "random", "folder")

# predict's predictions-CSV columns beside region and the top-k (infer/folder.py writes them; resume, link,
# `evaluate --predictions` and the label app read them): every region a photo shows, ';'-joined, most
# probable first (a single-region model's one region), and their scores in the same order
REGIONS_COLUMN = "regions"
REGIONS_PROB_COLUMN = "regions_probability"

# The Space's default model is the study's published checkpoint (model/study.py), converted on first start;
# env LOSCAT_MODEL, a bundled model/ folder or `demo --model` override it.

# beside an `evaluate` report's metrics.json: which model, dataset and split it measured, and a score model's
# score report (evaluation/ writes them, the model card reads them)
EVALUATED_NAME = "evaluated.json"
SCORE_REPORT_NAME = "scores_report.json"
# the confusion matrix `train` saves in a model folder, at the same path in the pushed repo (the card links
# it)
CONFUSION_MATRIX = "eval/confusion_matrix.png"
