"""evaluate-ensemble: averaging members, metrics per member and for the ensemble, CLI."""

import json

import numpy as np
import pytest

from loscat_hf.cli import main
from loscat_hf.data.score_tables import COMPONENTS
from loscat_hf.errors import LoscatError
from loscat_hf.evaluation.ensemble import MemberOutput, combine, evaluate_member
from loscat_hf.model.score_heads import build_score_model
from loscat_hf.taxonomy import load_taxonomy
from tests.test_score_model import _scored_dataset

COMPS = tuple(COMPONENTS)


def test_ensemble_beats_best_member_when_their_errors_cancel():
    labels = np.array([0, 0, 1, 1])
    # A says class 0 with p=.9 everywhere (right on the first half), B class 1 (right on the second half)
    a = MemberOutput("a", np.tile([0.9, 0.1], (4, 1)), None)
    b = MemberOutput("b", np.tile([0.1, 0.9], (4, 1)), None)
    # A scores one point high, B one point low: their mean is exact
    true = np.tile([[1.0, 2.0, 0.0, 1.0, 2.0, 1.0]], (4, 1))
    true[0, 1] = np.nan  # a missing target is skipped by all
    a.scores, b.scores = np.nan_to_num(true, nan=2.0) + 1, np.nan_to_num(true, nan=2.0) - 1
    a.components = b.components = COMPS
    ens = combine([a, b])
    ra, rb, re = (evaluate_member(m, labels, true) for m in (a, b, ens))
    assert re["nll"] < min(ra["nll"], rb["nll"])
    assert re["nll"] == pytest.approx(-np.log(0.5))
    assert re["score_mse"] < min(ra["score_mse"], rb["score_mse"])


def test_ensemble_never_worse_than_average_member_on_random_members():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 5, 200)
    true = rng.integers(0, 4, (200, 6)).astype(float)
    true[rng.random(true.shape) < 0.3] = np.nan
    members = []
    for i in range(4):
        p = rng.dirichlet(np.ones(5), 200)
        members.append(MemberOutput(str(i), p, rng.uniform(0, 3, (200, 6)), COMPS))
    reports = [evaluate_member(m, labels, true) for m in members]
    ens = evaluate_member(combine(members), labels, true)
    assert ens["nll"] <= np.mean([r["nll"] for r in reports]) + 1e-12  # Jensen: convex in the probabilities
    assert ens["score_mse"] <= np.mean([r["score_mse"] for r in reports]) + 1e-12


def test_combine_refuses_mismatched_members():
    with pytest.raises(LoscatError, match="disagree"):
        combine([MemberOutput("a", np.ones((3, 2)) / 2, None), MemberOutput("b", np.ones((4, 2)) / 2, None)])


def test_cli_evaluate_ensemble_reports_members_and_ensemble(tmp_path, capsys):
    ds = _scored_dataset(tmp_path / "ds", n_train=8, n_val=12)
    dirs = []
    for seed in (0, 1):
        model, processor = build_score_model("tiny", load_taxonomy(), image_size=32, seed=seed)
        d = tmp_path / f"m{seed}"
        model.save_pretrained(d)
        processor.save_pretrained(d)
        dirs.append(str(d))
    out = tmp_path / "ens"
    assert main(["evaluate-ensemble", "--models", *dirs, dirs[0], "--dataset", str(ds),
                 "--out", str(out)]) == 0
    report = json.loads((out / "ensemble_report.json").read_text())
    assert len(report["members"]) == 3 and report["n"] == 12
    assert "n_left_out_several_regions" not in report  # a single-region dataset: nothing left out
    assert "erythema" in report["ensemble"]["scores"] and "score_mse" in report["members"][0]
    assert "ensemble: macro-F1" in capsys.readouterr().out
    assert main(["evaluate-ensemble", "--models", dirs[0], "--dataset", str(ds), "--out", str(out)]) == 2
    # with the score table: per-visit mLoSSI/LoSDI totals against the clinical ones
    classes = load_taxonomy().classes
    table = tmp_path / "scores.csv"
    table.write_text("patient_id,visit,site," + ",".join(COMPS) + "\n" + "".join(
        f"validation{i},V1,{classes[i % 4]},{i % 4},1,0,0,1,2\n" for i in range(12)))
    assert main(["evaluate-ensemble", "--models", *dirs, "--dataset", str(ds), "--out", str(out),
                 "--scores", str(table)]) == 0
    totals = json.loads((out / "ensemble_report.json").read_text())["visit_totals"]
    assert totals["n_visits"] == 12 and totals["mlossi"]["n"] == 12


def test_ensemble_on_a_multi_region_dataset_scores_the_single_region_photos(tmp_path, capsys):
    """Single-label members on a multi-region dataset: their softmax is scored on the photos that show one
    region (not the dataset's 0/1 vectors, which would not broadcast), and the report says how many photos
    showing several regions were left out."""
    from conftest import save_tiny_model

    import loscat_hf
    from loscat_hf.data.dataset import read_split_metadata
    from tests.test_multi_region_data import _export

    csv_path, images = _export(tmp_path)
    ds = loscat_hf.prepare(annotations=csv_path, images=images, out=tmp_path / "ds", val_fraction=0.25,
                           num_workers=1, max_side=48).out_dir
    rows = read_split_metadata(ds / "validation")
    several = sum(1 for r in rows if r["label"] is None)
    assert 0 < several < len(rows)
    models = [str(save_tiny_model(tmp_path / f"m{seed}", seed=seed)) for seed in (0, 1)]
    out = tmp_path / "ens"
    assert main(["evaluate-ensemble", "--models", *models, "--dataset", str(ds), "--out", str(out)]) == 0
    report = json.loads((out / "ensemble_report.json").read_text())
    assert report["n"] == len(rows) - several and report["n_left_out_several_regions"] == several
    assert all(0 <= m["accuracy"] <= 1 for m in [*report["members"], report["ensemble"]])
    printed = capsys.readouterr().out
    assert (f"{several} photos showing several regions left out: a single-region model is scored on the "
            "single-region photos") in printed and "ensemble: macro-F1" in printed
