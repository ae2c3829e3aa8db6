"""The simulated cohort: children with morphea, their visits and LoSCAT severities, and what each photo shows.

Everything here draws from the plan's RNG in a fixed order (any change alters every later photo); rendering
only reads the resulting specs.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from pathlib import Path

import numpy as np

from loscat_hf.data.score_tables import COMPONENTS
from loscat_hf.demo.phantom.anatomy import _side_parts
from loscat_hf.demo.phantom.lesions import _lesion_geometry

SEVERITY_COLUMNS = tuple(COMPONENTS)  # the LoSCAT score components, in the score table's order
SKIN_TONES = ("I", "II", "III", "IV", "V", "VI")

# Share of photos per class, like a paediatric morphea archive: limbs and trunk common, neck and foot rare.
_CLASS_WEIGHTS = {
    "head": 0.08, "neck": 0.03, "chest": 0.09, "abdomen": 0.10, "upper_back": 0.09, "lower_back": 0.07,
    "arm": 0.11, "forearm": 0.10, "hand": 0.05, "thigh": 0.12, "leg": 0.12, "foot": 0.04,
}
# How patients, rooms and cameras look; drawn per patient or per photo.
_FITZPATRICK_RGB = {
    "I": (246, 222, 205), "II": (236, 196, 166), "III": (214, 168, 128),
    "IV": (180, 128, 88), "V": (128, 85, 58), "VI": (82, 55, 40),
}
_TONE_P = (0.10, 0.24, 0.24, 0.20, 0.13, 0.09)
_HAIR = {"black": (28, 24, 22), "dark brown": (55, 38, 28), "brown": (92, 62, 40),
         "light brown": (138, 100, 62), "blonde": (200, 164, 104), "red": (148, 70, 36)}
_EYES = ((70, 45, 30), (45, 30, 22), (70, 110, 150), (80, 110, 70), (110, 85, 50))
_CLOTH = ((235, 235, 238), (40, 50, 90), (120, 120, 125), (220, 150, 170), (140, 180, 215),
          (30, 30, 32), (190, 60, 60), (90, 150, 110))
_WALLS = ((232, 230, 222), (214, 226, 214), (206, 216, 230), (233, 222, 200), (205, 205, 205),
          (240, 240, 240))
_DRAPES = ((70, 118, 168), (78, 140, 120), (236, 236, 236), (222, 222, 210), (120, 160, 200))
_FLOORS = ((150, 150, 146), (182, 166, 140), (128, 140, 150), (196, 190, 180))
_CAMERAS = (("Apple", "iPhone 13", True), ("Apple", "iPhone SE (2nd generation)", True),
            ("samsung", "SM-G991B", True), ("Canon", "Canon EOS 250D", False),
            ("NIKON CORPORATION", "NIKON D5600", False), ("FUJIFILM", "X-T30", False))
_FIRST = ("Jane", "John", "Amelia", "Noah", "Olivia", "Liam", "Emma", "Lucas", "Mia", "Ethan", "Sofia", "Leo",
          "Aisha", "Omar", "Chloe", "Mateo", "Priya", "Kenji", "Zara", "Felix", "Nora", "Hugo", "Ines",
          "Tariq")
_LAST = ("Doe", "Roe", "Smith", "Jones", "Garcia", "Nguyen", "Okafor", "Muller", "Rossi", "Kowalski",
         "Haddad", "Tanaka", "Silva", "Dubois", "Novak", "Larsen", "Costa", "Patel", "Kim", "Moreau")


def _severity_trajectory(rng: np.random.Generator, n_visits: int) -> list[tuple[int, ...]]:
    """Activity (erythema, thickness, new extension) fades with treatment; damage only stays or grows."""
    active = rng.random() < 0.7
    ch = rng.choice
    e = int(ch(4, p=[0.08, 0.32, 0.36, 0.24])) if active else int(ch(2, p=[0.7, 0.3]))
    t = int(ch(4, p=[0.08, 0.3, 0.38, 0.24])) if active else int(ch(3, p=[0.5, 0.35, 0.15]))
    ne = 3 if active and rng.random() < 0.35 else 0
    da = int(ch(4, p=[0.35, 0.33, 0.22, 0.1]))
    sa = int(ch(4, p=[0.45, 0.3, 0.17, 0.08]))
    dp = int(ch(4, p=[0.15, 0.33, 0.3, 0.22]))
    if not any((e, t, ne, da, sa, dp)):
        dp = 1
    rows = [(e, t, ne, da, sa, dp)]
    for _ in range(1, n_visits):
        if rng.random() < 0.12:  # flare
            e, t, ne = min(3, e + 1), min(3, t + 1), 3
        else:
            e, t = max(0, e - int(rng.integers(0, 3))), max(0, t - int(rng.integers(0, 2)))
            ne = 3 if rng.random() < 0.08 else 0
        da = min(3, da + int(rng.random() < 0.25))
        sa = min(3, sa + int(rng.random() < 0.15))
        dp = min(3, dp + int(rng.random() < 0.25))
        rows.append((e, t, ne, da, sa, dp))
    return rows



def _make_patient(rng: np.random.Generator, index: int, pid: str, seed: int, sites: tuple[str, ...],
                  site_p: np.ndarray) -> dict:
    """One child: age, skin tone, body shape and hair, visits with dates, affected sites with lesions and
    severities per visit, and a fake identity (name, MRN) for the identifying file names and EXIF."""
    age = float(rng.uniform(2, 17.5))
    tone = SKIN_TONES[int(rng.choice(6, p=_TONE_P))]
    skin = np.array(_FITZPATRICK_RGB[tone], float) * rng.uniform(0.95, 1.04, 3)
    dark = SKIN_TONES.index(tone) >= 3
    hair_names = list(_HAIR)
    hp = [0.5, 0.35, 0.1, 0.03, 0.01, 0.01] if dark else [0.1, 0.22, 0.25, 0.2, 0.15, 0.08]
    hair = _HAIR[hair_names[int(rng.choice(6, p=hp))]]
    T = 4.6 + 0.15 * age + rng.normal(0, 0.12)
    body = dict(
        T=float(T), wf=float(rng.uniform(0.88, 1.15)),
        lf=float(rng.uniform(0.92, 1.1) + 0.03 * max(0, 6 - age)),
        waist=float(rng.uniform(0.92, 1.08)), hips=float(rng.uniform(0.92, 1.1) + (0.06 if age > 12 else 0)),
        arm_angle={True: float(rng.uniform(0.16, 0.34)), False: float(rng.uniform(0.16, 0.34))},
        elbow_bend=float(rng.uniform(-0.1, 0.06)), stance=float(rng.uniform(0.95, 1.35)),
        present_angle=float(rng.uniform(0.6, 1.15)), present_bend=float(rng.uniform(-0.15, 0.25)),
        head_w=float(rng.uniform(0.94, 1.06)), jaw=float(rng.uniform(0.18, 0.32)),
        hair_rgb=tuple(int(v) for v in np.array(hair) * rng.uniform(0.9, 1.1)),
        hair_style=str(rng.choice(["short", "long", "crop"], p=[0.45, 0.4, 0.15])),
        hairline=float(rng.uniform(0.18, 0.3)), hair_phase=float(rng.uniform(0, 6.3)),
        eye_rgb=_EYES[int(rng.integers(2 if dark else len(_EYES)))],
        cloth_rgb=_CLOTH[int(rng.integers(len(_CLOTH)))],
    )
    if body["hair_style"] == "crop":
        body["hairline"] = float(rng.uniform(0.12, 0.18))
    n_visits = int(rng.choice([1, 2, 3], p=[0.4, 0.35, 0.25]))
    start = dt.date(2020, 1, 6) + dt.timedelta(days=int(rng.integers(0, 5 * 365)))
    dates = [start]
    for _ in range(1, n_visits):
        dates.append(dates[-1] + dt.timedelta(days=int(rng.integers(80, 220))))
    n_sites = int(rng.choice([1, 2, 3], p=[0.55, 0.3, 0.15]))
    affected = list(dict.fromkeys(str(s) for s in rng.choice(sites, size=n_sites, p=site_p)))
    lesions, sev = {}, {}
    for site in affected:
        cls = _side_parts(site)[1]
        si = sites.index(site)
        lesions[site] = _lesion_geometry(rng, cls, lesion_seed=seed * 1_000_003 + index * 101 + si)
        for v, row in enumerate(_severity_trajectory(rng, n_visits)):
            sev[(f"V{v + 1}", site)] = row
    return dict(
        pid=pid, index=index, age=round(age, 1), skin_tone=tone,
        skin_rgb=tuple(int(v) for v in np.clip(skin, 0, 255)),
        body=body, visits=[f"V{i + 1}" for i in range(n_visits)], dates=dates, lesions=lesions, severity=sev,
        first=_FIRST[int(rng.integers(len(_FIRST)))], last=_LAST[int(rng.integers(len(_LAST)))],
        mrn=int(rng.integers(10000, 99999)), affected=affected,
    )


def _site_probabilities(sites: tuple[str, ...], site_to_class: dict[str, str]) -> np.ndarray:
    """Per-site probabilities from _CLASS_WEIGHTS, shared equally by the sides of a class."""
    per_class = Counter(site_to_class[s] for s in sites)
    p = np.array([_CLASS_WEIGHTS[site_to_class[s]] / per_class[site_to_class[s]] for s in sites])
    return p / p.sum()


def _photo_spec(rng: np.random.Generator, seed: int, index: int, patient: dict, visit: str, site: str,
                image_size: tuple[int, int], path: Path, number: int) -> dict:
    """Everything render_photo and the JPEG writer need for one photo: view, framing side, lesion and
    severity, room, light, camera defects, EXIF orientation and identifying EXIF."""
    cls = _side_parts(site)[1]
    side = _side_parts(site)[0]
    if cls in ("chest", "abdomen", "head", "neck"):
        view = "front"
    elif cls in ("upper_back", "lower_back"):
        view = "back"
    else:
        view = "front" if rng.random() < (0.9 if cls == "foot" else 0.7) else "back"
    # front view: the patient's right is on the viewer's left (x<0); from behind, the other way round
    x_sign = (-1 if side == "right" else 1) * (1 if view == "front" else -1)
    if side is None:
        x_sign = 1
    body = patient["body"]
    if cls in ("arm", "forearm", "hand"):  # the patient holds the arm out for the photo
        body = {**body, "arm_angle": {**body["arm_angle"], x_sign > 0: body["present_angle"]},
                "elbow_bend": body["present_bend"]}
    orientation = int(rng.choice([6, 8, 3, 1], p=[0.5, 0.25, 0.1, 0.15])) if rng.random() < 0.2 else 0
    W, H = image_size
    upright = (H, W) if orientation in (6, 8) else (W, H)
    make, model, phone = _CAMERAS[int(rng.integers(len(_CAMERAS)))]
    vdate = patient["dates"][patient["visits"].index(visit)]
    stamp = dt.datetime.combine(vdate, dt.time(int(rng.integers(8, 17)), int(rng.integers(60)),
                                               int(rng.integers(60))))
    gps = (round(float(rng.uniform(35, 60)), 5), round(float(rng.uniform(-10, 25)), 5)) if phone else None
    u = rng.random()
    defect = "blur" if u < 0.03 else ("dark" if u < 0.05 else None)  # what raters then mark poor
    sev = patient["severity"].get((visit, site), (0, 0, 0, 0, 0, 0))
    lesion = patient["lesions"].get(site) if any(sev) else None
    return dict(
        seed=seed, index=index, path=str(path), upright_size=upright, orientation=orientation,
        patient={"pid": patient["pid"], "body": body, "skin_rgb": patient["skin_rgb"]}, view=view, site=site,
        **{"class": cls},
        x_sign=x_sign, lesion=lesion, severity=sev, wall_rgb=_WALLS[int(rng.integers(len(_WALLS)))],
        drape_rgb=_DRAPES[int(rng.integers(len(_DRAPES)))] if rng.random() < 0.5 else None,
        floor_rgb=_FLOORS[int(rng.integers(len(_FLOORS)))], ruler=bool(rng.random() < 0.15),
        light_angle=float(rng.uniform(-2.6, -0.5)), light_grad=float(rng.uniform(0.0, 0.22)),
        vignette=float(rng.uniform(0, 0.3)),
        exposure=float(rng.uniform(0.88, 1.1)) * (0.45 if defect == "dark" else 1),
        white_balance=tuple(float(v) for v in rng.uniform(0.94, 1.06, 3)),
        noise=float(rng.uniform(0.006, 0.02)),
        defect=defect,
        exif=dict(make=make, model=model, datetime=stamp.strftime("%Y:%m:%d %H:%M:%S"), gps=gps,
                  description=f"SYNTHETIC phantom - {patient['last']}, {patient['first']} "
                              f"MRN{patient['mrn']} {visit} {site.replace('_', ' ')} IMG_{number:04d}"),
    )


def _file_name(patient: dict, visit: str, number: int) -> str:
    """Identifying on purpose (name, MRN, date), as clinic exports are: prepare must strip it."""
    date = patient["dates"][patient["visits"].index(visit)].isoformat()
    return f"{patient['last']}_{patient['first']}_MRN{patient['mrn']}_{date}_IMG_{number:04d}.jpg"

