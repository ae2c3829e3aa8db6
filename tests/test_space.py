"""The Space app end to end: a real server on 127.0.0.1, called through gradio_client and a real browser."""

import ast
import csv
import importlib.metadata
import os
import re
import shutil
import socket
import sys
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
    from loscat_hf.regions import load_taxonomy
    from loscat_hf.space import launch

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
    assert label["label"] in classes
    probs = [c["confidence"] for c in label["confidences"]]
    assert len(probs) == 3 and probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1.0001
    assert overlay and Image.open(overlay).size[0] > 0
    assert body and Image.open(body).size == (480, 480)
    assert not Image.open(overlay).getexif()
    assert "review" in notice.lower() or label["label"] in notice
    assert photo.exists()  # the client's own file is untouched; the server deletes only its upload copy


def test_probabilities_sum_to_one(server, photo):
    from loscat_hf.space import SpaceModel

    app = SpaceModel(server[2], precision="fp32")
    copy = photo.parent / "copy.jpg"
    shutil.copy(photo, copy)
    top, _, shown, _ = app.predict(str(copy), False)
    assert shown is None and not copy.exists()  # upload deleted after use
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
    for key in ("sdk: gradio", "sdk_version: 6.31.0", "app_file: app.py", "python_version:", "title:",
                "short_description:", "license:"):
        assert key in head


def test_space_folder_is_self_contained(tmp_path):
    from loscat_hf.space_push import build_space_folder

    out = build_space_folder(tmp_path / "s")
    assert (out / "app.py").is_file() and (out / "requirements.txt").is_file()
    assert (out / "loscat_hf" / "space.py").is_file() and (out / "loscat_hf" / "data").is_dir()
    assert not list(out.rglob("__pycache__"))


@pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="chromium not installed (apt-get install chromium)")
def test_browser_upload_and_predict(server, tmp_path):
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright not installed (pip install playwright)")
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
        page.wait_for_function("document.querySelector('#top-label .output-class').innerText.trim().length > 0",
                               timeout=30_000)
        text = top.inner_text().strip()
        page.screenshot(path=str(tmp_path / "space.png"), full_page=True)
        browser.close()
    assert text in server[1]
    if os.environ.get("LOSCAT_SAVE_SCREENSHOT"):
        shutil.copy(tmp_path / "space.png", ROOT / "docs" / "space.png")


def test_space_app_file_builds_from_its_folder(server, tmp_path):
    """The uploaded folder works on its own: app.py imports the bundled package and reads LOSCAT_MODEL."""
    import subprocess

    from loscat_hf.space_push import build_space_folder

    folder = build_space_folder(tmp_path / "s", model=server[2])
    code = ("import app, sys; print(type(app.demo).__name__, app.os.environ['LOSCAT_MODEL'], "
            "sys.modules['loscat_hf'].__file__)")
    env = {k: v for k, v in os.environ.items() if k not in ("LOSCAT_MODEL", "PYTHONPATH")}
    out = subprocess.run([sys.executable, "-c", code], cwd=folder, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["Blocks", str(folder / "model"), str(folder / "loscat_hf" / "__init__.py")]
