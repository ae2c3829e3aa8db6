"""`loscat-hf evaluate` on a score model: the score report, its plots and the card, on a phantom test
split."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from loscat_hf.cli import main
from loscat_hf.data.score_tables import COMPONENTS
from loscat_hf.demo.phantom import generate_demo_data

PLANTED = "SMITH-JANE-MRN"  # planted into every clinic patient id: must never leave private/ or memory
PLANTED_VISIT = "clinic-visit-1987-"  # and into every visit id
METRICS = {"n", "mae", "rmse", "pearson", "spearman", "qwk", "icc_2_1", "severity_accuracy"}
TOTAL_METRICS = METRICS - {"severity_accuracy"}  # a sum of sites has no severity class


def _strict_json(path):
    """The file as strict JSON: a bare NaN token (not JSON) fails."""
    return json.loads(path.read_text(), parse_constant=lambda token: pytest.fail(f"{path.name}: {token}"))


def _rewrite_patients(path):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        row["patient_id"] = PLANTED + row["patient_id"]
        row["visit"] = PLANTED_VISIT + row["visit"]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return rows


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    """Phantom clinic (patient ids with a planted name) -> prepare --scores with a test split -> a tiny score
    model trained for 2 epochs; and a copy of the score table with one empty cell in a test-split visit."""
    from loscat_hf.data.dataset import load_packed_dataset
    from loscat_hf.data.prepare import prepare
    from loscat_hf.data.private import clinic_ids
    from loscat_hf.taxonomy import load_taxonomy
    from loscat_hf.training.parse import parse_train_args
    from loscat_hf.training.run import train

    root = tmp_path_factory.mktemp("scored")
    demo = root / "demo"
    generate_demo_data(demo, n_patients=20, n_photos=200, image_size=(96, 72), n_unlabeled=0, seed=5,
                       num_workers=1)
    _rewrite_patients(demo / "annotations.csv")
    table_rows = _rewrite_patients(demo / "loscat_scores.csv")
    prepare(annotations=str(demo / "annotations.csv"), images=str(demo / "images"), out=str(root / "ds"),
            scores=str(demo / "loscat_scores.csv"), val_fraction=0.2, test_fraction=0.3, max_side=48, seed=5,
            num_workers=1, progress=False)
    train(*parse_train_args([
        "--dataset", str(root / "ds"), "--output-dir", str(root / "model"), "--model", "tiny",
        "--task", "scores", "--image-size", "32", "--num-train-epochs", "2", "--learning-rate", "2e-3",
        "--warmup-steps", "0", "--per-device-train-batch-size", "16", "--dataloader-num-workers", "0",
        "--save-strategy", "no", "--load-best-model-at-end", "false", "--eval-strategy", "no",
        "--logging-steps", "50", "--seed", "5"]))
    test = load_packed_dataset(str(root / "ds"), load_taxonomy())["test"]
    patients, visits = clinic_ids(root / "ds", list(test["patient_id"]), list(test["visit"]))
    test_visits = sorted(set(zip(patients, visits, strict=True)))
    # one empty LoSDI cell in a test visit: that visit's rated LoSDI is unknown (missing is never zero)
    blank = next(r for r in table_rows if (r["patient_id"], r["visit"]) == test_visits[0])
    blank["dyspigmentation"] = ""
    incomplete = root / "scores_incomplete.csv"
    with open(incomplete, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(table_rows[0]))
        w.writeheader()
        w.writerows(table_rows)
    return dict(root=root, ds=root / "ds", model=root / "model", table=incomplete, test=test,
                test_visits=test_visits, table_rows=table_rows)


@pytest.fixture(scope="module")
def evaluated(scored):
    out = scored["model"] / "test_eval"  # inside the model folder: the card picks it up
    code = main(["evaluate", "--model", str(scored["model"]), "--dataset", str(scored["ds"]),
                 "--split", "test", "--scores", str(scored["table"]), "--out", str(out)])
    assert code == 0
    return out


def test_training_writes_the_validation_score_report(scored):
    report = json.loads((scored["model"] / "eval" / "scores_report.json").read_text())
    assert report["split"] == "validation" and set(report["components"]) == set(COMPONENTS)
    assert (scored["model"] / "eval" / "score_agreement.png").is_file()


def test_evaluate_reports_score_agreement_on_the_test_split(scored, evaluated):
    from loscat_hf.data.dataset import split_score_targets
    from loscat_hf.evaluation.split_eval import split_outputs
    from loscat_hf.model.score_heads import clip_scores

    report = _strict_json(evaluated / "scores_report.json")
    test = scored["test"]
    assert report["split"] == "test" and report["n_photos"] == len(test)
    assert list(report["components"]) == list(COMPONENTS)
    for m in report["components"].values():
        assert set(m) == METRICS
    # the numbers are the model's predictions against the photos' own rated scores, in photo order
    out = split_outputs(str(scored["model"]), test)
    pred, true = clip_scores(out.scores, out.components), split_score_targets(test)
    # the targets are the packed score_* columns, photo by photo, empty = NaN
    for j, c in enumerate(COMPONENTS):
        column = np.array([np.nan if v is None else v for v in test[f"score_{c}"]], dtype=float)
        np.testing.assert_array_equal(true[:, j], column)
    assert report["n_photos_rated"] == int((~np.isnan(true)).any(axis=1).sum()) > 0
    for j, c in enumerate(COMPONENTS):
        keep = ~np.isnan(true[:, j])
        assert report["components"][c]["n"] == keep.sum()
        assert report["components"][c]["mae"] == pytest.approx(np.abs(pred[keep, j] - true[keep, j]).mean())
    # region metrics are still there, beside the score report
    metrics = json.loads((evaluated / "metrics.json").read_text())
    assert metrics["n"] == len(test)
    # what `evaluate` prints: the region line, then one line per component and per visit total
    from loscat_hf.evaluation.split_eval import EvaluationResult

    text = EvaluationResult("test", metrics, evaluated, scores=report).summary()
    ery = report["components"]["erythema"]
    assert f"erythema: n={ery['n']} MAE {ery['mae']:.2f}," in text
    assert "mLoSSI per visit: n=" in text and text.endswith(str(evaluated / "scores_report.json"))


def test_visit_totals_leave_out_an_incomplete_rated_total(scored, evaluated):
    from loscat_hf.taxonomy import load_taxonomy

    totals = _strict_json(evaluated / "scores_report.json")["visit_totals"]
    n = len(scored["test_visits"])
    # photos whose side is unknown (packed with their class name) are in no visit total, and counted
    assert totals["photos_without_site"] == sum(s not in load_taxonomy().sites
                                                for s in scored["test"]["site"])
    assert totals["n_visits"] == n and totals["n_visits_not_in_table"] == 0
    assert totals["mlossi"]["n"] == n and totals["mlossi"]["n_incomplete_left_out"] == 0
    assert totals["losdi"]["n"] == n - 1 and totals["losdi"]["n_incomplete_left_out"] == 1  # the empty cell
    assert totals["photographed_sites"]["losdi"]["n"] == n  # compared cell by cell: the visit stays
    assert 0 < totals["sites_photographed"] <= totals["sites_scored"]
    assert set(totals["mlossi"]) == TOTAL_METRICS | {"n_incomplete_left_out"}
    assert set(totals["photographed_sites"]["losdi"]) == TOTAL_METRICS


def test_scatter_plots_and_markdown_table(evaluated):
    for name in ("score_agreement.png", "visit_totals.png"):
        with Image.open(evaluated / name) as im:
            assert im.format == "PNG" and im.width > 600 and im.height > 300
    md = (evaluated / "scores.md").read_text()
    for c in COMPONENTS:
        assert f"| {c} |" in md
    assert md.count("| mLoSSI |") == 2 and md.count("| LoSDI |") == 2  # whole visit, photographed sites
    assert "1 with an empty cell left out" in md


def test_card_states_score_metrics_with_n_and_split(scored, evaluated):
    from loscat_hf.model.card import model_card

    card = model_card(scored["model"]).content
    report = json.loads((evaluated / "scores_report.json").read_text())
    assert f"LoSCAT score agreement on the test split ({len(scored['test'])} photos" in card
    assert "LoSCAT score agreement on the validation split" in card  # the one train wrote
    ery = report["components"]["erythema"]
    assert f"| erythema | {ery['n']} | {ery['mae']:.2f} |" in card
    assert f"| mLoSSI per visit | {report['visit_totals']['mlossi']['n']} |" in card


def test_nothing_publishable_names_a_patient_or_the_table(scored, evaluated):
    from loscat_hf.model.card import model_card

    # the phantom's names carry an MRN
    with open(scored["root"] / "demo" / "annotations.csv", newline="") as f:
        photo_names = {Path(r["image"]).stem.encode() for r in csv.DictReader(f)}
    planted = [PLANTED.encode(), PLANTED_VISIT.encode(), scored["table"].name.encode(), *photo_names,
               *{r["patient_id"].encode() for r in scored["table_rows"]}]
    published = [p for p in evaluated.rglob("*") if p.is_file()]
    published += [p for p in (scored["model"] / "eval").rglob("*") if p.is_file()]
    assert any(p.name == "visit_totals.png" for p in published)
    for path in published:
        data = path.read_bytes()
        assert not [s for s in planted if s in data], path
    card = model_card(scored["model"]).content.encode()
    assert not [s for s in planted if s in card]


def test_region_only_model_refuses_scores_and_drops_a_stale_score_report(scored, evaluated, tiny_dataset,
                                                                          tmp_path, capsys):
    from conftest import save_tiny_model

    region = save_tiny_model(tmp_path / "region")
    capsys.readouterr()  # (saving shows a progress bar)
    out = tmp_path / "out"
    out.mkdir()
    (out / "scores_report.json").write_text("{}")  # left by an earlier score model
    (out / "score_agreement.png").write_bytes(b"old")
    args = ["evaluate", "--model", str(region), "--dataset", str(tiny_dataset), "--out", str(out)]
    assert main([*args, "--scores", str(scored["table"])]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--task scores" in err
    assert main(args) == 0
    assert not (out / "scores_report.json").exists() and not (out / "score_agreement.png").exists()
    assert "LoSCAT scores" not in capsys.readouterr().out


def test_bad_score_table_is_refused_with_its_row_before_the_model_runs(scored, tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    rows = [dict(r) for r in scored["table_rows"]]
    rows[2]["erythema"] = "7"
    with open(bad, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    out = tmp_path / "out"
    assert main(["evaluate", "--model", str(scored["model"]), "--dataset", str(scored["ds"]),
                 "--split", "test", "--scores", str(bad), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "row 4" in err and not out.exists()


def test_ensemble_of_one_model_points_to_evaluate(scored, tmp_path, capsys):
    assert main(["evaluate-ensemble", "--models", str(scored["model"]), "--dataset", str(scored["ds"]),
                 "--split", "test", "--out", str(tmp_path / "ens"), "--scores", str(scored["table"])]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert (f"loscat-hf evaluate --model {scored['model']} --dataset {scored['ds']} --split test --out "
            f"{tmp_path / 'ens'} --scores {scored['table']}") in err


def test_score_report_without_rated_scores_says_so(tmp_path):
    from loscat_hf.evaluation.score_report import score_report

    report = score_report(np.full((4, len(COMPONENTS)), 1.2), None, tuple(COMPONENTS), tmp_path, "test")
    assert report["components"] is None and "prepare --scores" in report["note"]
    assert not (tmp_path / "score_agreement.png").exists()
    assert "prepare --scores" in (tmp_path / "scores.md").read_text()


@pytest.mark.parametrize("rows", ["none", "other clinic"])
def test_a_table_without_the_splits_visits_is_refused_before_the_model_runs(scored, tmp_path, capsys, rows):
    table = tmp_path / "scores.csv"
    header = "patient_id,visit,site," + ",".join(COMPONENTS) + "\n"
    table.write_text(header if rows == "none" else header + "OTHER-1,V1,head,1,1,0,0,0,0\n")
    out = tmp_path / "out"
    for command in (["evaluate", "--model"], ["evaluate-ensemble", "--models", str(scored["model"])]):
        assert main([*command, str(scored["model"]), "--dataset", str(scored["ds"]), "--split", "test",
                     "--scores", str(table), "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "none of the split's" in err and "codes.csv" in err
        assert not out.exists()


def test_visit_table_meets_ids_written_as_numbers_in_one_table():
    import pandas as pd

    from loscat_hf.evaluation.score_metrics import compare_totals

    photos = pd.DataFrame([("1001", "2", "head", 1, 1, 0, 1, 1, 1)], columns=["patient_id", "visit", "site",
                                                                             *COMPONENTS])
    rated = photos.astype({"patient_id": int, "visit": int})  # as pandas reads a CSV of numbers
    assert compare_totals(photos, rated)["mlossi"]["mae"] == 0.0
