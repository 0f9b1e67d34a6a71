"""A sandbox that survives a restart: its identity and its data in one JSON file.

`atx sandbox serve` keeps its state in `ATX_HOME/sandbox/state.json`: the Autotask API user and the Xero
app's client secret, the organisations (tenant ids included), every Autotask record and Xero document, and
the tokens Xero issued, so a token set stored in the ledger still refreshes after a restart. Without it, a
restart made a new sandbox: new secrets, a new organisation, and a ledger describing documents that no
longer existed anywhere.

The file is rewritten whole and atomically (a temporary file, then a rename), so a crash leaves the last
complete snapshot; it is readable by its owner only, since it holds the sandbox's own (fake) secrets.

Values are plain JSON except these, written as one-key objects: Decimal {"$decimal": "12.50"} (digit for
digit), datetime {"$datetime": ISO 8601}, date {"$date": ...}, bytes {"$bytes": base64} (attachments, the
remembered answers of idempotent requests), tuple {"$tuple": [...]}, and a dict whose keys are not all
text {"$items": [[key, value], ...]}.
"""
from __future__ import annotations

import base64
import json
import os
import tempfile
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

STATE_FILE = "state.json"
FORMAT = 1


class StateError(RuntimeError):
    """The state file cannot be used; the message names it and says what to do."""


def encode(value):
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Decimal):
        return {"$decimal": str(value)}
    if isinstance(value, datetime):  # before date: a datetime is a date too
        return {"$datetime": value.isoformat()}
    if isinstance(value, date):
        return {"$date": value.isoformat()}
    if isinstance(value, (bytes, bytearray)):
        return {"$bytes": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, tuple):
        return {"$tuple": [encode(v) for v in value]}
    if isinstance(value, list):
        return [encode(v) for v in value]
    if isinstance(value, dict):
        if all(isinstance(k, str) and not k.startswith("$") for k in value):
            return {k: encode(v) for k, v in value.items()}
        return {"$items": [[encode(k), encode(v)] for k, v in value.items()]}
    raise TypeError(f"the sandbox state cannot hold a {type(value).__name__}")


_TAGS = {
    "$decimal": Decimal,
    "$datetime": datetime.fromisoformat,
    "$date": date.fromisoformat,
    "$bytes": lambda text: base64.b64decode(text),
    "$tuple": lambda items: tuple(decode(v) for v in items),
    "$items": lambda pairs: {decode(k): decode(v) for k, v in pairs},
}


def decode(value):
    if isinstance(value, list):
        return [decode(v) for v in value]
    if isinstance(value, dict):
        if len(value) == 1:
            (key, inner), = value.items()
            if key in _TAGS:
                return _TAGS[key](inner)
        return {k: decode(v) for k, v in value.items()}
    return value


def dumps(state: dict) -> str:
    return json.dumps(encode({"format": FORMAT, **state}), ensure_ascii=False, separators=(",", ":"))


def state_file(state_dir: str | Path) -> Path:
    return Path(state_dir) / STATE_FILE


def load(state_dir: str | Path) -> dict | None:
    """The saved state, or None when there is none yet."""
    path = state_file(state_dir)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        state = decode(json.loads(text))
    except (ValueError, TypeError) as exc:
        raise StateError(f"the sandbox state {path} cannot be read ({type(exc).__name__}): "
                         "run `atx sandbox reset` to start a new sandbox") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise StateError(f"the sandbox state {path} was written by another release of atx (format "
                         f"{state.get('format') if isinstance(state, dict) else '?'}, this one reads {FORMAT}): "
                         "run `atx sandbox reset` to start a new sandbox")
    return state


def write(state_dir: str | Path, text: str) -> Path:
    """Replace the state file with `text` atomically; only its owner can read it."""
    folder = Path(state_dir)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    descriptor, temporary = tempfile.mkstemp(prefix=".state-", suffix=".tmp", dir=folder)  # mode 0600
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(temporary, state_file(folder))
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return state_file(folder)


def remove(state_dir: str | Path) -> bool:
    """Delete the saved state (and the temporary files of an interrupted save). True when there was one."""
    folder = Path(state_dir)
    existed = state_file(folder).exists()
    if folder.is_dir():
        for path in folder.iterdir():
            if path.name == STATE_FILE or (path.name.startswith(".state-") and path.name.endswith(".tmp")):
                path.unlink(missing_ok=True)
        try:
            folder.rmdir()
        except OSError:  # something else lives there: leave it
            pass
    return existed
