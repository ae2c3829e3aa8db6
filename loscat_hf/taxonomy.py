"""The LoSCAT taxonomy: 18 anatomic sites, their merge into side-agnostic classes, and neighbours.

Raters write sites in many ways ("Rt. Forearm", "forearm (left)", "LEFT_THIGH"); everything downstream
works on canonical names, so all spelling tolerance lives here.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cached_property
from importlib import resources
from pathlib import Path

from loscat_hf.errors import LoscatError

SET_SEPARATOR = ";"  # a cell naming several sites: "Left thigh; Left leg"
_SIDE_WORDS = {"l": "left", "lt": "left", "left": "left", "r": "right", "rt": "right", "right": "right"}
_NOISE_WORDS = {"side", "sided", "the", "of"}


class RegionError(LoscatError, ValueError):
    """A region string that is neither a LoSCAT site nor a known non-site code."""


def split_set(cell: str | None) -> list[str]:
    """A ';'-joined cell (several regions or sites, as loscat-hf writes and raters type them) -> its
    non-empty, trimmed parts; an empty or missing cell -> []. The one way such a cell is split."""
    return [part.strip() for part in str(cell or "").split(SET_SEPARATOR) if part.strip()]


@dataclass(frozen=True)
class ParsedRegion:
    """Result of parsing one rater's region string: a site (and its class) or a non-site code."""

    site: str | None = None
    label: str | None = None
    code: str | None = None  # non-site code such as "unclear": the photo is excluded with this reason


def _normalise(text: str) -> str:
    text = re.sub(r"[_\-./(),;:]+", " ", str(text).strip().lower())
    return re.sub(r"\s+", " ", text).strip()


@dataclass(frozen=True)
class Taxonomy:
    """Sites, classes and anatomical neighbours, loaded from a JSON file (see resources/taxonomy.json)."""

    name: str
    classes: tuple[str, ...]
    site_to_class: dict[str, str]
    synonyms: dict[str, str] = field(default_factory=dict)
    neighbours: frozenset[frozenset[str]] = frozenset()
    non_site_codes: dict[str, str] = field(default_factory=dict)

    @property
    def sites(self) -> tuple[str, ...]:
        return tuple(self.site_to_class)

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.classes))

    @property
    def label2id(self) -> dict[str, int]:
        return {c: i for i, c in enumerate(self.classes)}

    def to_class(self, site: str) -> str:
        """Class of a site; an unsided lateral site ('hand') already is its class."""
        return self.site_to_class.get(site, site)

    def are_neighbours(self, a: str, b: str) -> bool:
        return frozenset((a, b)) in self.neighbours

    def parse(self, text: str) -> ParsedRegion:
        """Parse a rater's spelling; raise RegionError listing the valid names if it is unknown."""
        norm = _normalise(text)
        if not norm:
            raise RegionError(f"empty region. {self.valid_names_message()}")
        if norm in self.non_site_codes:
            return ParsedRegion(code=self.non_site_codes[norm])
        words = norm.split()
        sides = {_SIDE_WORDS[w] for w in words if w in _SIDE_WORDS}
        base = " ".join(w for w in words if w not in _SIDE_WORDS and w not in _NOISE_WORDS)
        if len(sides) > 1:
            raise RegionError(f"region {text!r} names both sides. {self.valid_names_message()}")
        base = self.synonyms.get(base, base).replace(" ", "_")
        side = next(iter(sides), None)
        if side and f"{side}_{base}" in self.site_to_class:
            site = f"{side}_{base}"
            return ParsedRegion(site=site, label=self.site_to_class[site])
        if base in self.site_to_class:  # midline site; a stray side word is ignored
            return ParsedRegion(site=base, label=self.site_to_class[base])
        if base in self.classes:  # a lateral site without a side: the class is still known
            return ParsedRegion(site=base, label=base)
        raise RegionError(f"unknown region {text!r}. {self.valid_names_message()}")

    def parse_many(self, text: str) -> tuple[ParsedRegion, ...]:
        """Parse a cell that may name several sites separated by ';' (a lesion spanning thigh and leg).

        Each part is parsed as `parse` does; repeats count once; sites come out in the taxonomy's site order
        (a set, however the rater wrote it; an unsided 'thigh' beside 'left thigh' adds nothing). A cell
        that reads as one site as a whole ('Thigh; left', an export's punctuation) is that one site, as it
        always was. A non-site code stands alone: 'unclear; thigh' is refused."""
        parts = split_set(text)
        if len(parts) <= 1:
            if not parts and str(text).strip():
                raise RegionError(f"region {text!r} names no site between its ';'. "
                                  f"{self.valid_names_message()}")
            return (self.parse(parts[0] if parts else text),)
        try:
            parsed = [self.parse(p) for p in parts]
        except RegionError:
            try:
                return (self.parse(text),)
            except RegionError:
                bad = next(p for p in parts if not self._parses(p))
                raise RegionError(f"region {text!r}: {bad!r} is not a site. {self.valid_names_message()}") \
                    from None
        codes = {p.code for p in parsed if p.code}
        if len(codes) == 1 and all(p.code for p in parsed):
            return (parsed[0],)  # 'unclear; unclear': one code, repeated
        if codes:
            raise RegionError(f"region {text!r} combines a non-site code with other answers; a code stands "
                              f"alone. {self.valid_names_message()}")
        unique = {p.site: p for p in parsed}
        sided = {p.label for p in unique.values() if p.site != p.label}
        unique = {s: p for s, p in unique.items() if p.site != p.label or p.label not in sided}
        return tuple(sorted(unique.values(), key=lambda p: self._order(p.site)))

    def _parses(self, text: str) -> bool:
        try:
            self.parse(text)
            return True
        except RegionError:
            return False

    @cached_property
    def _positions(self) -> tuple[dict[str, int], dict[str, int]]:
        """Class and site positions, built once: `_order` is a sort key, called for every element sorted."""
        return self.label2id, {n: i for i, n in enumerate(self.sites)}

    def _order(self, name: str) -> tuple:
        """Taxonomy order of a class or site name: by class, then site ('left_arm' before 'thigh')."""
        classes, sites = self._positions
        return classes.get(self.to_class(name), len(classes)), sites.get(name, -1), name

    def join(self, names) -> str:
        """A set of classes or sites as one cell: ';'-joined in the taxonomy's order (by class, then site:
        'left_arm' before 'thigh', whichever is a class name and whichever a site)."""
        return SET_SEPARATOR.join(sorted(set(names), key=self._order))

    def valid_names_message(self) -> str:
        return (
            "Valid sites: " + ", ".join(self.sites)
            + " (side as 'left'/'right'/'L'/'R'/'Lt'/'Rt', any case, '_', '-' or spaces); "
            + "non-site codes: " + ", ".join(sorted(set(self.non_site_codes.values()))) + "."
        )

    @classmethod
    def from_dict(cls, data: dict) -> Taxonomy:
        try:
            classes = tuple(data["classes"])
            sites = dict(data["sites"])
        except (KeyError, TypeError) as exc:
            raise LoscatError(f"taxonomy needs 'classes' (list) and 'sites' (site -> class): {exc}") from None
        unknown = sorted({c for c in sites.values() if c not in classes})
        if unknown:
            raise LoscatError(f"taxonomy maps sites to classes it does not list: {unknown}")
        neighbours = frozenset(frozenset(pair) for pair in data.get("neighbours", []))
        return cls(
            name=data.get("name", "custom"),
            classes=classes,
            site_to_class=sites,
            synonyms={_normalise(k): v for k, v in data.get("synonyms", {}).items()},
            neighbours=neighbours,
            non_site_codes={_normalise(k): v for k, v in data.get("non_site_codes", {}).items()},
        )


def load_taxonomy(path: str | Path | None = None) -> Taxonomy:
    """Load the packaged default taxonomy, or a user's JSON file (`--taxonomy`)."""
    if path is None:
        text = resources.files("loscat_hf").joinpath("resources/taxonomy.json").read_text(encoding="utf-8")
    else:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise LoscatError(f"cannot read taxonomy file {path}: {exc.strerror}") from None
    try:
        return Taxonomy.from_dict(json.loads(text))
    except json.JSONDecodeError as exc:
        raise LoscatError(f"taxonomy file {path} is not valid JSON: {exc}") from None
