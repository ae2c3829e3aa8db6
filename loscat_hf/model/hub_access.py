"""Can the Hub be used now, and what to tell the user when it cannot.

huggingface_hub alone retries a Hub it cannot reach for ~25 s per file, then says neither what failed nor
what to do (docs/upstream.md). `hub_unreachable` asks once, within seconds, and takes the process offline
when nobody answers; the messages below say why, in one line, and what to do instead.
"""

from __future__ import annotations

import os
from pathlib import Path

HUB_PROBE_S = 3.0  # how long one request may take to show that the Hub answers
OFFLINE_SET = "HF_HUB_OFFLINE is set"  # the user's choice: nothing to warn about
_WENT_OFFLINE: list[str] = []  # why `hub_unreachable` took this process offline, once it did


def first_line(exc: BaseException, limit: int = 200) -> str:
    """The first line of an error, shortened to whole sentences (or whole words, then '...'), never cut
    mid-word."""
    line = (str(exc).strip().splitlines() or [type(exc).__name__])[0].strip()
    if len(line) <= limit:
        return line
    cut = line[:limit]
    end = cut.rfind(". ")
    return cut[:end + 1] if end > limit // 3 else cut.rsplit(" ", 1)[0] + " ..."


def hub_unreachable() -> str | None:
    """Why the Hub cannot be used now (HF_HUB_OFFLINE, or no answer within HUB_PROBE_S), or None.

    Where it does not answer, this process goes offline as HF_HUB_OFFLINE=1 would (the local HF cache only):
    huggingface_hub otherwise retries each file it does not find in the cache for ~25 s (docs/upstream.md).
    The request runs in a thread so that a hanging name lookup cannot outlast the limit either."""
    import threading

    from huggingface_hub import constants
    from huggingface_hub.utils import get_session

    if constants.HF_HUB_OFFLINE:
        return _WENT_OFFLINE[0] if _WENT_OFFLINE else OFFLINE_SET
    failed = [f"nothing within {HUB_PROBE_S:g} s"]  # until the request answers

    def probe() -> None:
        try:
            get_session().head(constants.ENDPOINT, timeout=HUB_PROBE_S)  # any status is an answer
            failed.clear()
        except Exception as exc:  # httpx's transport errors (not OSErrors), SSL, a refusing proxy
            failed[0] = first_line(exc, 80)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(HUB_PROBE_S + 1)
    if not failed:
        return None
    why = f"{constants.ENDPOINT} did not answer: {failed[0]}"
    _WENT_OFFLINE[:] = [why]
    constants.HF_HUB_OFFLINE = True  # what huggingface_hub's and transformers' offline checks read
    os.environ["HF_HUB_OFFLINE"] = "1"  # and what worker processes read
    return why


def why_failed(exc: BaseException, offline: str | None) -> str:
    """Why the Hub could not serve a file: the offline reason for a cache miss, else the error itself."""
    from huggingface_hub.errors import LocalEntryNotFoundError, OfflineModeIsEnabled

    return offline if offline and isinstance(exc, (LocalEntryNotFoundError, OfflineModeIsEnabled)) else \
        first_line(exc, 120)


def download_by_hand(repo: str, filename: str, why: str) -> str:
    """What to do when a Hub checkpoint cannot be fetched: fetch it by hand, convert it, use the folder."""
    from huggingface_hub import constants

    return (f"cannot download {repo}/{filename}: it is not in the local HF cache and the Hub cannot be used "
            f"({why}); download it by hand from {constants.ENDPOINT}/{repo}/resolve/main/{filename}, convert "
            f"it with `loscat-hf convert-timm {Path(filename).name} --out FOLDER` and use that model folder "
            "(--model FOLDER)")
