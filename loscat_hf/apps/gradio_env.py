"""The environment gradio reads, set by a function, not at import: importing an app module sets nothing.

The apps import gradio only through `import_gradio()`, inside the functions that build, launch or serve them,
so the first import of gradio always comes after `set_gradio_env()`. A variable the user set is left as it is,
except GRADIO_TEMP_DIR, which becomes the parent of this process's own private folder (see `private_cache`).
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import tempfile
from types import ModuleType
from typing import Any

from loscat_hf.errors import LoscatError

# GRADIO_ANALYTICS_ENABLED: gradio sends usage analytics by default (a DNS lookup at launch); a clinic's
# labelling app and the Space send nothing
GRADIO_ENV = {"GRADIO_ANALYTICS_ENABLED": "False"}
# read with int() when gradio is imported (gradio 6.31: http_server, node_server): a traceback otherwise
INT_VARIABLES = ("GRADIO_SERVER_PORT", "GRADIO_NUM_PORTS", "GRADIO_NODE_NUM_PORTS")
_PRIVATE: list[str] = []  # this process's cache folder, once made


def private_cache() -> str:
    """This process's gradio cache (GRADIO_TEMP_DIR): a new folder only its owner can open (0700), removed
    when the process ends. gradio's default, `/tmp/gradio`, is shared by every user and process of the
    machine, its files world-readable (0644), and gradio leaves there what its sweep does not track (a
    decoded `data:` URL image, docs/upstream.md). A GRADIO_TEMP_DIR the user set is where the folder goes."""
    if not _PRIVATE:
        parent = os.environ.get("GRADIO_TEMP_DIR") or None
        if parent:
            os.makedirs(parent, exist_ok=True)
        folder = tempfile.mkdtemp(prefix="loscat-gradio-", dir=parent)  # mode 0700
        atexit.register(shutil.rmtree, folder, True)
        _PRIVATE.append(folder)
        os.environ["GRADIO_TEMP_DIR"] = folder
    return _PRIVATE[0]


def check_env() -> None:
    """The variables gradio parses as numbers when imported hold numbers: a LoscatError, not a traceback."""
    for name in INT_VARIABLES:
        value = os.environ.get(name)
        if value is not None and not value.strip().isdigit():
            raise LoscatError(f"environment variable {name}={value!r} is not a number: set it to one (a port "
                              "is 1-65535), or unset it")
    port = os.environ.get("GRADIO_SERVER_PORT")
    if port is not None and not 0 < int(port) < 65536:
        raise LoscatError(f"environment variable GRADIO_SERVER_PORT={port} is not a port (1-65535)")


def set_gradio_env() -> None:
    """Set `GRADIO_ENV`'s variables that are not set yet and this process's private cache; check the ones
    gradio parses; call it before gradio is first imported."""
    check_env()
    for name, value in GRADIO_ENV.items():
        os.environ.setdefault(name, value)
    private_cache()


def server_port(port: int | None, host: str | None = None) -> int | None:
    """The port to serve on, checked now (before a model loads): `port`, else GRADIO_SERVER_PORT, else None
    (gradio takes 7860 or the next free one). A port out of range or one another program holds is a
    LoscatError naming `port`."""
    check_env()
    if port is None:
        if not os.environ.get("GRADIO_SERVER_PORT"):
            return None
        port, what = int(os.environ["GRADIO_SERVER_PORT"]), "environment variable GRADIO_SERVER_PORT"
    else:
        what = "port"
    if not 0 < port < 65536:
        raise LoscatError(f"port {port} is not a port number: choose one in 1-65535", param="port")
    address = host if host and host != "localhost" else "127.0.0.1"
    with socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET) as s:  # as gradio checks it
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((address.strip("[]"), port))
        except socket.gaierror as exc:  # an OSError too, but about the host, not the port
            raise LoscatError(f"host {address!r} is not an address of this machine ({exc.strerror or exc}): "
                              "use 127.0.0.1 (this machine only) or 0.0.0.0 (every network)",
                              param="host") from None
        except OSError as exc:
            raise LoscatError(f"{what} {port} cannot be used on {address}: {exc.strerror or exc} (another "
                              "program holds it, or it needs other rights); choose another port",
                              param="port" if what == "port" else None) from None
    return port


def serve(demo, port: int | None, **launch_kwargs: Any) -> None:
    """`demo.launch(server_port=port, ...)`, with gradio's 'Cannot find empty port' (a port taken after
    `server_port` checked it) as one line: the one launch of both apps."""
    try:
        demo.launch(server_port=port, **launch_kwargs)
    except OSError as exc:
        if "empty port" not in str(exc):
            raise
        raise LoscatError(f"port {port or 'GRADIO_SERVER_PORT or 7860+'} cannot be used "
                          f"({str(exc).split('. ')[0]}); choose another port", param="port") from None


def import_gradio() -> ModuleType:
    """gradio, imported after `set_gradio_env()`: the one way the apps import it."""
    set_gradio_env()
    import gradio

    return gradio
