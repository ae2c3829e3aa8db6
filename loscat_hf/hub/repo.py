"""What every push shares: a checked repo id, the visibility rule, one exact commit, and the dry-run listing.

The visibility rule: a repo that must be private is private. A new repo is created private unless
`private=False`; an existing repo keeps its visibility (nothing here changes it), and an existing public repo
(a "protected" Space too: its app is public) is refused unless `private=False`, before anything is uploaded.
`create_repo(private=True, exist_ok=True)` alone would not do: on an existing repo huggingface_hub ignores
`private`, and the upload lands in the repo as it is.
"""

from __future__ import annotations

import logging
import re
import shutil
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from loscat_hf.errors import LoscatError

logger = logging.getLogger(__name__)

KEEP_IN_REPO = frozenset({".gitattributes"})  # the Hub's own file: never deleted
KINDS = {"model": "model repo", "dataset": "dataset repo", "space": "Space"}
URL_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
_TOKEN = re.compile(r"hf_[A-Za-z0-9]{6,}")


def check_repo_id(repo_id: str | None, what: str = "repo_id") -> str:
    """`repo_id` as ORG/NAME that the Hub accepts (huggingface_hub's own rules); else a LoscatError naming
    `what`."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    text = str(repo_id or "")
    try:
        validate_repo_id(text)
    except HFValidationError as exc:
        raise LoscatError(f"{what} {text!r} is not a Hub repo id: {str(exc).splitlines()[0]}",
                          param=what) from None
    if text.count("/") != 1:
        raise LoscatError(f"{what} must look like ORG/NAME, got {text!r}", param=what)
    return text


def one_line(exc: BaseException) -> str:
    """An exception's first line and the Hub's own reason (`server_message`), any token it echoes masked."""
    text = (str(exc).splitlines() or [type(exc).__name__])[0] or type(exc).__name__
    server = (str(getattr(exc, "server_message", None) or "").splitlines() or [""])[0]
    if server and server not in text:
        text = f"{text} {server}"
    return _TOKEN.sub("hf_***", text)


def _status(exc: BaseException) -> int | None:
    return getattr(getattr(exc, "response", None), "status_code", None)


def check_private(private) -> bool:
    """`private` as given, which must be True or False: None would let huggingface_hub pick the organisation's
    default visibility, i.e. public for most."""
    if not isinstance(private, bool):
        raise LoscatError(f"private must be True or False, got {private!r}", param="private")
    return private


def require_token() -> None:
    from huggingface_hub import get_token

    if get_token() is None:
        raise LoscatError("not logged in to the Hugging Face Hub: run `hf auth login` or set HF_TOKEN")


@dataclass
class PushResult:
    """What a push sent (or, with a dry run, would send): the repo, its visibility, the files, the card's
    metadata.

    `private`: the repo's visibility after the push (a dry run: what a new repo would get); `files`: repo path
    -> size in bytes; `deleted`: files of the repo outside the allow-list that the same commit removed;
    `notes`: what the user should know."""

    repo_id: str
    repo_type: str
    private: bool
    files: dict[str, int]
    metadata: dict
    url: str | None = None
    dry_run: Path | None = None
    created: bool | None = None
    deleted: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """The console lines: what went (or would go) where, the card's metadata, the files by folder."""
        kind = KINDS[self.repo_type]
        where = "private" if self.private else "PUBLIC"
        if self.dry_run is not None:
            head = [f"dry run: nothing uploaded; the exact upload folder is {self.dry_run}",
                    f"would push {len(self.files)} files ({_size(self.files.values())}) to the {kind} "
                    f"{self.repo_id} in one commit that also deletes every other file of the repo "
                    f"(except .gitattributes)",
                    f"visibility: {where} if the repo is new; an existing repo keeps its own, and an "
                    f"existing public repo is refused{' unless --public' if self.private else ''}"]
        else:
            head = [f"pushed {len(self.files)} files ({_size(self.files.values())}) to the {where} {kind} "
                    f"{self.repo_id}{' (created)' if self.created else ''}: {self.url}"]
            if self.deleted:
                head.append(f"deleted {len(self.deleted)} file(s) outside the allow-list: "
                            f"{', '.join(self.deleted)} (still in the repo's git history)")
        return "\n".join([*head, *(f"note: {n}" for n in self.notes), "metadata (README.md header):",
                          *_metadata_lines(self.metadata), "files:", *listing(self.files)])


def _metadata_lines(metadata: dict, max_lines: int = 8) -> list[str]:
    """The header as YAML, a long entry (features, model-index) cut to its first lines: README.md has it
    whole."""
    import yaml

    lines = []
    for key, value in (metadata or {}).items():
        text = yaml.safe_dump({key: value}, sort_keys=False, allow_unicode=True).rstrip().splitlines()
        if len(text) > max_lines:
            text = [*text[:max_lines - 1], f"    ... ({len(text) - max_lines + 1} more lines in README.md)"]
        lines += ["  " + line for line in text]
    return lines or ["  -"]


def _size(sizes) -> str:
    n = sum(sizes)
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return ""


def listing(files: dict[str, int], per_folder: int = 3) -> list[str]:
    """Files at the top level one per line; a folder as one line with its count, size and a few names."""
    top = sorted(name for name in files if "/" not in name)
    folders: dict[str, list[str]] = defaultdict(list)
    for name in files:
        if "/" in name:
            folders[name.split("/", 1)[0]].append(name)
    lines = [f"  {name} ({_size([files[name]])})" for name in top]
    for folder in sorted(folders):
        names = sorted(folders[folder])
        shown = (", ".join(n.split("/", 1)[1] for n in names[:per_folder])
                 + (", ..." if len(names) > per_folder else ""))
        count = f"{len(names)} file{'s' if len(names) != 1 else ''}"
        lines.append(f"  {folder}/: {count} ({_size(files[n] for n in names)}): {shown}")
    return lines


def write_folder(files: dict[str, Path], out: str | Path) -> Path:
    """Copy exactly `files` (repo path -> local file) into `out`, which must not exist or be empty."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise LoscatError(f"dry_run folder {out} is not empty: name a new folder", param="dry_run")
    for name, src in files.items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, out / name)
    out.mkdir(parents=True, exist_ok=True)
    return out


def _is_private(info) -> bool:
    """Only an explicit `private: true` is private; unknown (None) is not, nor a "protected" Space (public
    app)."""
    return info.private is True and getattr(info, "visibility", None) != "protected"


def check_visibility(api, repo_id: str, repo_type: str, private: bool = True):
    """The repo's info if it exists and may receive a push with `private`, None if it does not exist; a public
    repo is refused when `private`. Reads only: nothing is created or changed."""
    from huggingface_hub.errors import RepositoryNotFoundError

    try:
        info = api.repo_info(repo_id, repo_type=repo_type)
    except RepositoryNotFoundError:  # does not exist, or exists and is not readable with this token
        return None
    if private and not _is_private(info):
        raise LoscatError(
            f"the {KINDS[repo_type]} {repo_id} already exists and is public, and this push is private by "
            "default: nothing was uploaded. Choose another repo id, make the repo private on the Hub, or "
            "pass private=False to publish there", param="private")
    return info


def ensure_repo(api, repo_id: str, repo_type: str, private: bool = True,
                **create_kwargs) -> tuple[bool, bool]:
    """Make sure `repo_id` exists and may receive this push; returns (private, created).

    Reads the repo's real visibility with `repo_info` (`check_visibility`): a new repo is created private
    unless `private=False`; an existing public repo is refused unless `private=False`; an existing private
    repo stays private (with `private=False` too: its visibility is the owner's choice, changed on the
    Hub)."""
    from huggingface_hub.errors import HfHubHTTPError

    private = check_private(private)
    info = check_visibility(api, repo_id, repo_type, private)
    if info is not None:
        return _is_private(info), False
    try:
        api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=False, **create_kwargs)
    except HfHubHTTPError as exc:
        if _status(exc) == 409:  # repo_info said "not found", yet it exists: this token cannot read it
            raise LoscatError(f"repo_id {repo_id}: the {KINDS[repo_type]} exists but your token cannot "
                              "read it: nothing was uploaded (log in as its owner, or choose another "
                              "repo id)", param="repo_id") from None
        raise
    info = api.repo_info(repo_id, repo_type=repo_type)
    if private and not _is_private(info):  # e.g. an organisation that forces public repos
        raise LoscatError(f"the {KINDS[repo_type]} {repo_id} was created but is public: nothing was "
                          "uploaded. Make it private on the Hub, or pass private=False to publish there",
                          param="private")
    return _is_private(info), True


def preflight(repo_id: str, repo_type: str, private: bool = True) -> None:
    """The checks a push makes before uploading (login, visibility), made early by a command that works long
    before it pushes (`prepare --push-to-hub` packs the photos first). Reads only."""
    require_token()
    from huggingface_hub import HfApi

    try:
        check_visibility(HfApi(), repo_id, repo_type, check_private(private))
    except LoscatError:
        raise
    except Exception as exc:  # noqa: BLE001 - network, auth: one readable line
        raise LoscatError(f"cannot check the Hub {repo_type} repo {repo_id!r}: {one_line(exc)}") from None


def commit_exactly(api, repo_id: str, repo_type: str, files: dict[str, Path],
                   message: str) -> list[str]:
    """One commit that makes the repo's files exactly `files` (plus .gitattributes); returns the deleted
    names.

    Files an earlier push left that the allow-list no longer names are deleted in the same commit (they stay
    in the repo's git history: squash it or recreate the repo to drop them there)."""
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete

    stale = sorted(f for f in api.list_repo_files(repo_id, repo_type=repo_type)
                   if f not in files and f not in KEEP_IN_REPO)
    api.create_commit(
        repo_id=repo_id, repo_type=repo_type, commit_message=message,
        operations=[CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(path))
                    for name, path in files.items()]
        + [CommitOperationDelete(path_in_repo=name) for name in stale],
    )
    if stale:
        logger.debug("deleted %d file(s) outside the allow-list from %s", len(stale), repo_id)
    return stale


def push_files(repo_id: str, repo_type: str, files: dict[str, Path], metadata: dict, *, private: bool,
               message: str, dry_run: str | Path | None = None, notes: list[str] = (), settings=None,
               **create_kwargs) -> PushResult:
    """The one push path: a dry run writes the exact folder; a real push checks the token and the visibility
    (`ensure_repo`), applies `settings(api, private)` (a Space's variables and secrets; returns notes), then
    commits exactly `files` (`commit_exactly`): settings first, so a Space never restarts on new files with
    stale settings, and a failed setting uploads nothing.

    Every Hub error becomes one LoscatError line (any token masked; the login hint only for a 401)."""
    result = PushResult(repo_id=repo_id, repo_type=repo_type, private=check_private(private),
                        files={name: Path(path).stat().st_size for name, path in files.items()},
                        metadata=metadata, notes=list(notes))
    if dry_run is not None:
        result.dry_run = write_folder(files, dry_run)
        return result
    require_token()
    from huggingface_hub import HfApi

    api = HfApi()
    step = "check"
    try:
        result.private, result.created = ensure_repo(api, repo_id, repo_type, private, **create_kwargs)
        if not private and result.private:
            result.notes.append(f"{repo_id} exists and is private: it stays private "
                                "(change its visibility on the Hub to publish it)")
        step = "configure"
        if settings is not None:
            result.notes += settings(api, result.private) or []
        step = "commit to"
        result.deleted = commit_exactly(api, repo_id, repo_type, files, message)
    except LoscatError:
        raise
    except Exception as exc:  # noqa: BLE001 - network, auth, HTTP errors: one readable line, token masked
        hint = " (log in with `hf auth login` or set HF_TOKEN)" if _status(exc) == 401 else ""
        done = (" (its settings were changed; no file was uploaded)"
                if step == "commit to" and settings else "")
        raise LoscatError(f"could not {step} the Hub {KINDS[repo_type]} {repo_id!r}: "
                          f"{one_line(exc)}{hint}{done}") from None
    result.url = f"https://huggingface.co/{URL_PREFIX[repo_type]}{repo_id}"
    return result
