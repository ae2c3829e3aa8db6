"""`loscat-hf push-space`: upload a self-contained Space folder (app, requirements, examples, loscat_hf).

A fresh Space has no loscat_hf on PyPI to install, so the package itself is copied beside app.py; a local
model folder can be bundled too, a Hub model id is set as the Space variable LOSCAT_MODEL.

Like `push`, only an allow-list leaves the machine, and the Space ends up holding exactly it: the model folder
goes through `hub.model.upload_files` (never `training_args.bin`, `train_summary.json`, reports, checkpoints
or logs), the Space and package files are named explicitly (whatever a local run left in `space/`, gradio's
cache or flagged photos, stays local), and files an earlier push left are deleted in the same commit. The
Space's README header is generated: `models:`/`datasets:` link the Space from the model's and dataset's Hub
pages, `sdk_version` is the installed gradio, which must be the one space/requirements.txt pins.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from loscat_hf.errors import LoscatError
from loscat_hf.hub.model import upload_files
from loscat_hf.hub.repo import (
    PushResult,
    check_private,
    check_repo_id,
    one_line,
    push_files,
    require_token,
    write_folder,
)

PACKAGE_DIR = Path(__file__).resolve().parents[1]
SPACE_DIR = PACKAGE_DIR.parent / "space"
SPACE_FILES = ("app.py", "requirements.txt", "examples/README.md")  # README.md: generated (`space_card`)
EXAMPLE_PATTERN = "examples/SYNTHETIC_*.jpg"
PACKAGE_PATTERNS = ("**/*.py", "resources/*.json", "resources/*.md", "py.typed")
MODEL_PREFIX = "model"
MODEL_VARIABLE = "LOSCAT_MODEL"  # the Space variable app.py reads: a Hub model id
TOKEN_SECRET = "HF_TOKEN"  # the Space secret huggingface_hub reads: read access to a private model


def _check_space_dir() -> None:
    if not (SPACE_DIR / "app.py").is_file():
        raise LoscatError(f"no space/ folder beside the package ({SPACE_DIR}): "
                          "run from a repository checkout")


def space_pins(path: str | Path | None = None) -> dict[str, str]:
    """space/requirements.txt as {distribution: pinned version}; every requirement line must be an exact pin
    (`name==version`): the Space installs what the tests ran (tests/test_space.py compares them)."""
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name

    path = Path(path) if path else SPACE_DIR / "requirements.txt"
    pins = {}
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith(("#", "-")):
            continue
        try:
            req = Requirement(line)
        except InvalidRequirement as exc:
            raise LoscatError(f"{path}, line {number}: {exc}") from None
        spec = list(req.specifier)
        if len(spec) != 1 or spec[0].operator != "==" or "*" in spec[0].version:
            raise LoscatError(f"{path}, line {number}: {line!r} is not an exact pin (name==version)")
        pins[canonicalize_name(req.name)] = spec[0].version
    return pins


def sdk_version() -> str:
    """The installed gradio, which the Space will run: refused unless it is the version the requirements
    pin."""
    from importlib.metadata import version

    installed, pinned = version("gradio"), space_pins().get("gradio")
    if pinned != installed:
        raise LoscatError(f"the installed gradio {installed} is not the one space/requirements.txt pins "
                          f"({pinned}): the Space would run a gradio the tests did not; install the pins "
                          "(bash scripts/setup.sh) or update them (docs/development.md)")
    return installed


def space_files(model: str | Path | None, workdir: Path) -> dict[str, Path]:
    """Space path -> local file for everything push-space uploads but the README.md it generates
    (`space_card`)."""
    _check_space_dir()
    files = {name: SPACE_DIR / name for name in SPACE_FILES if (SPACE_DIR / name).is_file()}
    files |= {p.relative_to(SPACE_DIR).as_posix(): p for p in sorted(SPACE_DIR.glob(EXAMPLE_PATTERN))}
    for pattern in PACKAGE_PATTERNS:
        for p in sorted(PACKAGE_DIR.glob(pattern)):
            if "__pycache__" not in p.parts and p.is_file():
                files[f"loscat_hf/{p.relative_to(PACKAGE_DIR).as_posix()}"] = p
    if model is not None and Path(model).is_dir():
        files |= {f"{MODEL_PREFIX}/{name}": p for name, p in upload_files(model, workdir).items()}
    return files


def served_model(model: str | Path | None) -> str | None:
    """The Hub model the Space loads: a Hub id given, the study's published model by default, None for a
    bundled folder (not on the Hub)."""
    from loscat_hf.model.study import STUDY_WEIGHTS_REPO

    if model is None:
        return STUDY_WEIGHTS_REPO  # app.py converts it on the first start
    return None if Path(model).is_dir() else str(model)


def space_card(model: str | Path | None = None, dataset_id: str | None = None):
    """space/README.md with the generated header: `models` (the Hub model it loads), `datasets`,
    `sdk_version`."""
    from huggingface_hub import SpaceCard

    _check_space_dir()
    card = SpaceCard.load(SPACE_DIR / "README.md")
    hub_model = served_model(model)
    card.data.models = [hub_model] if hub_model else None
    card.data.datasets = [dataset_id] if dataset_id else None
    card.data.sdk_version = sdk_version()
    return card


def build_space_folder(out: str | Path, model: str | Path | None = None,
                       dataset_id: str | None = None) -> Path:
    """Write exactly what push-space uploads (the generated README.md included) into `out`, which must not
    exist or be empty, and return it."""
    with tempfile.TemporaryDirectory(prefix="loscat-space-") as tmp:
        return write_folder(_files_with_card(model, dataset_id, Path(tmp))[0], out)


def _files_with_card(model, dataset_id, tmp: Path) -> tuple[dict[str, Path], dict]:
    """(Space path -> local file, the README's metadata), the generated README.md written into `tmp`."""
    files = space_files(model, tmp)
    card = space_card(model, dataset_id)
    card.save(tmp / "README.md")
    return files | {"README.md": tmp / "README.md"}, card.data.to_dict()


def push_space(repo_id: str, model: str | None = None, private: bool = True,
               dry_run: str | Path | None = None, dataset_id: str | None = None,
               token_env: str | None = None) -> PushResult:
    """Make the Space `repo_id` hold exactly the Space folder, in one commit; set or clear LOSCAT_MODEL.

    `model`: a local folder (bundled under model/) or a Hub id (set as the Space variable LOSCAT_MODEL; a
    private one needs the Space secret HF_TOKEN); None serves the study's model. `dataset_id`: the Hub dataset
    the model was trained on (Space metadata). `token_env`: the name of an environment variable holding a
    read token for the private `model`, set as the Space secret HF_TOKEN (never written to a file or printed;
    checked to read the model, and refused if it is your login token or a write token). `private` (default):
    a new Space is created private and an existing public one refused. `dry_run`: write the folder, upload
    nothing."""
    repo_id = check_repo_id(repo_id, "repo_id")
    check_private(private)
    if dataset_id is not None:
        dataset_id = check_repo_id(dataset_id, "dataset_id")
    local = model is not None and Path(model).is_dir()
    hub_model = str(model) if model is not None and not local else None
    if hub_model is not None:
        if hub_model.startswith((".", "/", "~")) or hub_model.count("/") != 1:
            raise LoscatError(f"model {hub_model!r} is neither a model folder nor a Hub id ORG/NAME",
                              param="model")
        check_repo_id(hub_model, "model")
    token = _space_token(token_env, hub_model)
    with tempfile.TemporaryDirectory(prefix="loscat-space-") as tmp:
        files, metadata = _files_with_card(model, dataset_id, Path(tmp))
        if dry_run is not None:
            note = [f"the Space variable {MODEL_VARIABLE} would be set to {hub_model}"] if hub_model else []
            return push_files(repo_id, "space", files, metadata, private=private, message="", dry_run=dry_run,
                              notes=note)
        require_token()
        private_model = _check_model_access(hub_model, token) if hub_model else False

        def settings(api, space_private: bool) -> list[str]:
            notes = []
            if hub_model:
                api.add_space_variable(repo_id, MODEL_VARIABLE, hub_model)
                notes.append(f"the Space variable {MODEL_VARIABLE} is set to {hub_model}")
            elif MODEL_VARIABLE in api.get_space_variables(repo_id):
                # else it would override the bundled model
                api.delete_space_variable(repo_id, MODEL_VARIABLE)
                notes.append(f"the Space variable {MODEL_VARIABLE} an earlier push set was removed: "
                             "the Space serves "
                             f"{'the bundled model/ folder' if local else 'the study model'}")
            if token is not None:
                api.add_space_secret(repo_id, TOKEN_SECRET, token, description=f"read access to {hub_model}")
                notes.append(f"the Space secret {TOKEN_SECRET} was set from ${token_env}")
            elif private_model:
                notes.append(f"{hub_model} is private or gated: the Space loads it only with a secret "
                             f"{TOKEN_SECRET} holding a read token (Space settings > Variables and secrets, "
                             "or push-space --model-token-env VAR); without it the Space stops at start with "
                             "a message saying so")
            if private_model and not space_private:
                notes.append(f"this public Space serves the answers of the private model {hub_model} "
                             "to anyone")
            return notes

        return push_files(repo_id, "space", files, metadata, private=private, message="loscat-hf push-space",
                          settings=settings, space_sdk="gradio")


def _space_token(token_env: str | None, hub_model: str | None) -> str | None:
    """The read token in the environment variable `token_env` (checked before anything is sent)."""
    if token_env is None:
        return None
    token = os.environ.get(token_env)
    if not token:
        raise LoscatError(f"token_env names the environment variable {token_env}, which is not set "
                          "(export a read token in it; the token itself never goes on the command line)",
                          param="token_env")
    if hub_model is None:
        raise LoscatError("token_env gives the Space read access to a private Hub model: name that model "
                          "(model='ORG/NAME'); a bundled folder or the study's public model needs no token",
                          param=("token_env", "model"))
    from huggingface_hub import get_token

    if token == get_token():
        raise LoscatError(f"token_env: {token_env} holds the token you are logged in with, which can write "
                          "to your repos; give the Space a fine-grained token that can only read the model",
                          param="token_env")
    return token


def _check_model_access(hub_model: str, token: str | None) -> bool:
    """Whether the Space needs a token for `hub_model` (private or gated). Refused: a model your login cannot
    read, a `token` that cannot read it or may write, a token for a public model (nothing to grant)."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import RepositoryNotFoundError

    api = HfApi()
    try:
        info = api.model_info(hub_model)
    except RepositoryNotFoundError:
        raise LoscatError(f"model {hub_model} does not exist on the Hub or is not readable with your token: "
                          "nothing was uploaded", param="model") from None
    except Exception as exc:  # noqa: BLE001 - network: one line
        raise LoscatError(f"cannot check the model {hub_model} on the Hub: {one_line(exc)}") from None
    needs_token = info.private is not False or bool(getattr(info, "gated", False))
    if token is None:
        return needs_token
    if not needs_token:
        raise LoscatError(f"token_env: {hub_model} is public, so the Space needs no token; "
                          "leave token_env out", param="token_env")
    try:
        role = ((api.whoami(token=token).get("auth") or {}).get("accessToken") or {}).get("role")
        api.model_info(hub_model, token=token)
    except RepositoryNotFoundError:
        raise LoscatError(f"token_env: that token cannot read {hub_model}: the Space could not load it",
                          param="token_env") from None
    except Exception as exc:  # noqa: BLE001 - an invalid token, network: one line, the token masked
        raise LoscatError(f"token_env: cannot check that token on the Hub: {one_line(exc)}",
                          param="token_env") from None
    if role == "write":
        raise LoscatError("token_env: that token can write to every repo of its owner; give the Space a "
                          f"fine-grained token that can only read {hub_model}", param="token_env")
    return True
