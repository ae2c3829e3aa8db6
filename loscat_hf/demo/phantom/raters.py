"""Simulated raters: which site each labels a photo with, how they spell it, and the quality they give.

Real rater exports are messy (own spellings, neighbour-site disagreements, left/right slips, "unclear"
codes, poor/exclude marks on bad photos); the phantom reproduces that so the consensus reader is exercised.
"""

from __future__ import annotations

import numpy as np

from loscat_hf.demo.phantom.anatomy import _side_parts

RATERS = ("R1", "R2", "R3", "R4")

# How raters write site names; every form must parse with `Taxonomy.parse` (tests check all of them).
_BASE_WORDS = {
    "head": ("head", "Head", "HEAD", "face", "Face", "scalp", "forehead", "Head and face"),
    "neck": ("neck", "Neck", "NECK"),
    "chest": ("chest", "Chest", "CHEST", "thorax", "anterior chest", "Anterior trunk"),
    "abdomen": ("abdomen", "Abdomen", "ABDOMEN", "belly", "stomach"),
    "upper_back": ("upper back", "Upper Back", "upper-back", "UPPER_BACK", "upper_back", "back upper",
                   "Back (upper)"),
    "lower_back": ("lower back", "Lower Back", "lower-back", "LOWER_BACK", "lumbar", "low back",
                   "Back (lower)"),
    "arm": ("arm", "Arm", "upper arm", "Upper arm"),
    "forearm": ("forearm", "Forearm", "lower arm"),
    "hand": ("hand", "Hand"),
    "thigh": ("thigh", "Thigh", "upper leg"),
    "leg": ("leg", "Leg", "lower leg", "shin", "calf"),
    "foot": ("foot", "Foot"),
}
_SIDE_FORMATS = {  # rater style -> formats; {s}=left, {S}=L, {St}=Lt, {base}
    "plain": ("{s} {base}", "{sc} {Base}"),
    "abbrev": ("{S} {base}", "{St}. {Base}", "{St} {base}"),
    "suffix": ("{base} ({s})", "{Base}, {s}", "{s}-{hbase}", "{base} ({S})"),
    "export": ("{SU}_{BASEU}", "{sc} {Base}", "{base} {S}"),
}
_STYLES = tuple(_SIDE_FORMATS)
_RATER_STYLE = {"R1": "plain", "R2": "abbrev", "R3": "suffix", "R4": "export"}
_RATER_ACCURACY = {"R1": 0.93, "R2": 0.91, "R3": 0.89, "R4": 0.84}
_CODES = ("unclear", "Unclear", "multiple", "Multiple sites", "not gradable", "Not gradable", "ungradable")


def spelling_variants(site: str) -> list[str]:
    """Every spelling the simulated raters may write for an 18-site canonical name (for tests and docs)."""
    side, cls = _side_parts(site)
    bases = _BASE_WORDS[cls]
    if side is None:
        return sorted({*bases, cls.upper()})
    out = []
    for formats in _SIDE_FORMATS.values():
        for fmt in formats:
            for base in bases:
                out.append(_format_side(fmt, side, base))
    return sorted(set(out))


def _format_side(fmt: str, side: str, base: str) -> str:
    return fmt.format(
        s=side, sc=side.capitalize(), S=side[0].upper(), St=("Lt" if side == "left" else "Rt"),
        SU=side.upper(), base=base.lower(), Base=base.capitalize(), hbase=base.lower().replace(" ", "-"),
        BASEU=base.upper().replace(" ", "_"),
    )


def _spell(site: str, rater: str, rng: np.random.Generator) -> str:
    """One rater's spelling of a site: mostly their own habit, sometimes anything."""
    side, cls = _side_parts(site)
    style = _RATER_STYLE[rater] if rng.random() < 0.75 else _STYLES[int(rng.integers(len(_STYLES)))]
    bases = _BASE_WORDS[cls]
    base = bases[0] if rng.random() < 0.55 else bases[int(rng.integers(len(bases)))]
    if side is None:
        if style == "export" and rng.random() < 0.6:
            return cls.upper()
        return base
    formats = _SIDE_FORMATS[style]
    return _format_side(formats[int(rng.integers(len(formats)))], side, base)


def _neighbour_site(rng: np.random.Generator, site: str, taxonomy, classes_neighbours: dict) -> str:
    """A site of a neighbouring class, on the same side: the usual way raters disagree."""
    side, cls = _side_parts(site)
    options = classes_neighbours.get(cls) or [cls]
    other = options[int(rng.integers(len(options)))]
    if other in taxonomy.site_to_class:
        return other
    s = side or ("left" if rng.random() < 0.5 else "right")
    return f"{s}_{other}"


def _ratings(rng: np.random.Generator, truth_site: str, defect: str | None, taxonomy,
             neighbours: dict, also: str | None = None,
             span_rng: np.random.Generator | None = None) -> list[tuple[str, str, str]]:
    """1-3 raters: (rater, region as written, quality).

    `also`: the adjacent site a spanning photo shows too (a lesion across the border). A rater who gets the
    site right then names both, ';'-joined (P_BOTH), else one of the two. Those choices draw only from
    `span_rng`, so `rng` is drawn exactly as for a one-site photo and the rest of the archive stays the same.
    """
    n = int(rng.choice([1, 2, 3], p=[0.3, 0.42, 0.28]))
    raters = sorted(str(r) for r in rng.choice(RATERS, size=n, replace=False, p=[0.34, 0.3, 0.22, 0.14]))
    out = []
    for r in raters:
        u = rng.random()
        p_code = 0.3 if defect else 0.025
        if u < p_code:
            region = _CODES[int(rng.integers(len(_CODES)))]
        elif u < p_code + (1 - _RATER_ACCURACY[r]):
            region = _spell(_neighbour_site(rng, truth_site, taxonomy, neighbours), r, rng)
        else:
            site = truth_site
            side, cls = _side_parts(site)
            if side and rng.random() < 0.03:  # left/right slip: same class
                site = f"{'left' if side == 'right' else 'right'}_{cls}"
            region = _spell(site, r, rng)
            if also is not None:
                region = _span_region(span_rng, also, site, region, r)
        q = rng.random()
        if defect:
            quality = "poor" if q < 0.55 else ("exclude" if q < 0.7 else "good")
        else:
            quality = "poor" if q < 0.02 else ("exclude" if q < 0.03 else "good")
        out.append((r, region, quality))
    return out


P_BOTH = 0.7  # share of correct ratings of a spanning photo that name both sites


def _span_region(rng: np.random.Generator, also: str, site: str, region: str, rater: str) -> str:
    """What a rater writes for a photo of `site` (already spelled as `region`) that also shows `also`: both,
    each in the rater's own spelling, or one of the two. `also` takes the side of `site`, so a left/right
    slip moves both."""
    side = _side_parts(site)[0]
    other = _side_parts(also)[1]
    other = f"{side}_{other}" if side else other
    u = rng.random()
    if u < P_BOTH:
        return f"{region}; {_spell(other, rater, rng)}"
    return region if u < P_BOTH + (1 - P_BOTH) / 2 else _spell(other, rater, rng)
