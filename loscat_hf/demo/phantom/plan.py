"""The plan of a whole phantom archive: patients, which photos exist, their specs, ratings, truth and scores.

All randomness of an archive except the pixels is drawn here, in the main process and in a fixed order from
`seed`, so the same arguments give the same archive whatever the number of render workers.
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import numpy as np

from loscat_hf.demo.phantom.cohort import (
    SEVERITY_COLUMNS,
    _file_name,
    _make_patient,
    _photo_spec,
    _site_probabilities,
)
from loscat_hf.demo.phantom.raters import _ratings
from loscat_hf.taxonomy import load_taxonomy


def _plan(n_patients: int, n_photos: int, n_unlabeled: int, image_size: tuple[int, int], seed: int,
          root: Path) -> tuple[list[dict], list[dict], list[dict], list[dict], list[dict]]:
    """Patients, photo specs, rating rows, truth rows; everything random is drawn here from `seed`.

    Returns (specs of labelled then unlabeled photos, rating rows, truth rows, unlabeled truth rows,
    LoSCAT score rows).
    """
    tax = load_taxonomy()
    sites = tax.sites
    site_p = _site_probabilities(sites, tax.site_to_class)
    neighbours = _neighbour_map(tax)

    rng = np.random.default_rng([seed, 1])
    patients = [_make_patient(rng, i, f"P{i + 1:04d}", seed, sites, site_p) for i in range(n_patients)]
    assign = _assign_photos(rng, patients, n_photos, tax, site_p)
    specs, rating_rows, truth_rows = [], [], []
    number = 1000 + int(rng.integers(0, 3000))
    for idx, (pi, visit, site) in enumerate(assign):
        pat = patients[pi]
        number += 1 + int(rng.integers(0, 4))
        rel = f"{pat['pid']}/{visit}/{_file_name(pat, visit, number)}"
        spec = _photo_spec(rng, seed, idx, pat, visit, site, image_size, root / "images" / rel, number)
        specs.append(spec)
        truth_rows.append(_truth_row(rel, pat, visit, site, spec, tax))
        for rater, region, quality in _ratings(rng, site, spec["defect"], tax, neighbours):
            rating_rows.append(dict(image=rel, patient_id=pat["pid"], visit=visit, region=region, rater=rater,
                                    quality=quality, skin_tone=pat["skin_tone"]))

    # unlabeled photos: other patients, drawn from their own stream so labelled output does not depend on it
    urng = np.random.default_rng([seed, 2])
    n_up = max(1, math.ceil(n_unlabeled / 4)) if n_unlabeled else 0
    upatients = [_make_patient(urng, n_patients + i, f"P{n_patients + i + 1:04d}", seed, sites, site_p)
                 for i in range(n_up)]
    unl_rows = []
    for j in range(n_unlabeled):
        pat = upatients[j % n_up]
        visit = pat["visits"][int(urng.integers(len(pat["visits"])))]
        site = (pat["affected"][int(urng.integers(len(pat["affected"])))] if urng.random() < 0.8
                else str(urng.choice(sites, p=site_p)))
        number += 1 + int(urng.integers(0, 4))
        rel = _file_name(pat, visit, number)
        spec = _photo_spec(urng, seed, n_photos + j, pat, visit, site, image_size, root / "unlabeled" / rel,
                           number)
        specs.append(spec)
        unl_rows.append(_truth_row(rel, pat, visit, site, spec, tax))

    scores = _score_table(patients + upatients, truth_rows + unl_rows, sites)
    return specs, rating_rows, truth_rows, unl_rows, scores


def _neighbour_map(tax) -> dict[str, list[str]]:
    """Taxonomy neighbour pairs as lists per name, in a fixed order (the RNG picks from them by index)."""
    neighbours: dict[str, list[str]] = {}
    for pair in sorted(tuple(sorted(p)) for p in tax.neighbours):
        a, b = pair
        neighbours.setdefault(a, []).append(b)
        neighbours.setdefault(b, []).append(a)
    return neighbours


def _assign_photos(rng: np.random.Generator, patients: list[dict], n_photos: int, tax,
                   site_p: np.ndarray) -> list[tuple[int, str, str]]:
    """(patient index, visit, site) per labelled photo: every patient at least one, a few patients many,
    mostly affected sites, and every class at least once."""
    sites = tax.sites
    n_patients = len(patients)
    weights = rng.lognormal(0, 0.8, n_patients)
    counts = 1 + rng.multinomial(n_photos - n_patients, weights / weights.sum())
    assign: list[tuple[int, str, str]] = []
    for pi, c in enumerate(counts):
        pat = patients[pi]
        for _ in range(int(c)):
            visit = pat["visits"][int(rng.integers(len(pat["visits"])))]
            if rng.random() < 0.8:
                site = pat["affected"][int(rng.integers(len(pat["affected"])))]
            else:  # comparison photo of another (usually unaffected) site
                site = str(rng.choice(sites, p=site_p))
            assign.append((pi, visit, site))
    # every class present: re-aim photos from the most common classes at the missing ones
    for cls in tax.classes:
        have = Counter(tax.site_to_class[s] for _, _, s in assign)
        if have[cls]:
            continue
        big = have.most_common(1)[0][0]
        j = max(i for i, (_, _, s) in enumerate(assign) if tax.site_to_class[s] == big)
        options = [s for s in sites if tax.site_to_class[s] == cls]
        pi, visit, _ = assign[j]
        assign[j] = (pi, visit, options[int(rng.integers(len(options)))])
    return assign


def _truth_row(rel: str, pat: dict, visit: str, site: str, spec: dict, tax) -> dict:
    """The ground truth of one photo, as written to photos_truth.csv / unlabeled_truth.csv."""
    return dict(image=rel, patient_id=pat["pid"], visit=visit, site=site, label=tax.site_to_class[site],
                **dict(zip(SEVERITY_COLUMNS, spec["severity"], strict=True)), view=spec["view"],
                skin_tone=pat["skin_tone"], orientation=spec["orientation"], defect=spec["defect"] or "")


def _score_table(patients: list[dict], truth_rows: list[dict], sites: tuple[str, ...]) -> list[dict]:
    """LoSCAT score table: every affected site at every visit, plus photographed unaffected sites (all
    zero)."""
    score_rows: dict[tuple[str, str, str], tuple[int, ...]] = {}
    for pat in patients:
        for (visit, site), sev in pat["severity"].items():
            score_rows[(pat["pid"], visit, site)] = sev
    for row in truth_rows:
        key = (row["patient_id"], row["visit"], row["site"])
        score_rows.setdefault(key, tuple(row[c] for c in SEVERITY_COLUMNS))
    order = {s: i for i, s in enumerate(sites)}
    return [dict(patient_id=p, visit=v, site=s, **dict(zip(SEVERITY_COLUMNS, sev, strict=True)))
            for (p, v, s), sev in sorted(score_rows.items(),
                                         key=lambda kv: (kv[0][0], kv[0][1], order[kv[0][2]]))]
