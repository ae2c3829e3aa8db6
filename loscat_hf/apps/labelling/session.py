"""The state behind `loscat-hf label`: the photo queue, each rater's progress, answers, the summary.

Plain Python (no gradio), so tests and the Gradio app (apps/labelling/app.py) call the same methods. Every
answer is appended to the label file (apps/labelling/log.py) before the next photo is shown. Blind rating:
nothing a rater is shown about a photo comes from another rater; the summary shows counts and agreement,
never a photo's labels. The model's top-3 is shown after the rater answers, or before with `suggest=True`
(a bias risk). A photo showing several sites is one answer naming them all (`toggle` them, then `confirm`;
or `submit` 'left thigh; left leg'): one row whose region is the sites ';'-joined in the taxonomy's order.
"""

from __future__ import annotations

import csv
import logging
import random
import tempfile
import threading
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from loscat_hf.apps.labelling.log import QUALITIES, Answer, LabelLog, latest_answers, now_utc
from loscat_hf.apps.labelling.photos import LabelPhoto
from loscat_hf.data.agreement import agreement_report
from loscat_hf.data.annotations import read_ratings
from loscat_hf.data.consensus import build_consensus
from loscat_hf.defaults import LABEL_ORDERS, REGIONS_COLUMN
from loscat_hf.errors import LoscatError
from loscat_hf.taxonomy import SET_SEPARATOR, RegionError, Taxonomy, split_set

logger = logging.getLogger(__name__)

MAX_RATER_NAME = 64


class Suggestion(list):
    """The model's top-3 for a photo, (class, probability), most probable first. `regions`: the classes it
    shows when they are several (a multi-region model's classes at or above their thresholds, from the
    predictions' `regions` cell where there is one), else ()."""

    regions: tuple[str, ...] = ()


def _suggestion(row: dict[str, str], top: list[tuple[str, float]]) -> Suggestion:
    suggestion = Suggestion(top)
    regions = tuple(split_set(row.get(REGIONS_COLUMN)))
    if len(regions) > 1:
        suggestion.regions = regions
    return suggestion


@dataclass
class Shown:
    """What the Grade screen shows next: a photo (None when all are done) and what to say about it."""

    photo: LabelPhoto | None
    progress: str
    earlier: str = ""  # this rater's own earlier answer (after Back)
    suggestion: Suggestion | None = None  # the model's top-3 for this photo, when shown before answering
    feedback: str = ""  # e.g. the model's top-3 for the photo just answered
    toggled: tuple[str, ...] = ()  # sites toggled for this photo, not saved yet (taxonomy order)


@dataclass
class _Rater:
    skipped: list[str] = field(default_factory=list)  # photo ids skipped in this session, oldest first
    history: list[str] = field(default_factory=list)  # photo ids answered or skipped, for Back
    current: str | None = None
    toggled: list[str] = field(default_factory=list)  # sites toggled for `current`, not saved yet


def check_rater(rater: str | None) -> str:
    """A rater name as written to the file: trimmed, non-empty, one line, at most 64 characters."""
    name = (rater or "").strip()
    if not name:
        raise LoscatError("enter your rater name first")
    if len(name) > MAX_RATER_NAME or any(ord(c) < 32 for c in name):
        raise LoscatError(f"a rater name is one line of at most {MAX_RATER_NAME} characters")
    return name


def _quality(quality: str | None) -> str:
    quality = (quality or "good").strip().lower()
    if quality not in QUALITIES:
        raise LoscatError(f"quality {quality!r}: choose one of {', '.join(QUALITIES)}")
    return quality


def answer_choices(taxonomy: Taxonomy) -> list[str]:
    """What a rater can answer: the 18 sites (sides kept) and the non-site codes (unclear, multiple, ...)."""
    return [*taxonomy.sites, *dict.fromkeys(taxonomy.non_site_codes.values())]


def model_suggestions(model: str, photos: list[LabelPhoto], out: Path, precision: str = "auto",
                      batch_size: int = 16, backend: str = "auto") -> dict[str, Suggestion]:
    """image -> the model's top-3, predicted once with `loscat-hf predict`'s code and kept beside the label
    file (`<out>.model-<weights>.csv`, private like it), so a restart reuses it and a new model gets its
    own."""
    from loscat_hf.infer.folder import predict_folder, read_rows, row_top
    from loscat_hf.model.weights import weights_fingerprint

    tag = ((weights_fingerprint(model) or "").strip()[:12]
           or "".join(c if c.isalnum() else "-" for c in model)[-40:])
    cache = out.with_name(f"{out.stem}.model-{tag}.csv")
    by_path = {str(p.path.resolve()): p.image for p in photos}
    with tempfile.TemporaryDirectory() as tmp:
        listing = Path(tmp) / "photos.csv"
        with open(listing, "w", newline="", encoding="utf-8") as fh:
            csv.writer(fh).writerows([["image"], *([p] for p in by_path)])
        settings = dict(batch_size=batch_size, precision=precision, backend=backend)
        try:
            predict_folder(model, listing, cache, resume=True, **settings)
        except LoscatError as exc:
            if "resume" not in exc.params:
                raise
            # a cache of other photos or another model's, or one written before its run record: a cache
            logger.info("model suggestions predicted afresh: %s", exc)
            predict_folder(model, listing, cache, resume=False, **settings)
    tops = {by_path.get(row["image"]): _suggestion(row, row_top(row)) for row in read_rows(cache)}
    return {image: top for image, top in tops.items() if image and top}


def format_suggestion(top: Suggestion) -> str:
    """'thigh 70% · leg 20% · foot 10%'; a model showing several regions: 'thigh + leg (thigh 92% · ...)'."""
    text = " · ".join(f"{label} {p:.0%}" for label, p in top)
    regions = getattr(top, "regions", ())
    return f"{' + '.join(regions)} ({text})" if len(regions) > 1 else text


def format_region(region: str) -> str:
    """An answer as the screen says it: 'left_thigh;left_leg' -> 'left_thigh + left_leg'."""
    return " + ".join(region.split(SET_SEPARATOR))


class LabelSession:
    """The queue and the answers of one labelling app (any number of raters)."""

    def __init__(self, photos: list[LabelPhoto], log: LabelLog, taxonomy: Taxonomy, *,
                 suggestions: dict[str, Suggestion] | None = None, order: str | None = None,
                 suggest: bool = False, seed: int = 0) -> None:
        if not photos:
            raise LoscatError("no photos to label")
        order = order or ("uncertain" if suggestions is not None else "folder")
        if order not in LABEL_ORDERS:
            raise LoscatError(f"order {order!r}: choose one of {', '.join(LABEL_ORDERS)}", param="order")
        if order == "uncertain" and suggestions is None:
            raise LoscatError("order 'uncertain' needs a model "
                              "(the model decides which photos are uncertain)", param=("order", "model"))
        if suggest and suggestions is None:
            raise LoscatError("suggest needs a model", param=("suggest", "model"))
        self.photos = {p.photo_id: p for p in photos}
        self.log, self.taxonomy, self.order, self.suggest = log, taxonomy, order, suggest
        self.suggestions = suggestions
        self.choices = answer_choices(taxonomy)
        queue = sorted(photos, key=lambda p: p.image)
        if order == "random":
            # one seeded order for every rater: raters overlap early, so agreement shows soon
            random.Random(seed).shuffle(queue)
        elif order == "uncertain":
            # least sure first (top-1 probability); photos the model could not read last
            queue.sort(key=lambda p: suggestions[p.image][0][1] if suggestions.get(p.image) else 2.0)
        self.queue = [p.photo_id for p in queue]
        self._lock = threading.Lock()
        self._raters: dict[str, _Rater] = defaultdict(_Rater)
        images = {p.image for p in photos}
        self._latest = {k: a for k, a in latest_answers(log.read()).items() if a.image in images}

    # ------------------------------------------------------------------------------------------ grading
    def _photo(self, photo_id: str) -> LabelPhoto:
        photo = self.photos.get((photo_id or "").strip())
        if photo is None:
            raise LoscatError(f"unknown photo id {photo_id!r}: ask /next_photo for one")
        return photo

    def _done(self, rater: str) -> int:
        return sum(1 for (_, r) in self._latest if r == rater)

    def _show(self, rater: str, photo: LabelPhoto | None, feedback: str = "", keep: bool = False) -> Shown:
        """What the rater's screen shows next; toggled sites are dropped unless `keep` (only a toggle keeps
        them: an answer, skip, Back or a reloaded page starts the photo afresh)."""
        state = self._raters[rater]
        state.current = photo.photo_id if photo else None
        if not keep:
            state.toggled.clear()
        total, done = len(self.photos), self._done(rater)
        if photo is None:
            return Shown(None, f"All {total} photos done, {rater}. Thank you!", feedback=feedback)
        progress = f"{done} of {total} done"
        if state.skipped:
            progress += f" ({len(state.skipped)} skipped)"
        own = self._latest.get((photo.image, rater))
        top = (self.suggestions or {}).get(photo.image) if self.suggest else None
        return Shown(photo, progress, earlier=own.region if own else "", suggestion=top, feedback=feedback,
                     toggled=tuple(state.toggled))

    def _next(self, rater: str) -> LabelPhoto | None:
        state = self._raters[rater]
        skipped = set(state.skipped)
        for pid in self.queue:
            if (self.photos[pid].image, rater) not in self._latest and pid not in skipped:
                return self.photos[pid]
        while state.skipped:  # only skipped photos are left: offer them again, oldest first
            pid = state.skipped.pop(0)
            if (self.photos[pid].image, rater) not in self._latest:
                return self.photos[pid]
        return None

    def next_photo(self, rater: str | None) -> Shown:
        """The rater's current photo, else the next unanswered one in queue order."""
        rater = check_rater(rater)
        with self._lock:
            state = self._raters[rater]
            if state.current and (self.photos[state.current].image, rater) not in self._latest:
                return self._show(rater, self.photos[state.current])
            return self._show(rater, self._next(rater))

    def submit(self, rater: str | None, photo_id: str, site: str, quality: str = "good") -> Shown:
        """Append the answer (fsynced), then show the rater's next photo."""
        rater, photo = check_rater(rater), self._photo(photo_id)
        region, quality = self._region(site), _quality(quality)
        with self._lock:
            self._check_current(rater, photo)
            return self._record(rater, photo, region, quality)

    def toggle(self, rater: str | None, photo_id: str, site: str) -> Shown:
        """Add a site to the answer being put together for the photo on the screen, or remove it when it is
        there already; nothing is saved until `confirm`. A non-site code cannot be one of them."""
        rater, photo = check_rater(rater), self._photo(photo_id)
        region = self._region(site)
        if SET_SEPARATOR in region:
            raise LoscatError(f"toggle one site at a time, not {site!r}")
        if region not in self.taxonomy.sites:
            raise LoscatError(f"{region!r} is not a site: a code cannot be combined with sites; clear the "
                              "sites (Esc) and answer it alone")
        with self._lock:
            self._check_current(rater, photo)
            toggled = self._raters[rater].toggled
            if region in toggled:
                toggled.remove(region)
            else:
                toggled.append(region)
            toggled.sort(key=self.taxonomy.sites.index)
            return self._show(rater, photo, keep=True)

    def confirm(self, rater: str | None, photo_id: str, quality: str = "good") -> Shown:
        """Save the sites toggled for the photo as one answer (one row, ';'-joined), then show the next."""
        rater, photo, quality = check_rater(rater), self._photo(photo_id), _quality(quality)
        with self._lock:
            self._check_current(rater, photo)
            toggled = self._raters[rater].toggled
            if not toggled:
                raise LoscatError("no site toggled for this photo: toggle the sites it shows, then confirm "
                                  "(a single site is one key press); nothing was saved")
            return self._record(rater, photo, self.taxonomy.join(toggled), quality)

    def toggled(self, rater: str | None) -> tuple[str, ...]:
        """The sites toggled for the photo on the rater's screen, not saved yet."""
        rater = check_rater(rater)
        with self._lock:
            return tuple(self._raters[rater].toggled)

    def clear(self, rater: str | None) -> Shown:
        """Drop the sites toggled for the photo on the screen (nothing was saved)."""
        rater = check_rater(rater)
        with self._lock:
            current = self._raters[rater].current
            return self._show(rater, self.photos[current] if current else self._next(rater))

    def _record(self, rater: str, photo: LabelPhoto, region: str, quality: str) -> Shown:
        """Append the answer (fsynced) and show the rater's next photo; the caller holds the lock."""
        answer = Answer(photo.image, photo.patient_id, photo.visit, region, rater, quality, now_utc())
        self.log.append(answer)
        self._latest[answer.key()] = answer
        state = self._raters[rater]
        state.history.append(photo.photo_id)
        if photo.photo_id in state.skipped:
            state.skipped.remove(photo.photo_id)
        return self._show(rater, self._next(rater), feedback=self._feedback(photo, region))

    def skip(self, rater: str | None, photo_id: str) -> Shown:
        """Leave the photo for later (it comes back once every other photo is answered)."""
        rater, photo = check_rater(rater), self._photo(photo_id)
        with self._lock:
            self._check_current(rater, photo)
            state = self._raters[rater]
            if (photo.image, rater) not in self._latest and photo.photo_id not in state.skipped:
                state.skipped.append(photo.photo_id)
            state.history.append(photo.photo_id)
            return self._show(rater, self._next(rater))

    def back(self, rater: str | None) -> Shown:
        """The photo this rater answered or skipped before the current one (to change an answer)."""
        rater = check_rater(rater)
        with self._lock:
            state = self._raters[rater]
            # a skipped photo that came round again
            while state.history and state.history[-1] == state.current:
                state.history.pop()
            if not state.history:
                return self._show(rater, self.photos[state.current] if state.current else self._next(rater))
            return self._show(rater, self.photos[state.history.pop()])

    def _check_current(self, rater: str, photo: LabelPhoto) -> None:
        """Answers and skips are for the photo on the rater's screen: a second key press that arrives after
        the first moved on (or a stale API call) must not silently replace an answer."""
        current = self._raters[rater].current
        if current != photo.photo_id:
            raise LoscatError("that photo is no longer the one being graded (answered or skipped already; "
                              + ("nothing was saved): press Back to change an answer" if current else
                                 "nothing was saved): ask for the next photo first"))

    def _region(self, site: str) -> str:
        """A site (side kept), several sites ';'-joined in the taxonomy's order, or a non-site code (alone),
        in the taxonomy's canonical spelling."""
        try:
            parsed = self.taxonomy.parse_many(site or "")
        except RegionError as exc:
            raise LoscatError(str(exc)) from None
        if parsed[0].code:
            return parsed[0].code
        unsided = [p.site for p in parsed if p.site not in self.taxonomy.sites]  # 'arm' without a side
        if unsided:
            named = site if len(parsed) == 1 else unsided[0]
            raise LoscatError(f"{named!r} needs a side: choose one of {', '.join(self.choices)}")
        return self.taxonomy.join(p.site for p in parsed)

    def _feedback(self, photo: LabelPhoto, region: str) -> str:
        top = (self.suggestions or {}).get(photo.image)
        if not top or self.suggest:
            return ""
        return f"Model, for the photo you just graded ({format_region(region)}): {format_suggestion(top)}"

    # ------------------------------------------------------------------------------------------ summary
    def summary(self) -> dict[str, Any]:
        """Counts and agreement over every rater's latest answers in the file (other apps' answers too).

        Counts include every answer; an answer naming several sites counts under each of them (per site, and
        per class in the model's table), and `several_sites` says how many answers do. Agreement is what
        `prepare` would report for the file (its reader and consensus: poor/exclude answers and
        contradictions left out, codes not counted; a set of sites is one answer, and `per_class` says per
        class whether the raters agree the photo shows it)."""
        images = {p.image for p in self.photos.values()}
        latest = [a for a in latest_answers(self.log.read()).values() if a.image in images]
        per_rater = Counter(a.rater for a in latest)
        per_site = Counter(site for a in latest for site in a.region.split(SET_SEPARATOR))
        report = agreement_report(pd.DataFrame(columns=["image", "rater", "label"]), self.taxonomy.classes)
        ratings = pd.DataFrame(columns=["image", "rater", "site", "label"])
        if latest:
            consensus = build_consensus(read_ratings(self.log.path, self.taxonomy), self.taxonomy)
            report, ratings = consensus.agreement, consensus.ratings
        model_rows = []
        if self.suggestions is not None:
            agree: dict[str, list[bool]] = defaultdict(list)
            for image, label in zip(ratings["image"], ratings["label"], strict=True):
                top = self.suggestions.get(image) or []
                named = [c for c in label.split(SET_SEPARATOR) if c in self.taxonomy.classes] if top else []
                # each of a rater's n classes: is it among the model's n most probable? (one class: top-1)
                shown = {c for c, _ in top[:len(named)]}
                for c in named:
                    agree[c].append(c in shown)
            model_rows = [{"class": c, "answers": len(agree[c]),
                           "model agrees %": round(100 * sum(agree[c]) / len(agree[c]), 1)}
                          for c in self.taxonomy.classes if agree[c]]
        return {
            "photos": len(self.photos),
            "raters": [{"rater": r, "photos done": n, "of": len(self.photos)}
                       for r, n in sorted(per_rater.items())],
            "sites": [{"answer": s, "answers": per_site[s]} for s in self.choices if per_site[s]],
            "several_sites": sum(SET_SEPARATOR in a.region for a in latest),
            "agreement": report,
            "model": model_rows,
        }

    def own_answers(self, rater: str | None) -> list[Answer]:
        """This rater's answers (latest per photo), for their download: no other rater's labels."""
        rater = check_rater(rater)
        return sorted((a for (_, r), a in latest_answers(self.log.read()).items() if r == rater),
                      key=lambda a: a.image)
