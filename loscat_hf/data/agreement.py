"""Inter-rater agreement on region labels: how far the consensus labels can be trusted.

A model cannot be expected to beat the raters it learns from, so `prepare` reports how often raters
agree (raw percent, Cohen's kappa per rater pair, Fleiss' kappa overall) and which classes they confuse.
Only valid class labels count: non-site codes ("unclear", ...) are not a region and are left out.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from itertools import combinations

import pandas as pd

from loscat_hf.errors import LoscatError
from loscat_hf.taxonomy import SET_SEPARATOR as _SET  # a rating of several regions: its classes ';'-joined

_COLUMNS = ("image", "rater", "label")


def agreement_report(
    ratings: pd.DataFrame, labels: Sequence[str], *, pairwise: bool = True, top_confused: int = 10
) -> dict:
    """Agreement statistics over `ratings` (columns image, rater, label; one row per rating).

    Rows whose label is not in `labels` (non-site codes) are ignored, and so is a second rating of the
    same photo by the same rater (first kept). Returns a JSON-serialisable dict:

    - ``percent_agreement``: % of photos with >= 2 raters on which all raters gave the same label;
    - ``fleiss_kappa``: Fleiss' kappa over those photos, in the generalised form that allows a varying
      number of raters per photo (identical to Fleiss 1971 when every photo has the same number);
    - ``pairs``: per rater pair that shares photos: ``n_photos``, ``percent_agreement``, ``cohen_kappa``
      (left empty with ``pairwise=False``, e.g. when raters are anonymous and no pair is meaningful);
    - ``most_confused``: the `top_confused` unordered pairs of different labels given to one photo,
      counted over rater pairs.

    A rating of several regions (classes ';'-joined) is one category for the figures above: raters agree
    on a photo when they give the same set. When any rating is a set, ``per_class`` adds per class, over the
    photos with >= 2 raters: ``n_photos_named`` (some rater named the class), ``percent_agreement`` (all
    raters agree whether the photo shows it) and ``fleiss_kappa`` (present/absent); ``n_set_ratings``
    counts the ratings of several regions.

    A kappa is None (JSON null) when it is undefined: no photo with two ratings, or chance agreement of 1
    because a single label was used throughout (then observed agreement is 100% too, which says nothing
    about how well raters tell classes apart).
    """
    missing = [c for c in _COLUMNS if c not in ratings.columns]
    if missing:
        raise LoscatError(f"agreement needs columns {list(_COLUMNS)}; missing {missing}")
    labels = [str(label) for label in labels]
    frame = ratings.loc[:, list(_COLUMNS)].astype(str)
    sets = sorted(v for v in frame["label"].unique() if _SET in v and set(v.split(_SET)) <= set(labels))
    categories = labels + sets  # a set of regions is one more category for the exact-answer figures
    order = {label: i for i, label in enumerate(categories)}
    frame = frame[frame["label"].isin(order)].drop_duplicates(["image", "rater"], keep="first")

    by_photo: dict[str, dict[str, str]] = defaultdict(dict)
    for image, rater, label in frame.itertuples(index=False, name=None):
        by_photo[image][rater] = label
    multi = {image: votes for image, votes in by_photo.items() if len(votes) >= 2}

    pair_labels: dict[tuple[str, str], list[tuple[str, str]]] = defaultdict(list)
    confused: Counter[tuple[str, str]] = Counter()
    n_all_agree = 0
    for votes in multi.values():
        n_all_agree += len(set(votes.values())) == 1
        for (rater_a, label_a), (rater_b, label_b) in combinations(sorted(votes.items()), 2):
            pair_labels[(rater_a, rater_b)].append((label_a, label_b))
            if label_a != label_b:
                confused[tuple(sorted((label_a, label_b), key=order.__getitem__))] += 1

    pairs = []
    if pairwise:
        for (rater_a, rater_b), pair in sorted(pair_labels.items()):
            same = sum(a == b for a, b in pair)
            pairs.append({
                "rater_a": rater_a,
                "rater_b": rater_b,
                "n_photos": len(pair),
                "percent_agreement": 100.0 * same / len(pair),
                "cohen_kappa": _cohen_kappa(pair, categories),
            })
    ranked = sorted(confused.items(), key=lambda item: (-item[1], order[item[0][0]], order[item[0][1]]))
    extra = {"n_set_ratings": int(frame["label"].str.contains(_SET, regex=False).sum()),
             "per_class": _per_class(multi, labels)} if sets else {}
    return {
        "labels": labels,
        "n_ratings": int(len(frame)),
        "n_raters": int(frame["rater"].nunique()),
        "n_photos": len(by_photo),
        "n_photos_multi_rated": len(multi),
        "percent_agreement": 100.0 * n_all_agree / len(multi) if multi else None,
        "fleiss_kappa": fleiss_kappa([Counter(votes.values()) for votes in multi.values()]),
        "pairs": pairs,
        "most_confused": [{"labels": list(pair), "count": count} for pair, count in ranked[:top_confused]],
        **extra,
    }


def _per_class(multi: dict[str, dict[str, str]], labels: list[str]) -> list[dict]:
    """Per class, over photos with >= 2 raters: do the raters agree whether the photo shows it?"""
    out = []
    for label in labels:
        shown = [[label in answer.split(_SET) for answer in votes.values()] for votes in multi.values()]
        named = [row for row in shown if any(row)]
        agree = sum(all(row) or not any(row) for row in shown)
        out.append({
            "label": label, "n_photos_named": len(named),
            "percent_agreement": 100.0 * agree / len(shown) if shown else None,
            "fleiss_kappa": fleiss_kappa([Counter(row) for row in shown]),
        })
    return out


def _cohen_kappa(pair: list[tuple[str, str]], labels: list[str]) -> float | None:
    """Cohen's kappa for one rater pair; None when both raters used one and the same label only."""
    if len({label for both in pair for label in both}) < 2:
        return None  # chance agreement is 1: kappa is 0/0
    from sklearn.metrics import cohen_kappa_score  # lazy: sklearn is slow to import, only needed here

    first, second = zip(*pair, strict=True)
    return float(cohen_kappa_score(list(first), list(second), labels=labels))


def fleiss_kappa(counts: Sequence[Counter[str] | dict[str, int]]) -> float | None:
    """Fleiss' kappa from per-photo label counts, allowing a different number of raters per photo.

    P_i = (sum_j n_ij^2 - n_i) / (n_i (n_i - 1)), P_bar = mean P_i, p_j = sum_i n_ij / sum_i n_i,
    Pe = sum_j p_j^2, kappa = (P_bar - Pe) / (1 - Pe). Photos with fewer than 2 ratings carry no
    agreement information and are skipped. None when undefined (no such photo, or Pe == 1).
    """
    rows = [row for row in counts if sum(row.values()) >= 2]
    if not rows:
        return None
    p_values = []
    totals: Counter[str] = Counter()
    n_total = 0
    for row in rows:
        n_i = sum(row.values())
        p_values.append((sum(v * v for v in row.values()) - n_i) / (n_i * (n_i - 1)))
        totals.update(row)
        n_total += n_i
    p_bar = sum(p_values) / len(p_values)
    p_e = sum((v / n_total) ** 2 for v in totals.values())
    if p_e >= 1.0 - 1e-12:
        return None
    return float((p_bar - p_e) / (1.0 - p_e))


def _fmt(value: float | None, pattern: str) -> str:
    return "n/a" if value is None else format(value, pattern)


def format_agreement(report: dict, max_pairs: int = 20) -> str:
    """A short console table of `agreement_report` output."""
    n_multi = report.get("n_photos_multi_rated", 0)
    if not n_multi:
        return "Inter-rater agreement: no photo has two or more valid ratings; nothing to compare."
    lines = [
        f"Inter-rater agreement ({n_multi} photos rated by >= 2 raters, {report['n_raters']} raters, "
        f"{len(report['labels'])} classes; non-site codes left out)",
        f"  all raters agree on {_fmt(report['percent_agreement'], '.1f')}% of photos; "
        f"Fleiss' kappa {_fmt(report['fleiss_kappa'], '.3f')}",
    ]
    pairs = report.get("pairs", [])
    if pairs:
        width = max(len(f"{p['rater_a']} vs {p['rater_b']}") for p in pairs[:max_pairs])
        width = max(width, len("rater pair"))
        lines.append(f"  {'rater pair':<{width}}  {'photos':>6}  {'agree':>6}  {'kappa':>6}")
        for p in pairs[:max_pairs]:
            name = f"{p['rater_a']} vs {p['rater_b']}"
            lines.append(
                f"  {name:<{width}}  {p['n_photos']:>6}  {_fmt(p['percent_agreement'], '5.1f'):>5}%"
                f"  {_fmt(p['cohen_kappa'], '.3f'):>6}"
            )
        if len(pairs) > max_pairs:
            lines.append(f"  ... and {len(pairs) - max_pairs} more rater pairs (see the JSON report)")
    per_class = [c for c in report.get("per_class", []) if c["n_photos_named"]]
    if per_class:
        lines.append(f"  {report.get('n_set_ratings', 0)} ratings name several regions; per class (shows it "
                     "or not):")
        lines += [f"    {c['label']:<12} named on {c['n_photos_named']:>4} photos, all agree "
                  f"{_fmt(c['percent_agreement'], '5.1f')}%, kappa {_fmt(c['fleiss_kappa'], '.3f')}"
                  for c in per_class]
    confused = report.get("most_confused", [])
    if confused:
        text = ", ".join(f"{c['labels'][0]}/{c['labels'][1]} ({c['count']})" for c in confused)
        lines.append(f"  most confused: {text}")
    return "\n".join(lines)
