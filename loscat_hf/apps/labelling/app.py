"""`loscat-hf label`: the Gradio app where raters grade photos into the annotation CSV that `prepare` reads.

Two screens, as the study's R Shiny tool had: Grade (one photo at a time, the 18 LoSCAT sites with their
sides, the non-site codes, a quality flag, keyboard shortcuts, Back/Skip, progress; a photo showing several
sites: Shift+key or "Several sites" toggles sites, Enter saves them as one answer) and Summary (photos done
per rater, answers per site, agreement so far, per class when answers name several sites, the model's
agreement with the raters, the rater's own answers as a CSV). Every action is also a named API endpoint
(`/next_photo`, `/submit_label`, `/skip_photo`, `/previous_photo`, `/summary`), so gradio_client can drive
it.

Patient data: the app binds 127.0.0.1 unless told otherwise and then requires `--auth`, and labels for its
`--rater` only. The Grade screen and the API show photos only as pixels re-encoded from the decoded image (no
EXIF, file name or patient id; a photo is named by an opaque id); those copies live in gradio's cache, deleted
about 10 minutes later (the Space's policy). The one exception is the rater's own answers CSV on the Summary
screen, which holds what `--out` holds for them. Nothing is uploaded or flagged.
"""

from __future__ import annotations

import json
from dataclasses import astuple
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loscat_hf.apps.cached import cached_csv, cached_jpeg
from loscat_hf.apps.gradio_env import import_gradio, serve, server_port
from loscat_hf.apps.labelling.log import LABEL_COLUMNS, QUALITIES, LabelLog
from loscat_hf.apps.labelling.photos import inside, list_photos
from loscat_hf.apps.labelling.session import (
    LabelSession,
    Shown,
    check_rater,
    format_suggestion,
    model_suggestions,
)
from loscat_hf.errors import LoscatError
from loscat_hf.io.images import ImageProblemError, open_image
from loscat_hf.taxonomy import SET_SEPARATOR, load_taxonomy

if TYPE_CHECKING:  # gradio itself is imported by the functions that need it, through import_gradio
    import gradio as gr

DISPLAY_SIDE = 1600  # shorter side of the photo sent to the browser: large enough to judge, small to send
CACHE_EXPIRY = (60, 600)  # gradio's delete_cache: sweep every minute, delete what is older than 10 minutes
LOOPBACK = ("127.0.0.1", "localhost", "::1")
QUALITY_KEYS = {"good": "j", "poor": "k", "exclude": "l"}
NAV_KEYS = {"back": "b", "skip": "n"}
SET_KEYS = {"confirm": "enter", "clear": "escape"}  # several sites: save the toggled sites / drop them
KEY_ROWS = ("1234567890", "qwertyuiop", "asdfgh", "zxcvm")  # answer keys, one row per button row
# what the page says about a photo that does not decode, by ImageProblemError.kind (never its reason)
PROBLEMS = {"missing_image": "the file is gone", "zero_byte": "the file is empty",
            "not_an_image": "it is not an image", "truncated": "the file is incomplete or damaged",
            "decompression_bomb": "it has too many pixels to decode", "unreadable": "it cannot be decoded"}


def button_rows(choices: list[str], codes: set[str]) -> list[list[tuple[str, str]]]:
    """(answer, key) rows: unsided sites, left sites, right sites, non-site codes; one key each."""
    groups = [[c for c in choices if c not in codes and not c.startswith(("left_", "right_"))],
              [c for c in choices if c.startswith("left_")], [c for c in choices if c.startswith("right_")],
              [c for c in choices if c in codes]]
    rows = []
    for group, keys in zip(groups, KEY_ROWS, strict=True):
        if len(group) > len(keys):
            raise LoscatError(f"the labelling app has keys for {len(keys)} answers per row, not {len(group)}")
        rows.append(list(zip(group, keys, strict=False)))
    return rows


def _title(answer: str) -> str:
    """'left_thigh' -> 'Left thigh'; several sites 'left_thigh;left_leg' -> 'Left thigh + Left leg'."""
    return " + ".join(a.replace("_", " ").capitalize() for a in answer.split(SET_SEPARATOR))


def _keyboard_js(keys: dict[str, str]) -> str:
    """Page script: a key press clicks the button (or quality choice) it names, unless the rater is typing.
    With Shift it also says "several sites" to the site button's click (`SHIFT_JS`), in the same event: a
    site key then toggles the site instead of saving it. A mouse Shift+click does the same."""
    return """() => {
  const keys = __KEYS__;
  window.loscatShift = false;
  document.addEventListener('click', (e) => { if (e.isTrusted) window.loscatShift = e.shiftKey; }, true);
  document.addEventListener('keydown', (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey || e.target.closest('input[type=text], textarea')) return;
    let key = e.key.toLowerCase();
    if (e.shiftKey && !keys[key]) key = e.code.replace(/^(Key|Digit)/, '').toLowerCase();  // Shift+1 is '!'
    const target = keys[key];
    if (!target) return;
    const el = document.querySelector(target);
    if (el) { e.preventDefault(); window.loscatShift = e.shiftKey; el.click(); }
  });
}""".replace("__KEYS__", json.dumps(keys))


# a site button's inputs (photo_id, quality, several), "several" set when Shift was held for the click
SHIFT_JS = ("(pid, q, several) => { const shift = window.loscatShift; window.loscatShift = false; "
            "return [pid, q, several || !!shift]; }")


class LabelApp:
    """The session's methods as gradio callbacks for one rater: LoscatError -> a short gr.Error, photos ->
    clean pixels. An app labels for its `--rater` only (the API's rater is checked against it): whoever
    reaches the page cannot answer, or download answers, in another rater's name."""

    def __init__(self, session: LabelSession, rater: str) -> None:
        self.session, self.rater = session, check_rater(rater)

    def _call(self, method, *args):
        try:
            return method(*args)
        except LoscatError as exc:
            raise import_gradio().Error(str(exc)) from None  # shown to the rater as it is

    def _as(self, rater: str | None) -> str:
        """The rater a request names, which must be this app's."""
        name = self._call(check_rater, rater)
        if name != self.rater:
            raise import_gradio().Error(f"this app labels for {self.rater!r}; every rater starts their own: "
                                        "loscat-hf label ... --rater NAME --port N")
        return name

    def _pixels(self, shown: Shown):
        """The photo re-encoded from its decoded pixels, or a message; never a byte of a file that did not
        decode (a problem's reason can quote a file's first bytes: the page says only its kind)."""
        if shown.photo is None:
            return None, ""
        if not inside(shown.photo):
            return None, "This file was replaced by a link since the app started: skip it."
        try:
            return cached_jpeg(open_image(shown.photo.path, max_side=DISPLAY_SIDE), "loscat-photo-"), ""
        except ImageProblemError as exc:
            why = PROBLEMS.get(exc.kind, "it cannot be decoded as an image")
            return None, f"This file cannot be shown ({why}): answer *not gradable*, or skip it."

    def _api(self, shown: Shown) -> tuple[Any, str, str]:
        """(photo, photo_id, progress): what every API endpoint returns."""
        image, problem = self._pixels(shown)
        progress = shown.progress + (f"\n\n{problem}" if problem else "")
        return image, shown.photo.photo_id if shown.photo else "", progress

    def _ui(self, shown: Shown) -> tuple[Any, ...]:
        """(photo, photo_id, progress, hint, quality reset to good, several sites off, no sites toggled):
        what the Grade screen shows for a photo (the next one, or the same one afresh)."""
        image, photo_id, progress = self._api(shown)
        hint = [shown.feedback] if shown.feedback else []
        if shown.earlier:
            hint.append(f"Your earlier answer for this photo: **{_title(shown.earlier)}** (a new answer "
                        "replaces it).")
        if shown.suggestion:
            hint.append("Model suggests (shown before you answer: `--suggest`): "
                        f"{format_suggestion(shown.suggestion)}")
        return image, photo_id, f"**{progress}**", "\n\n".join(hint), "good", False, ""

    def _ui_toggled(self, toggled: tuple[str, ...]) -> tuple[Any, ...]:
        """The same photo, quality and hint; several sites on, and the sites toggled so far."""
        skip = import_gradio().skip()
        if toggled:
            text = (f"Several sites: **{_title(SET_SEPARATOR.join(toggled))}**. [Enter] saves them as one "
                    "answer, [Esc] drops them; a site's key again removes it.")
        else:
            text = "Several sites: press the keys of the sites the photo shows, then [Enter]."
        return skip, skip, skip, skip, skip, True, text

    # API endpoints
    def next_photo(self, rater: str):
        return self._api(self._call(self.session.next_photo, self._as(rater)))

    def submit_label(self, rater: str, photo_id: str, site: str, quality: str):
        return self._api(self._call(self.session.submit, self._as(rater), photo_id, site, quality))

    def skip_photo(self, rater: str, photo_id: str):
        return self._api(self._call(self.session.skip, self._as(rater), photo_id))

    def previous_photo(self, rater: str):
        return self._api(self._call(self.session.back, self._as(rater)))

    def summary(self):
        return self._call(self.session.summary)

    # the Grade and Summary screens
    def ui_next(self):
        return self._ui(self._call(self.session.next_photo, self.rater))

    def ui_site(self, site: str):
        """A site's (or code's) button: its answer at once; with several sites on (ticked, Shift held, or
        sites already toggled for the photo) it toggles the site instead."""
        def press(photo_id: str, quality: str, several: bool = False):
            if several or self.session.toggled(self.rater):
                return self._ui_toggled(self._call(self.session.toggle, self.rater, photo_id, site).toggled)
            return self._ui(self._call(self.session.submit, self.rater, photo_id, site, quality))
        return press

    def ui_confirm(self, photo_id: str, quality: str):
        return self._ui(self._call(self.session.confirm, self.rater, photo_id, quality))

    def ui_clear(self):
        """Drop the toggled sites: several sites off, nothing saved; the photo stays."""
        self._call(self.session.clear, self.rater)
        skip = import_gradio().skip()
        return skip, skip, skip, skip, skip, False, ""

    def ui_several(self, several: bool):
        """The rater ticked or unticked "Several sites": unticking drops what was toggled."""
        return self._ui_toggled(self.session.toggled(self.rater)) if several else self.ui_clear()

    def ui_skip(self, photo_id: str):
        return self._ui(self._call(self.session.skip, self.rater, photo_id))

    def ui_back(self):
        return self._ui(self._call(self.session.back, self.rater))

    def ui_summary(self):
        s = self._call(self.session.summary)
        report = s["agreement"]

        def fmt(value, pattern: str) -> str:
            return "n/a" if value is None else format(value, pattern)

        text = [f"**{len(s['raters'])} rater(s)**, {s['photos']} photos in the folder."]
        if report["n_photos_multi_rated"]:
            text.append(f"Agreement over {report['n_photos_multi_rated']} photos with two or more raters (12 "
                        f"classes; codes left out): all agree on {fmt(report['percent_agreement'], '.1f')}%, "
                        f"Fleiss' kappa {fmt(report['fleiss_kappa'], '.3f')}.")
            if report["most_confused"]:
                text.append("Most confused: " + ", ".join(
                    f"{c['labels'][0]} / {c['labels'][1]} ({c['count']})" for c in report["most_confused"]))
        else:
            text.append("No photo has two raters' answers yet: agreement shows once raters overlap.")
        if s["several_sites"]:
            text.append(f"{s['several_sites']} answer(s) name several sites: each of their sites counts in "
                        "the answers per site (and each class in the model's table); raters agree on a photo "
                        "when they give the same set, and the table per class says whether they agree it "
                        "shows each class.")
        pairs = [{"raters": f"{p['rater_a']} vs {p['rater_b']}", "photos": p["n_photos"],
                  "agree %": round(p["percent_agreement"], 1), "Cohen's kappa": fmt(p["cohen_kappa"], ".3f")}
                 for p in report["pairs"]]
        per_class = [{"class": c["label"], "photos named": c["n_photos_named"],
                      "all agree %": fmt(c["percent_agreement"], ".1f"),
                      "Fleiss' kappa": fmt(c["fleiss_kappa"], ".3f")}
                     for c in report.get("per_class", []) if c["n_photos_named"]]
        own = self._own_csv()
        return ("\n\n".join(text), _table(s["raters"], ["rater", "photos done", "of"]),
                _table(s["sites"], ["answer", "answers"]),
                _table(pairs, ["raters", "photos", "agree %", "Cohen's kappa"]),
                import_gradio().update(value=_table(per_class, PER_CLASS), visible=bool(per_class)),
                _table(s["model"], ["class", "answers", "model agrees %"]), own)

    def _own_csv(self) -> str:
        """This app's rater's own answers as a CSV in gradio's cache (swept like the photos). It holds what
        `--out` holds for them, patient ids included: the rater's own file, for their records."""
        rows = self._call(self.session.own_answers, self.rater)
        return cached_csv("my_answers.csv", LABEL_COLUMNS, (astuple(a) for a in rows), "loscat-label-")


PER_CLASS = ["class", "photos named", "all agree %", "Fleiss' kappa"]


def _table(rows: list[dict], columns: list[str]) -> dict:
    return {"headers": columns, "data": [[r[c] for c in columns] for r in rows] or [["" for _ in columns]]}


def build_label_app(session: LabelSession, rater: str) -> tuple[gr.Blocks, str]:
    """The Blocks app for `rater` and its keyboard script (gradio 6 takes scripts in launch())."""
    gr = import_gradio()
    app = LabelApp(session, rater)
    codes = set(session.taxonomy.non_site_codes.values())
    rows = button_rows(session.choices, codes)
    keys: dict[str, str] = {}
    private = {"api_visibility": "private"}
    with gr.Blocks(title="LoSCAT labelling", delete_cache=CACHE_EXPIRY) as demo:
        gr.Markdown(f"# LoSCAT labelling\n{len(session.photos)} photos; order: {session.order}. Answers are "
                    "saved at once; close the page any time and come back where you stopped.")
        with gr.Tab("Grade"):
            with gr.Row():
                rater_box = gr.Textbox(value=app.rater, label="Rater", elem_id="rater", scale=1,
                                       interactive=False)
                progress = gr.Markdown(label="progress", elem_id="progress")
            with gr.Row():
                with gr.Column(scale=3):
                    photo = gr.Image(type="filepath", interactive=False, label="Photo", height=620,
                                     elem_id="photo", buttons=["fullscreen"])
                with gr.Column(scale=2):
                    hint = gr.Markdown(elem_id="hint")
                    quality = gr.Radio(list(QUALITIES), value="good",
                                       label="Photo quality  [J] good  [K] poor  [L] exclude (poor and "
                                             "exclude are left out by prepare)", elem_id="quality")
                    buttons = []
                    for row in rows:
                        with gr.Row():
                            for answer, key in row:
                                btn = gr.Button(f"{_title(answer)} [{key.upper()}]", elem_id=f"site-{answer}",
                                                size="sm", min_width=60)
                                buttons.append((answer, btn))
                                keys[key] = f"#site-{answer}"
                    with gr.Row():
                        several = gr.Checkbox(False, label="Several sites [Shift+key]: keys toggle sites",
                                              elem_id="several", scale=2)
                        confirm = gr.Button("Save sites [Enter]", elem_id="confirm", size="sm", min_width=60)
                        clear = gr.Button("Clear [Esc]", elem_id="clear", size="sm", min_width=60)
                    selection = gr.Markdown(elem_id="selection")
                    with gr.Row():
                        back = gr.Button("Back [B]", elem_id="back", size="sm")
                        skip = gr.Button("Skip [N]", elem_id="skip", size="sm")
            photo_id = gr.Textbox(visible=False, label="photo_id", elem_id="photo-id")
            site_in = gr.Textbox(visible=False)  # /submit_label's site (API only)
            outs = [photo, photo_id, progress, hint, quality, several, selection]
            # the screen's events one at a time, in the order pressed: Shift+R then T, typed faster than a
            # round trip, still toggles T (R's toggle is in) rather than saving T alone
            grade = {**private, "concurrency_limit": 1, "concurrency_id": "grade"}
            demo.load(app.ui_next, None, outs, **grade)
            for answer, btn in buttons:
                btn.click(app.ui_site(answer), [photo_id, quality, several], outs, js=SHIFT_JS, **grade)
            confirm.click(app.ui_confirm, [photo_id, quality], outs, **grade)
            clear.click(app.ui_clear, None, outs, **grade)
            several.input(app.ui_several, [several], outs, **grade)
            skip.click(app.ui_skip, [photo_id], outs, **grade)
            back.click(app.ui_back, None, outs, **grade)
            keys.update({NAV_KEYS["back"]: "#back", NAV_KEYS["skip"]: "#skip"})
            keys.update({SET_KEYS["confirm"]: "#confirm", SET_KEYS["clear"]: "#clear"})
            keys.update({k: f'#quality input[value="{q}"]' for q, k in QUALITY_KEYS.items()})
            api = [photo, photo_id, progress]
            gr.Button(visible=False).click(app.next_photo, [rater_box], api, api_name="next_photo")
            gr.Button(visible=False).click(app.submit_label, [rater_box, photo_id, site_in, quality], api,
                                           api_name="submit_label")
            gr.Button(visible=False).click(app.skip_photo, [rater_box, photo_id], api, api_name="skip_photo")
            gr.Button(visible=False).click(app.previous_photo, [rater_box], api, api_name="previous_photo")
        with gr.Tab("Summary") as summary_tab:
            refresh = gr.Button("Refresh", variant="primary", elem_id="refresh")
            overview = gr.Markdown(elem_id="overview")
            with gr.Row():
                per_rater = gr.Dataframe(label="Photos done per rater", interactive=False)
                per_site = gr.Dataframe(label="Answers per site (an answer naming several: under each)",
                                        interactive=False)
            pairs = gr.Dataframe(label="Agreement per rater pair (12 classes, photos both answered)",
                                 interactive=False)
            per_class = gr.Dataframe(label="Agreement per class (answers name several sites): all raters "
                                           "agree whether the photo shows it", interactive=False,
                                     visible=False)
            vs_model = gr.Dataframe(label="Raters vs the model's top-1, per class (an answer naming n "
                                          "classes: each vs the model's top n)", interactive=False,
                                    visible=session.suggestions is not None)
            own = gr.File(label="Your answers (CSV; other raters' answers stay hidden: blind rating)")
            for event in (refresh.click, summary_tab.select):
                event(app.ui_summary, None, [overview, per_rater, per_site, pairs, per_class, vs_model, own],
                      **private)
            summary_json = gr.JSON(visible=False)
            gr.Button(visible=False).click(app.summary, None, summary_json, api_name="summary")
    demo.queue(default_concurrency_limit=4, max_size=64)
    return demo, _keyboard_js(keys)


def parse_auth(auth: str | None) -> tuple[str, str] | None:
    if not auth:
        return None
    user, sep, password = auth.partition(":")
    if not sep or not user or not password:
        raise LoscatError("auth must be 'USER:PASSWORD': give both, separated by ':'", param="auth")
    return user, password


def label_session(images: str, out: str, *, patients: str | None = None, model: str | None = None,
                  order: str | None = None, suggest: bool = False, precision: str = "auto",
                  backend: str = "auto") -> LabelSession:
    """Photos, the label file and (with a model) its suggestions: everything the app needs, checked first."""
    out_path = Path(out)
    log = LabelLog(out_path)
    photos = list_photos(images, patients, exclude=[out_path])
    suggestions = (model_suggestions(model, photos, out_path, precision=precision, backend=backend) if model
                   else None)
    return LabelSession(photos, log, load_taxonomy(), suggestions=suggestions, order=order, suggest=suggest)


def launch_label(images: str, out: str, rater: str, *, patients: str | None = None, model: str | None = None,
                 order: str | None = None, suggest: bool = False, host: str = "127.0.0.1",
                 port: int | None = None, auth: str | None = None, precision: str = "auto",
                 backend: str = "auto", **kwargs: Any) -> gr.Blocks:
    """Check everything, then serve the app (blocks unless prevent_thread_lock=True is passed)."""
    rater = check_rater(rater)
    credentials = parse_auth(auth)
    if host not in LOOPBACK and credentials is None:
        raise LoscatError(f"host {host} serves patient photos to the network: add auth 'USER:PASSWORD'",
                          param=("host", "auth"))
    port = server_port(port, host)  # a bad or busy port: told now, not after the photos and model load
    session = label_session(images, out, patients=patients, model=model, order=order, suggest=suggest,
                            precision=precision, backend=backend)
    demo, js = build_label_app(session, rater)
    serve(demo, port, server_name=host, auth=credentials, show_error=True, js=js,
          theme=import_gradio().themes.Soft(), **kwargs)
    return demo
