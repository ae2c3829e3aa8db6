"""The plan of a whole phantom archive: patients, which photos exist, their specs, ratings, truth and scores.

All randomness of an archive except the pixels is drawn here, in the main process and in a fixed order from
`seed`, so the same arguments give the same archive whatever the number of render workers.
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import numpy as np

from loscat_hf.demo.phantom.anatomy import SPAN_PAIRS, _keypoints, _side_parts, _span_segment
from loscat_hf.demo.phantom.cohort import (
    SEVERITY_COLUMNS,
    _file_name,
    _make_patient,
    _photo_spec,
    _site_probabilities,
)
from loscat_hf.demo.phantom.lesions import _span_lesion_geometry
from loscat_hf.demo.phantom.raters import _ratings
from loscat_hf.taxonomy import SET_SEPARATOR, load_taxonomy

# multi_region: share of the labelled photos, and of the unlabeled ones, that show two adjacent sites (fewer
# when not enough photos show a lesion at a site with an adjacent partner)
SPAN_SHARE = 0.25


def _plan(n_patients: int, n_photos: int, n_unlabeled: int, image_size: tuple[int, int], seed: int,
          root: Path, multi_region: bool = False) -> tuple[list[dict], list[dict], list[dict], list[dict],
                                                           list[dict]]:
    """Patients, photo specs, rating rows, truth rows; everything random is drawn here from `seed`.

    Returns (specs of labelled then unlabeled photos, rating rows, truth rows, unlabeled truth rows,
    LoSCAT score rows). `multi_region` turns some labelled and unlabeled photos into spanning ones
    (`_make_spanning`), chosen from streams of their own: every other photo and rating stays as without it.
    """
    tax = load_taxonomy()
    sites = tax.sites
    site_p = _site_probabilities(sites, tax.site_to_class)
    neighbours = _neighbour_map(tax)

    rng = np.random.default_rng([seed, 1])
    patients = [_make_patient(rng, i, f"P{i + 1:04d}", seed, sites, site_p) for i in range(n_patients)]
    assign = _assign_photos(rng, patients, n_photos, tax, site_p)
    srng = np.random.default_rng([seed, 3]) if multi_region else None
    spans = _choose_spans(srng, assign, patients, tax) if multi_region else {}
    specs, rating_rows, truth_rows = [], [], []
    number = 1000 + int(rng.integers(0, 3000))
    for idx, (pi, visit, site) in enumerate(assign):
        pat = patients[pi]
        number += 1 + int(rng.integers(0, 4))
        rel = f"{pat['pid']}/{visit}/{_file_name(pat, visit, number)}"
        spec = _photo_spec(rng, seed, idx, pat, visit, site, image_size, root / "images" / rel, number)
        also = _make_spanning(spec, pat, site, spans[idx], seed) if idx in spans else None
        specs.append(spec)
        shown_sites = SET_SEPARATOR.join(spec.get("sites", (site,)))
        truth_rows.append(_truth_row(rel, pat, visit, shown_sites, spec, tax))
        for rater, region, quality in _ratings(rng, site, spec["defect"], tax, neighbours, also, srng):
            rating_rows.append(dict(image=rel, patient_id=pat["pid"], visit=visit, region=region, rater=rater,
                                    quality=quality, skin_tone=pat["skin_tone"]))

    # unlabeled photos: other patients, drawn from their own stream so labelled output does not depend on it
    urng = np.random.default_rng([seed, 2])
    n_up = max(1, math.ceil(n_unlabeled / 4)) if n_unlabeled else 0
    upatients = [_make_patient(urng, n_patients + i, f"P{n_patients + i + 1:04d}", seed, sites, site_p)
                 for i in range(n_up)]
    uassign, urels = [], []
    for j in range(n_unlabeled):
        pat = upatients[j % n_up]
        visit = pat["visits"][int(urng.integers(len(pat["visits"])))]
        site = (pat["affected"][int(urng.integers(len(pat["affected"])))] if urng.random() < 0.8
                else str(urng.choice(sites, p=site_p)))
        number += 1 + int(urng.integers(0, 4))
        rel = _file_name(pat, visit, number)
        specs.append(_photo_spec(urng, seed, n_photos + j, pat, visit, site, image_size,
                                 root / "unlabeled" / rel, number))
        uassign.append((j % n_up, visit, site))
        urels.append(rel)
    # multi_region: the same share of unlabeled photos spans two sites, chosen from a stream of their own
    # once all are drawn, so every urng draw (and, without the flag, every byte) stays as before
    uspans = _choose_spans(np.random.default_rng([seed, 5]), uassign, upatients, tax) if multi_region else {}
    unl_rows = []
    for j, ((pi, visit, site), rel) in enumerate(zip(uassign, urels, strict=True)):
        spec = specs[n_photos + j]
        if j in uspans:
            _make_spanning(spec, upatients[pi], site, uspans[j], seed)
        shown = SET_SEPARATOR.join(spec.get("sites", (site,)))
        unl_rows.append(_truth_row(rel, upatients[pi], visit, shown, spec, tax))

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


def _choose_spans(rng: np.random.Generator, assign: list[tuple[int, str, str]], patients: list[dict],
                  tax) -> dict[int, tuple[str, str]]:
    """Which photos span two sites: SPAN_SHARE of all, drawn among photos of a lesion at a site
    that has an adjacent partner in SPAN_PAIRS -> {photo index: (proximal class, distal class)}."""
    eligible = [i for i, (pi, visit, site) in enumerate(assign)
                if any(tax.site_to_class[site] in pair for pair in SPAN_PAIRS)
                and any(patients[pi]["severity"].get((visit, site), ()))]
    k = min(len(eligible), round(SPAN_SHARE * len(assign)))
    spans = {}
    for i in sorted(int(i) for i in rng.choice(eligible, size=k, replace=False)):
        cls = tax.site_to_class[assign[i][2]]
        pairs = [pair for pair in SPAN_PAIRS if cls in pair]
        spans[i] = pairs[int(rng.integers(len(pairs)))]
    return spans


def _make_spanning(spec: dict, pat: dict, site: str, pair: tuple[str, str], seed: int) -> str:
    """Turn a one-site photo spec into one framing both sites of `pair`, with one linear streak across their
    border (same pigment and texture seed as the patient's lesion there); -> the other site it shows.

    The streak is the same at every visit (its own RNG per patient, pair and side); an arm and forearm are
    photographed held straight so that the streak follows the limb."""
    side = _side_parts(site)[0]
    names = tuple(f"{side}_{c}" if side else c for c in pair)
    patient = spec["patient"]
    if pair == ("arm", "forearm"):
        patient = {**patient, "body": {**patient["body"], "elbow_bend": 0.0}}
    _, t_border = _span_segment(pair, _keypoints(patient["body"]), spec["x_sign"])
    grng = np.random.default_rng([seed, 4, pat["index"], SPAN_PAIRS.index(pair), int(side == "right")])
    lesion = _span_lesion_geometry(grng, float(np.clip(t_border, 0.2, 0.8)), spec["lesion"]["pigment"],
                                   spec["lesion"]["seed"])
    desc = spec["exif"]["description"].replace(f" {site.replace('_', ' ')} IMG_",
                                               f" {' + '.join(n.replace('_', ' ') for n in names)} IMG_")
    spec.update(patient=patient, span=pair, sites=names, lesion=lesion,
                exif={**spec["exif"], "description": desc})
    return names[1] if names[0] == site else names[0]


def _truth_row(rel: str, pat: dict, visit: str, site: str, spec: dict, tax) -> dict:
    """The ground truth of one photo, as written to photos_truth.csv / unlabeled_truth.csv; a spanning
    photo's `site` and `label` name both, ';'-joined in the taxonomy's order."""
    label = SET_SEPARATOR.join(tax.site_to_class[s] for s in site.split(SET_SEPARATOR))
    return dict(image=rel, patient_id=pat["pid"], visit=visit, site=site, label=label,
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
        for site in row["site"].split(SET_SEPARATOR):  # a spanning lesion counts in both its sites
            key = (row["patient_id"], row["visit"], site)
            score_rows.setdefault(key, tuple(row[c] for c in SEVERITY_COLUMNS))
    order = {s: i for i, s in enumerate(sites)}
    return [dict(patient_id=p, visit=v, site=s, **dict(zip(SEVERITY_COLUMNS, sev, strict=True)))
            for (p, v, s), sev in sorted(score_rows.items(),
                                         key=lambda kv: (kv[0][0], kv[0][1], order[kv[0][2]]))]
