"""Files of the commands: written whole or not at all, YAML read, with one-line errors.

Every file goes to a temporary file ``.<name>.<pid>.tmp`` in the same folder, is flushed to
disk and then renamed over the target (``os.replace``), so a crash at any moment leaves the
previous file or the new one, never a torn one. Temporary files of processes that were killed
are removed by :func:`remove_orphans`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import yaml

from models.app.errors import UserError
from models.bounded import expanded_size

_TEMPORARY = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.tmp$")
YAML_NODES = 1_000_000
"""The most values a YAML text may hold with its aliases expanded (a few kB of aliases can
name billions of values: whatever walks them, a message or a copy, would exhaust memory)."""


class _Loader(yaml.SafeLoader):
    """``yaml.safe_load`` with numbers in scientific notation read as numbers (``1e-3``, as
    YAML 1.2 reads them; YAML 1.1 wants ``1.0e-3``), and a bound on aliases."""

    def compose_document(self) -> yaml.Node:
        node = super().compose_document()
        if expanded_size(node, _yaml_children, YAML_NODES) > YAML_NODES:
            raise yaml.YAMLError(f"its aliases expand to more than {YAML_NODES} values")
        return node


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*(\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def _yaml_children(node: yaml.Node) -> list[yaml.Node] | None:
    """The nodes a YAML node holds (None for a scalar)."""
    if isinstance(node, yaml.SequenceNode):
        return node.value
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return None


def load_yaml(text: str) -> Any:
    """The value of a YAML text (see :class:`_Loader`); raises ``yaml.YAMLError``."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader


def temporary_path(path: Path) -> Path:
    """The temporary file this process writes ``path`` through."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> None:
    """Call ``write(file)`` on a temporary file next to ``path``, fsync it, rename it to ``path``.

    An OSError (a full disk, no permission) becomes a :class:`UserError` naming the file; the
    previous ``path`` is left as it was and the temporary file is removed.
    """
    path = Path(path)
    tmp = temporary_path(path)
    try:
        try:
            with open(tmp, "wb") as f:
                write(f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _sync_folder(path.parent)
    except OSError as err:
        kept = "the previous file is unchanged" if path.exists() else "nothing was written"
        raise UserError(f"cannot write {path}: {err.strerror or err} ({kept})") from err


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """:func:`atomic_write` of ``text`` (UTF-8)."""
    atomic_write(path, lambda f: f.write(text.encode()))


def _sync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_orphans(folder: Path) -> list[Path]:
    """Remove the temporary files in ``folder`` left by processes that no longer run; returns
    them."""
    removed = []
    for path in Path(folder).iterdir():
        match = _TEMPORARY.match(path.name)
        if match and path.is_file() and not _alive(int(match["pid"])):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def check_writable(path: Path, what: str = "--json") -> Path:
    """Raise a :class:`UserError` now, before any work, unless ``path`` can be written later:
    its folder exists and is writable and ``path`` is not a folder."""
    path = Path(path).expanduser()
    folder = path.parent
    if path.is_dir():
        raise UserError(f"{what} {path} is a folder; give a file name")
    if not folder.is_dir():
        raise UserError(f"{what} {path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise UserError(f"{what} {path} cannot be written (no permission)")
    return path


def shipped_names(folder: Path) -> list[str]:
    """Names (file stems) of the YAML files shipped in ``folder``."""
    return sorted(p.stem for p in folder.glob("*.yaml"))


def named_yaml(name_or_path: str, folder: Path, what: str) -> Path:
    """A YAML file given by path, or by the name of one shipped in ``folder`` (``what``: a
    config, a study; it names the thing in the error)."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        return path
    shipped = folder / f"{name_or_path}.yaml"
    if shipped.is_file():
        return shipped
    raise UserError(f"no {what} {name_or_path!r}: not a YAML file and not a shipped {what} "
                    f"({', '.join(shipped_names(folder))})")


def read_yaml_mapping(path: Path, what: str) -> dict[str, Any]:
    """The mapping in the YAML file ``path`` (an empty file: ``{}``); a file that cannot be
    read, is not YAML or holds no mapping is a one-line :class:`UserError` naming ``what``."""
    try:
        values = load_yaml(path.read_text()) or {}
    except yaml.YAMLError as err:
        problem = " ".join(str(err).split())
        raise UserError(f"{what} {path} is not valid YAML: {problem}") from err
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"cannot read {what} {path}: {getattr(err, 'strerror', None) or err}") \
            from err
    if not isinstance(values, dict):
        raise UserError(f"{what} {path} must be a mapping of keys to values")
    return values
