"""Rewrite space/requirements.txt's pins (and space/README.md's sdk_version) from the active environment.

Run it in a venv where the versions you want were installed and tested (docs/development.md, "Pinned
versions"). The requirements listed by hand at the top of the file (the Space's direct dependencies) keep
their place, names, comments and the index line, each with the installed version (torch's local label,
`+cpu`, dropped). Everything they pull in, recursively, read from the installed distributions' metadata
(their `Requires-Dist`, with the environment markers evaluated for this Python and platform, and the extras
a requirement asks for), is written as exact pins in a generated block at the end, sorted by canonical
name: the Space then installs exactly the tested set, not whatever its dependencies resolve to on the day
it builds. sdk_version gets the pinned gradio.

    python scripts/update_pins.py [--check]   # --check: change nothing, exit 1 if the file would change

tests/test_space.py imports `plan` from this file: the one implementation of the closure.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import re
import sys
from collections.abc import Iterable
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS = ROOT / "space" / "requirements.txt"
SPACE_README = ROOT / "space" / "README.md"
GENERATED = "# everything they pull in, written by scripts/update_pins.py; do not edit by hand"
# the distribution this repo builds: installed (editable) in the tested venv, but bundled into the Space as
# source
EXCLUDED = {"loscat-hf"}
VERSION = re.compile(r"==\s*([^\s#;,]+)")
SDK = re.compile(r"^(sdk_version:\s*[\"']?)([^\"'\s]+)", re.M)


def installed(name: str) -> str:
    return importlib.metadata.version(name).split("+", 1)[0]


def _requirement(line: str) -> Requirement | None:
    """A requirements.txt line as a Requirement; None for blank lines, comments and options
    (`--extra-index-url`)."""
    line = line.split(" #", 1)[0].strip()
    return None if not line or line.startswith(("#", "-")) else Requirement(line)


def closure(requirements: Iterable[Requirement]) -> dict[str, str]:
    """{canonical name: installed version} of the requirements and everything they require, recursively, in
    this environment: each installed distribution's requirements whose markers hold here, for the base and
    for each extra asked of it (`pkg[extra]`). A required distribution that is not installed raises
    LookupError."""
    environment = default_environment()
    # canonical name -> extras whose requirements were followed ("" = base)
    expanded: dict[str, set[str]] = {}
    found: dict[str, str] = {}
    todo = [(req, "space/requirements.txt") for req in requirements]
    while todo:
        req, wanted_by = todo.pop()
        name = canonicalize_name(req.name)
        if name in EXCLUDED or (req.marker is not None
                                and not req.marker.evaluate({**environment, "extra": ""})):
            continue
        extras = ({""} | {canonicalize_name(e) for e in req.extras}) - expanded.get(name, set())
        if not extras:
            continue
        expanded.setdefault(name, set()).update(extras)
        try:
            dist = importlib.metadata.distribution(req.name)
        except importlib.metadata.PackageNotFoundError:
            raise LookupError(f"{req.name} (required by {wanted_by}) is not installed") from None
        found[name] = dist.version.split("+", 1)[0]
        for raw in dist.requires or []:
            sub = Requirement(raw)
            if sub.marker is None or any(sub.marker.evaluate({**environment, "extra": e}) for e in extras):
                sub.marker = None  # it held for one of the extras followed here, not for an extra of `sub`
                todo.append((sub, name))
    return found


def plan(text: str) -> tuple[str, dict[str, tuple[str | None, str | None]]]:
    """The requirements file `text` re-pinned from this environment, and what changes: {name: (old, new)},
    old None for a distribution the closure needs but the file does not pin, new None for a generated pin no
    longer needed."""
    lines = text.splitlines()
    if GENERATED in lines:
        lines, generated = lines[:lines.index(GENERATED)], lines[lines.index(GENERATED) + 1:]
    else:
        generated = []
    while lines and not lines[-1].strip():
        lines.pop()
    changes: dict[str, tuple[str | None, str | None]] = {}
    direct = []
    for number, line in enumerate(lines):
        req = _requirement(line)
        if req is None:
            continue
        direct.append(req)
        name, new = canonicalize_name(req.name), installed(req.name)
        body, hash_, comment = line.partition(" #")
        old = VERSION.search(body)
        if old is None and req.specifier:
            raise SystemExit(f"{REQUIREMENTS}: {line!r} is neither `name==version` nor a bare name to pin")
        if old is None or old.group(1) != new:
            changes[name] = (old and old.group(1), new)
        body = body[:old.start(1)] + new + body[old.end(1):] if old else f"{body.rstrip()}=={new}"
        lines[number] = body + hash_ + comment
    old_generated = {}
    for line in generated:
        req = _requirement(line)
        if req is not None:
            spec = VERSION.search(line)
            old_generated[canonicalize_name(req.name)] = spec and spec.group(1)
    direct_names = {canonicalize_name(req.name) for req in direct}
    pulled = {name: version for name, version in closure(direct).items() if name not in direct_names}
    for name in sorted(old_generated.keys() | pulled.keys()):
        old, new = old_generated.get(name), pulled.get(name)
        if old != new:
            changes[name] = (old, new)
    lines += ["", GENERATED] + [f"{name}=={version}" for name, version in sorted(pulled.items())]
    return "\n".join(lines) + "\n", changes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="change nothing; exit 1 if the file would change")
    check = parser.parse_args(argv).check
    text, changes = plan(REQUIREMENTS.read_text())
    gradio = installed("gradio")
    readme = SPACE_README.read_text()
    sdk = SDK.search(readme)
    if sdk is None:
        raise SystemExit(f"{SPACE_README} has no sdk_version line")
    if sdk.group(2) != gradio:
        changes["sdk_version (space/README.md)"] = (sdk.group(2), gradio)
    for name, (old, new) in changes.items():
        print(f"{name}: {old or 'not pinned'} -> {new or 'no longer needed'}")
    if check:
        return 1 if changes else 0
    REQUIREMENTS.write_text(text)
    SPACE_README.write_text(SDK.sub(lambda m: m.group(1) + gradio, readme, count=1))
    print(f"{len(changes)} change(s)" if changes else "the pins already are the installed versions")
    return 0


if __name__ == "__main__":
    sys.exit(main())
