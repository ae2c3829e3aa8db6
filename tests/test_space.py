"""The Space app end to end: a real server on 127.0.0.1, called through gradio_client and a real browser."""

import ast
import csv
import importlib.metadata
import json
import os
import re
import shutil
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import save_tiny_model
from PIL import Image

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from loscat_hf.apps.space import launch
    from loscat_hf.taxonomy import load_taxonomy

    d = save_tiny_model(tmp_path_factory.mktemp("tiny"))
    port = _free_port()
    demo = launch(str(d), host="127.0.0.1", port=port, precision="fp32", prevent_thread_lock=True, quiet=True)
    yield f"http://127.0.0.1:{port}/", load_taxonomy().classes, str(d)
    demo.close()


@pytest.fixture()
def photo(tmp_path):
    path = tmp_path / "photo.jpg"
    rng = np.random.RandomState(1)
    Image.fromarray(rng.randint(0, 255, (240, 320, 3), dtype=np.uint8)).save(path)
    return path


def test_single_photo(server, photo):
    from gradio_client import Client, handle_file

    url, classes, _ = server
    label, body, overlay, notice = Client(url, verbose=False).predict(
        handle_file(str(photo)), True, api_name="/predict")
    from loscat_hf.infer.predictor import RegionPredictor

    assert label["label"] in classes
    # the page shows what the model predicts: the same top 3 as the predictor called directly (gradio sorts
    # the confidences itself, so checking their order would test gradio, not us)
    direct = RegionPredictor.from_pretrained(server[2], precision="fp32").predict(str(photo))
    shown = {c["label"]: c["confidence"] for c in label["confidences"]}
    assert shown == pytest.approx(dict(direct.top), abs=1e-4)
    assert label["label"] == direct.label
    assert overlay and Image.open(overlay).size[0] > 0
    assert body and Image.open(body).size == (480, 480)
    assert not Image.open(overlay).getexif()
    # the notice says "needs review" exactly when the predictor flags the photo, else names the region
    if direct.needs_review:
        assert "Needs review" in notice
    else:
        assert "Needs review" not in notice and direct.label in notice


def test_probabilities_sum_to_one(server, photo):
    from loscat_hf.apps.space import SpaceModel

    app = SpaceModel(server[2], precision="fp32")
    copy = photo.parent / "copy.jpg"
    shutil.copy(photo, copy)
    top, _, shown, _ = app.predict(str(copy), False)
    assert shown is None and copy.exists()  # a request never deletes its upload: other requests may share it
    full = app.predictor.predict(str(photo))
    assert sum(full.probabilities.values()) == pytest.approx(1.0, abs=1e-4)
    assert dict(full.top) == pytest.approx(top, abs=1e-5)


def test_batch_table_and_csv(server, photo, tmp_path):
    from gradio_client import Client, handle_file

    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"this is not a photo")
    table, csv_path = Client(server[0], verbose=False).predict(
        [handle_file(str(photo)), handle_file(str(bad))], api_name="/predict_batch")
    rows = table["data"]
    assert len(rows) == 2 and rows[0][1] in server[1] and rows[1][1] == "" and rows[1][6]
    with open(csv_path, newline="") as fh:
        got = list(csv.DictReader(fh))
    assert [r["region"] for r in got] == [rows[0][1], ""]


def test_bad_upload_gives_clear_error(server, tmp_path):
    from gradio_client import Client, handle_file

    bad = tmp_path / "notes.jpg"
    bad.write_text("hello, not an image")
    with pytest.raises(Exception) as info:
        Client(server[0], verbose=False).predict(handle_file(str(bad)), False, api_name="/predict")
    msg = str(info.value)
    assert "cannot be used as a photo" in msg and "Traceback" not in msg


def test_requirements_cover_imports():
    """space/requirements.txt names every third-party distribution the app and the bundled package import."""
    files = [ROOT / "space" / "app.py", *sorted((ROOT / "loscat_hf").rglob("*.py"))]
    modules = set()
    for f in files:
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.Import):
                modules |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.add(node.module.split(".")[0])
    third = {m for m in modules if m not in sys.stdlib_module_names and m not in {"loscat_hf", "__future__"}}
    third -= {"playwright", "gradio_client", "pytest"}  # tests/dev only, never imported by the package
    dists = importlib.metadata.packages_distributions()
    req = {re.split(r"[<>=!~\[ ]", line.strip())[0].lower().replace("_", "-")
           for line in (ROOT / "space" / "requirements.txt").read_text().splitlines()
           if line.strip() and not line.startswith(("#", "-"))}
    missing = {}
    for m in sorted(third):
        names = {d.lower().replace("_", "-") for d in dists.get(m, [m])}
        if not names & req:
            missing[m] = names
    assert not missing, f"space/requirements.txt lacks {missing}"


def test_examples_are_small_and_synthetic():
    ex = sorted((ROOT / "space" / "examples").glob("*.jpg"))
    assert ex and all("SYNTHETIC" in p.name and p.stat().st_size < 100_000 for p in ex)
    assert all(not Image.open(p).getexif() for p in ex)


def test_space_readme_header():
    head = (ROOT / "space" / "README.md").read_text().split("---")[1]
    for key in ("sdk: gradio", "sdk_version:", "app_file: app.py", "python_version:", "title:",
                "short_description:", "license:"):
        assert key in head


def _pins() -> dict[str, str]:
    """space/requirements.txt as {distribution: pinned version}, every line an exact pin (else
    LoscatError)."""
    from loscat_hf.hub.space import space_pins

    return space_pins()


def _update_pins():
    """scripts/update_pins.py as a module: its `plan` is the one implementation of the pinned closure."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("update_pins", ROOT / "scripts" / "update_pins.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_space_pins_are_the_tested_versions():
    """The Space installs exactly what these tests ran on: every pin is the installed version
    (scripts/setup.sh installs through them as constraints), every installed runtime dependency of a pin is
    pinned too (nothing floats), and the Space's gradio (sdk_version) is the pinned one."""
    from packaging.specifiers import SpecifierSet

    pins = _pins()
    assert {"torch", "transformers", "gradio", "onnxruntime", "tokenizers", "fastapi"} <= set(pins)
    _, changes = _update_pins().plan((ROOT / "space" / "requirements.txt").read_text())
    unpinned = {name: new for name, (old, new) in changes.items() if old is None}
    unneeded = sorted(name for name, (old, new) in changes.items() if new is None)
    assert not unpinned and not unneeded, (
        f"space/requirements.txt does not pin the installed dependencies {unpinned} of its pins, or pins "
        f"{unneeded} that nothing needs any more: run `python scripts/update_pins.py` (docs/development.md, "
        "'Pinned versions'). A CUDA torch (not the pinned CPU wheel) brings nvidia-* packages the Space "
        "never installs")
    # matched as pip matches `==`: torch==2.13.0 is the installed CPU build 2.13.0+cpu
    differ = {name: f"pinned {pin}, installed {importlib.metadata.version(name)}"
              for name, pin in pins.items()
              if not SpecifierSet(f"=={pin}").contains(importlib.metadata.version(name), prereleases=True)}
    assert not differ, (f"installed versions differ from space/requirements.txt: {differ}. Install the pins "
                        "(a fresh venv, `bash scripts/setup.sh test`) or update them (docs/development.md, "
                        "'Pinned versions')")
    head = (ROOT / "space" / "README.md").read_text().split("---")[1]
    sdk = re.search(r"^sdk_version:\s*[\"']?([^\"'\s]+)", head, re.M)
    assert sdk and sdk.group(1) == pins["gradio"], \
        f"space/README.md's sdk_version {sdk and sdk.group(1)} is not the pinned gradio {pins['gradio']}"
    python = re.search(r"^python_version:\s*[\"']?([^\"'\s]+)", head, re.M)
    tested = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert python and python.group(1) == tested, \
        f"space/README.md's python_version {python and python.group(1)} is not the tested Python {tested}"


def test_space_folder_is_self_contained(tmp_path):
    from loscat_hf.hub.space import build_space_folder

    out = build_space_folder(tmp_path / "s")
    assert (out / "app.py").is_file() and (out / "requirements.txt").is_file()
    assert (out / "loscat_hf" / "apps" / "space.py").is_file() and (out / "loscat_hf" / "resources").is_dir()
    assert not list(out.rglob("__pycache__"))


@pytest.mark.browser
@pytest.mark.skipif(not Path("/usr/bin/chromium").exists(),
                    reason="chromium not installed (apt-get install chromium)")
def test_browser_upload_and_predict(server, tmp_path):
    playwright = pytest.importorskip("playwright.sync_api",
                                     reason="playwright not installed (pip install playwright)")
    example = sorted((ROOT / "space" / "examples").glob("*.jpg"))[0]
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                    args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1200, "height": 1000})
        page.goto(server[0])
        page.locator("#photo input[type=file]").set_input_files(str(example))
        page.wait_for_timeout(500)
        page.locator("#predict-btn").click()
        top = page.locator("#top-label .output-class")
        top.wait_for(timeout=30_000)
        page.wait_for_function(
            "document.querySelector('#top-label .output-class').innerText.trim().length > 0", timeout=30_000)
        text = top.inner_text().strip()
        page.screenshot(path=str(tmp_path / "space.png"), full_page=True)
        browser.close()
    assert text in server[1]
    if os.environ.get("LOSCAT_SAVE_SCREENSHOT"):
        shutil.copy(tmp_path / "space.png", ROOT / "docs" / "space.png")


@pytest.mark.slow
def test_space_app_file_builds_from_its_folder(server, tmp_path):
    """The uploaded folder works on its own: app.py imports the bundled package, reads LOSCAT_MODEL and
    turns gradio's analytics off."""
    import subprocess

    from loscat_hf.hub.space import build_space_folder

    folder = build_space_folder(tmp_path / "s", model=server[2])
    code = ("import app, sys; from loscat_hf.apps.space import _examples; env = app.os.environ; "
            "print(type(app.demo).__name__, env['LOSCAT_MODEL'], sys.modules['loscat_hf'].__file__, "
            "len(_examples()), env['GRADIO_ANALYTICS_ENABLED'])")
    env = {k: v for k, v in os.environ.items()
           if k not in ("LOSCAT_MODEL", "PYTHONPATH", "GRADIO_ANALYTICS_ENABLED")}
    out = subprocess.run([sys.executable, "-c", code], cwd=folder, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    n_examples = len(sorted((ROOT / "space" / "examples").glob("SYNTHETIC_*.jpg")))
    assert n_examples > 0
    # the pushed Space shows its example photos (they sit in examples/ there, not space/examples/)
    assert out.stdout.split() == ["Blocks", str(folder / "model"), str(folder / "loscat_hf" / "__init__.py"),
                                  str(n_examples), "False"]


def test_importing_the_apps_sets_no_environment():
    """Importing the app modules changes no environment variable and imports no gradio: the functions that
    build the apps import gradio, after `set_gradio_env()` has turned its analytics off."""
    import subprocess

    code = ("import os, sys; before = dict(os.environ); "
            "import loscat_hf.apps.space, loscat_hf.apps.labelling.app; "
            "changed = sorted(set(os.environ.items()) ^ set(before.items())); "
            "assert not changed, changed; assert 'gradio' not in sys.modules, 'gradio imported'; "
            "from loscat_hf.apps.gradio_env import import_gradio; import_gradio(); "
            "print(os.environ['GRADIO_ANALYTICS_ENABLED'])")
    env = {k: v for k, v in os.environ.items() if k != "GRADIO_ANALYTICS_ENABLED"}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["False"]


# --- the upload lifecycle: gradio's cache sweep expires files; requests never delete shared ones ------------

def _upload(url: str, name: str, content: bytes) -> str:
    """POST one file to gradio's /upload (what the browser does before a call); returns the server path."""
    import httpx

    r = httpx.post(f"{url}gradio_api/upload", files=[("files", (name, content))], timeout=30)
    r.raise_for_status()
    return r.json()[0]


def _file(path: str) -> dict:
    return {"path": path, "meta": {"_type": "gradio.FileData"}, "orig_name": Path(path).name}


def _call(url: str, api: str, data: list) -> tuple[str, object]:
    """One event through gradio's REST API: ("complete", outputs) or ("error", message)."""
    import httpx

    r = httpx.post(f"{url}gradio_api/call/{api}", json={"data": data}, timeout=30)
    r.raise_for_status()
    event = None
    with httpx.stream("GET", f"{url}gradio_api/call/{api}/{r.json()['event_id']}", timeout=60) as stream:
        for line in stream.iter_lines():
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line.startswith("data:") and event in ("complete", "error"):
                return event, json.loads(line[5:])
    raise AssertionError("event stream ended without an answer")


def _example_paths(url: str) -> list[str]:
    """Server paths of the example photos (gradio caches them once, all users share them)."""
    import httpx

    config = httpx.get(f"{url}config", timeout=30).json()
    return [sample[0]["path"] for comp in config["components"] if comp.get("type") == "dataset"
            for sample in comp["props"]["samples"]]


def test_identical_uploads_share_one_path_and_all_get_answers(server, photo):
    url = server[0]
    content = photo.read_bytes()
    first, second = _upload(url, "same.jpg", content), _upload(url, "same.jpg", content)
    assert first == second  # gradio stores identical uploads at one path
    results: list = [None] * 4

    def ask(i: int) -> None:
        results[i] = _call(url, "predict", [_file(first), False])

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert [r[0] for r in results] == ["complete"] * 4, results
    assert Path(first).exists()  # left to the cache expiry, not deleted by the first answer


def test_examples_work_every_time(server):
    url = server[0]
    examples = _example_paths(url)
    assert len(examples) == 4
    for _ in range(2):
        event, out = _call(url, "predict", [_file(examples[0]), False])
        assert event == "complete" and out[0]["label"] in server[1]
    assert all(Path(p).exists() for p in examples)
    # a user who uploads an example photo under its own name gets the example's cached path: still kept
    shared = _upload(url, Path(examples[1]).name, Path(examples[1]).read_bytes())
    assert shared == examples[1]
    assert _call(url, "predict", [_file(shared), False])[0] == "complete"
    assert Path(examples[1]).exists()


def test_expired_upload_gives_clear_error(server, photo):
    from loscat_hf.apps.space import SpaceModel

    app = SpaceModel(server[2], precision="fp32")
    import gradio as gr

    with pytest.raises(gr.Error, match="upload it again"):
        app.predict(str(photo.parent / "gone.jpg"), False)


def test_sweep_spares_files_a_running_request_holds(server, tmp_path):
    """gradio's delete_cache sweep (the real function) skips held files and removes them once released."""
    from gradio.route_utils import delete_files_created_by_app

    from loscat_hf.apps.space import IN_FLIGHT, build_demo

    demo = build_demo(server[2], precision="fp32")
    held, free = tmp_path / "held.jpg", tmp_path / "free.jpg"
    for p in (held, free):
        p.write_bytes(b"x")
        demo.upload_file_set.add(str(p))
    with IN_FLIGHT.hold([str(held)]), IN_FLIGHT.hold([str(held)]):  # two requests on one shared file
        delete_files_created_by_app(demo, age=0)
        assert held.exists() and not free.exists()
    with IN_FLIGHT.hold([str(held)]):
        pass
    assert not list(IN_FLIGHT)
    delete_files_created_by_app(demo, age=0)
    assert not held.exists()


@pytest.fixture()
def expiring(tmp_path, monkeypatch):
    """A server whose cache expires after 2 s; gradio's cache and Python's temp dir both under tmp_path."""
    from loscat_hf.apps.space import launch

    model = save_tiny_model(tmp_path / "model")
    cache, tmp = tmp_path / "cache", tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(cache))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    port = _free_port()
    demo = launch(str(model), host="127.0.0.1", port=port, precision="fp32", cache_expiry=(1, 2),
                  prevent_thread_lock=True, quiet=True)
    yield f"http://127.0.0.1:{port}/", cache, tmp
    demo.close()


def test_uploads_answers_and_batch_csv_expire(expiring, photo, tmp_path):
    url, cache, tmp = expiring
    content = photo.read_bytes()
    _upload(url, "abandoned.jpg", content)  # never used: a refused ("queue is full") or abandoned upload
    bad = _upload(url, "notes.txt", b"not a photo")
    event, _ = _call(url, "predict_batch", [[_file(bad)]])
    assert event == "error"  # refused by gr.File(file_types=["image"]) before our code runs
    event, out = _call(url, "predict", [_file(_upload(url, "one.jpg", content)), True])
    assert event == "complete"
    event, out = _call(url, "predict_batch", [[_file(_upload(url, "a.jpg", content))]])
    assert event == "complete"
    server_csv = Path(out[1]["path"])
    assert server_csv.is_file() and cache in server_csv.parents  # written inside gradio's cache

    examples = set(_example_paths(url))

    def left() -> list[Path]:
        return sorted(p for d in (cache, tmp) for p in d.rglob("*") if p.is_file() and str(p) not in examples)

    deadline = time.monotonic() + 15
    while left() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert left() == []
    assert examples and all(Path(p).exists() for p in examples)  # the examples outlive every expiry


def test_batch_csv_neutralises_formula_file_names(server, photo, tmp_path):
    """Uploaded file names become CSV cells: a name a spreadsheet would run as a formula is neutralised."""
    from loscat_hf.apps.space import SpaceModel

    app = SpaceModel(server[2], precision="fp32")
    names = ["=HYPERLINK(1).jpg", "+SUM(A1).jpg", "-cmd.jpg", "@x.jpg", "plain.jpg"]
    files = []
    for n in names:
        (tmp_path / n).write_bytes(photo.read_bytes())
        files.append(str(tmp_path / n))
    table, csv_path = app.predict_batch(files)
    with open(csv_path, newline="") as fh:
        got = [r["file"] for r in csv.DictReader(fh)]
    assert got == ["'=HYPERLINK(1).jpg", "'+SUM(A1).jpg", "'-cmd.jpg", "'@x.jpg", "plain.jpg"]
    assert [r[0] for r in table["data"]] == names  # the on-screen table shows the names as they are


def test_upload_refused_by_a_full_queue_expires(expiring, photo, monkeypatch):
    import httpx

    from loscat_hf.infer.predictor import RegionPredictor

    url, cache, tmp = expiring
    gate = threading.Event()
    logits = RegionPredictor.logits

    def blocked(self, *args, **kwargs):  # the first request holds the only worker until the gate opens
        gate.wait(30)
        return logits(self, *args, **kwargs)

    monkeypatch.setattr(RegionPredictor, "logits", blocked)
    try:
        queued = _upload(url, "queued.jpg", photo.read_bytes())
        for _ in range(21):  # one running + max_size=20 waiting
            httpx.post(f"{url}gradio_api/call/predict", json={"data": [_file(queued), False]},
                       timeout=30).raise_for_status()
        refused = _upload(url, "refused.jpg", photo.read_bytes() + b"\0")
        r = httpx.post(f"{url}gradio_api/call/predict", json={"data": [_file(refused), False]}, timeout=30)
        assert r.status_code == 503 and "Queue is full" in r.text
    finally:
        gate.set()
    deadline = time.monotonic() + 15
    while Path(refused).exists() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not Path(refused).exists()


def test_upload_components_keep_their_frontend_props(tmp_path):
    """The page needs elem_id, label and file types in the config; an `__init__(*args, **kwargs)` override on
    the upload components once dropped them (gradio reads props from the signature), so uploads broke."""
    from loscat_hf.apps.space import build_demo

    demo = build_demo(str(save_tiny_model(tmp_path / "m")), precision="fp32")
    props = [c.get("props", {}) for c in demo.get_config_file()["components"]]
    photo = next(p for p in props if p.get("elem_id") == "photo")
    assert photo["label"] == "Photo" and "upload" in photo["sources"]
    assert any(p.get("file_types") == ["image"] and p.get("file_count") == "multiple" for p in props)


def _markdown(demo, elem_id: str) -> str:
    import gradio as gr

    return next(b.value for b in demo.blocks.values() if isinstance(b, gr.Markdown) and b.elem_id == elem_id)


@pytest.mark.slow
def test_out_of_the_box_the_space_serves_the_studys_model(tmp_path, monkeypatch, photo):
    """Neither LOSCAT_MODEL nor a bundled model/: the study's published checkpoint (here a random one of its
    exact shape in a local HF cache) is converted once, cached, served and credited on the page."""
    from huggingface_hub import constants
    from timm_reference import hub_cache_with, random_timm_state

    from loscat_hf.apps import space
    from loscat_hf.model import convert
    from loscat_hf.model.study import STUDY_CODE_REPO, STUDY_WEIGHTS_REPO

    # vit_base_patch16_384, 12 classes
    state = random_timm_state(dim=768, depth=12, patch=16, image=384, seed=7)
    home = hub_cache_with(tmp_path, STUDY_WEIGHTS_REPO, {"best_12cls_vit.pt": state})
    del state
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.setattr(constants, "HF_HOME", str(home))
    monkeypatch.delenv("LOSCAT_MODEL", raising=False)
    demo = space.build_demo(precision="int8")
    info = _markdown(demo, "model-info")
    assert "study's published ViT" in info and "best_12cls_vit.pt" in info and "Credit" in info
    assert f"huggingface.co/{STUDY_WEIGHTS_REPO}" in info and f"github.com/{STUDY_CODE_REPO}" in info
    folder = Path(space.default_model())
    assert folder.parent == home / "loscat-hf" / "converted" and (folder / "model.safetensors").is_file()

    def no_second_conversion(*args, **kwargs):
        raise AssertionError("converted again")

    monkeypatch.setattr(convert, "convert_timm", no_second_conversion)
    app = space.SpaceModel(space.default_model(), precision="int8")  # cached: no second conversion
    top, _, _, notice = app.predict(str(photo))
    assert set(top) <= set(app.predictor.labels) and app.predictor.decoding.resample == 3
    assert abs(sum(app.predictor.from_logits(app.predictor.logits(app.predictor.pixels(
        app.predictor.load(str(photo)))[None]))[0].probabilities.values()) - 1) < 1e-5


def test_page_names_the_model_it_serves(tmp_path):
    from transformers import ViTConfig

    from loscat_hf.apps.space import model_description
    from loscat_hf.model.folder import folder_from_config, record_source, record_training

    def folder(**records):
        config = ViTConfig(id2label={0: "head", 1: "neck"})
        if "source" in records:
            record_source(config, records["source"])
        if "run" in records:  # what `train` writes
            record_training(config, run=records["run"], base_model={"kind": "folder"}, max_side=None)
        return folder_from_config(config, name="x", image_size=224, image_mean=[0.5] * 3, image_std=[0.5] * 3)

    study = {"checkpoint": "cyycn20000509/loscat-body-region-classifier/best_12cls_vit.pt", "study": True}
    assert "converted by loscat-hf" in model_description(folder(source=study), "x")
    text = model_description(folder(source=study, run={"task": "region"}), str(tmp_path / "clinic-model"))
    assert "`clinic-model`, fine-tuned by loscat-hf from the LoSCAT study's" in text
    assert str(tmp_path) not in text
    assert model_description(folder(), "org/model") == "**Model**: `org/model`."


def _recorded_folder(*, data=None, source=None, run=None, base=None, temperature=None, how=None):
    """A ModelFolder as `train`, `convert-timm` or `calibrate` would have recorded it."""
    from transformers import ViTConfig

    from loscat_hf.model import folder as model_folder

    config = ViTConfig(id2label={0: "head", 1: "neck"})
    if source:
        model_folder.record_source(config, source)
    if run:
        model_folder.record_training(config, run=run, base_model=base or {"kind": "folder"}, max_side=None)
    if data:
        model_folder.record_data(config, **data)
    if temperature:
        model_folder.record_temperature(config, temperature, **(how or {}))
    return model_folder.folder_from_config(config, name="x", image_size=224, image_mean=[0.5] * 3,
                                           image_std=[0.5] * 3)


def test_page_limits_come_from_the_models_record():
    """The intended-use and limits text says what this model's record says: SYNTHETIC phantoms, converted
    from the study, fine-tuned on N photos of this clinic, or unknown; calibrated (on how many) or not."""
    from loscat_hf.apps.space import intended_use

    how = {"by": "train", "split": "validation", "n": 83, "ece_before": 0.21, "ece_after": 0.04}
    scratch = {"kind": "scratch", "preset": "tiny"}
    phantom = intended_use(_recorded_folder(data={"kind": "synthetic", "photos": 345},
                                            run={"task": "regions"}, base=scratch, temperature=1.7, how=how))
    assert "Trained on SYNTHETIC phantoms (`loscat-hf demo-data`, 345 photos)" in phantom
    assert "Do not use its answers on patients' photos" in phantom
    assert "Research and quality-control" not in phantom
    assert "one clinic" not in phantom and "this clinic" not in phantom
    assert ("Probabilities calibrated on 83 labelled photos of the validation split (expected calibration "
            "error 0.210 before, 0.040 after)") in phantom

    study = {"checkpoint": "cyycn20000509/loscat-body-region-classifier/best_12cls_vit.pt", "study": True}
    converted = intended_use(_recorded_folder(source=study))
    assert "Converted from the LoSCAT study's published model" in converted
    assert "**Not calibrated**" in converted and "`loscat-hf calibrate`" in converted
    assert "one clinic" not in converted and "SYNTHETIC phantoms (" not in converted

    clinic = intended_use(_recorded_folder(source=study, run={"task": "regions"},
                                           data={"kind": "clinical", "photos": 250}, temperature=1.2,
                                           how={**how, "by": "calibrate", "n": 120}))
    assert "Fine-tuned from the LoSCAT study's published model on 250 photos of this clinic" in clinic
    assert "Probabilities calibrated on 120 labelled photos" in clinic and "Not calibrated" not in clinic
    mixed = intended_use(_recorded_folder(run={"task": "regions"}, data={"kind": "mixed", "photos": 40}))
    assert "Fine-tuned on 40 photos of this clinic, some of them SYNTHETIC phantoms" in mixed

    foreign = intended_use(_recorded_folder())
    assert "Of unknown origin" in foreign and "**Not calibrated**" in foreign
    # a temperature without a record of how: calibrated, the count unknown
    assert "on how many photos was not recorded" in intended_use(_recorded_folder(temperature=2.0))
    # the record is not trusted: planted values never reach the public page
    planted = intended_use(_recorded_folder(data={"kind": "Jane Doe MRN123456", "photos": 3}, temperature=2.0,
                                            how={"by": "x", "split": "/home/Jane_Doe", "n": 60}))
    assert "Jane" not in planted and "Of unknown origin" in planted and "on 60 labelled photos." in planted


def test_notice_says_when_probabilities_are_not_calibrated(tmp_path, photo):
    from loscat_hf.apps.space import SpaceModel

    raw = SpaceModel(str(save_tiny_model(tmp_path / "raw")), precision="fp32", backend="torch")
    assert "not calibrated" in raw.predict(str(photo))[3]
    calibrated = SpaceModel(str(save_tiny_model(tmp_path / "t", loscat_temperature=1.5)), precision="fp32",
                            backend="torch")
    assert "not calibrated" not in calibrated.predict(str(photo))[3]


def test_private_hub_model_names_the_space_secret(tmp_path, monkeypatch):
    """A Hub model the Space cannot read stops it with the way to grant access: the secret HF_TOKEN, which
    huggingface_hub reads from the Space's environment."""
    import huggingface_hub

    from loscat_hf.apps.space import SpaceModel
    from loscat_hf.errors import LoscatError

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    with pytest.raises(LoscatError, match="add a secret HF_TOKEN"):
        SpaceModel("org/private-model", precision="fp32")
    # a token is set: the hint would mislead
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: "hf_x")
    with pytest.raises(LoscatError) as info:
        SpaceModel("org/private-model", precision="fp32")
    assert "HF_TOKEN" not in str(info.value)
    monkeypatch.undo()
    monkeypatch.setenv("HF_TOKEN", "hf_FromTheSpaceSecret")  # what the Space secret becomes
    from huggingface_hub import get_token

    assert get_token() == "hf_FromTheSpaceSecret"
