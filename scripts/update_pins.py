"""Rewrite space/requirements.txt's pins (and space/README.md's sdk_version) from the active environment.

Run it in a venv where the versions you want were installed and tested (docs/development.md, "Pinned
versions"): every `name==version` line gets the installed version (torch's local label, `+cpu`, dropped), and
sdk_version the pinned gradio. Names, comments and the index line stay as they are.

    python scripts/update_pins.py [--check]   # --check: change nothing, exit 1 if a pin would change
"""

from __future__ import annotations

import argparse
import importlib.metadata
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS = ROOT / "space" / "requirements.txt"
SPACE_README = ROOT / "space" / "README.md"
PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[^\s#;]+)", re.M)
SDK = re.compile(r"^(sdk_version:\s*[\"']?)([^\"'\s]+)", re.M)


def installed(name: str) -> str:
    return importlib.metadata.version(name).split("+", 1)[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a pin would change")
    check = parser.parse_args(argv).check
    text = REQUIREMENTS.read_text()
    changes = {}

    def repin(match: re.Match) -> str:
        name, old = match["name"], match["version"]
        new = installed(name)
        if new != old:
            changes[name] = (old, new)
        return f"{name}=={new}"

    text = PIN.sub(repin, text)
    gradio = installed("gradio")
    readme = SPACE_README.read_text()
    sdk = SDK.search(readme)
    if sdk is None:
        raise SystemExit(f"{SPACE_README} has no sdk_version line")
    if sdk.group(2) != gradio:
        changes["sdk_version (space/README.md)"] = (sdk.group(2), gradio)
    for name, (old, new) in changes.items():
        print(f"{name}: {old} -> {new}")
    if check:
        return 1 if changes else 0
    REQUIREMENTS.write_text(text)
    SPACE_README.write_text(SDK.sub(lambda m: m.group(1) + gradio, readme, count=1))
    print(f"{len(changes)} change(s)" if changes else "the pins already are the installed versions")
    return 0


if __name__ == "__main__":
    sys.exit(main())
