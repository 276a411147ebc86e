"""One checkpoint folder on disk: written atomically, checked against its manifest.

Layout of a checkpoint folder::

    ckpt_000012345/
      state.pt       the payload dict (model, optimizer, normalizer, ...) as plain data: tensors,
                     numbers and strings, loaded without unpickling code (`checkpoint_data`)
      meta.json      counters (env steps, updates, episodes, weight version, created_at, ...)
      config.yaml    the resolved run config (read back as data only: `read_config`)
      manifest.json  written last: size and sha256 of every other file

A folder is written under a temporary sibling name and renamed into place only once complete,
so a crash leaves either the old state or the new one, never a mix. A folder without a manifest
is a partial write; one whose files disagree with the manifest is corrupt. Both are refused by
`verify_checkpoint`. `checkpoint.CheckpointManager` keeps a folder of these.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import secrets
import shutil
import tempfile
from pathlib import Path
from typing import Any

from soulsai_ray.checkpoint_data import (
    FORMAT_VERSION,
    LEGACY_FORMAT_VERSION,
    UnsafePayloadError,
    load_state,
    save_state,
)

STATE_FILE = "state.pt"
META_FILE = "meta.json"
CONFIG_FILE = "config.yaml"
MANIFEST_FILE = "manifest.json"
LATEST_POINTER = "latest"
BEST_POINTER = "best"

TMP_PREFIX = ".tmp-"
TRASH_PREFIX = ".trash-"
_PAYLOAD_FILES = (STATE_FILE, META_FILE, CONFIG_FILE)


class CheckpointError(RuntimeError):
    """A checkpoint folder is missing, partial or corrupt."""


def write_text_atomic(path: Path, text: str) -> None:
    """Writes ``text`` to ``path`` so that readers see either the old or the new content.

    Args:
        path: Destination file; its parent folder must exist.
        text: Content, written as UTF-8.
    """
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def verify_checkpoint(path: Path) -> None:
    """Checks a checkpoint folder against its manifest, hashing every file.

    Args:
        path: The checkpoint folder.

    Raises:
        CheckpointError: The folder is missing, has no manifest (partial write), or a file is
            missing or differs in size or sha256 from the manifest.
    """
    check_files(Path(path), hash_files=True)


INTERPOLATION = "${"


def read_config(path: Path) -> dict[str, Any]:
    """A checkpoint's ``config.yaml`` as plain data, whoever wrote it.

    Checkpoints are shared between people and machines, so their config is only data: plain YAML
    (no tags that build objects), no interpolation resolved (``${oc.env:...}`` would read this
    machine's environment), nothing imported. The caller checks what it uses (an ``env.id`` with
    a module to import is refused by `soulsai_ray.envs.factory.check_data_env_id`).

    Raises:
        CheckpointError: the file is missing or not YAML, is not a mapping, or a value holds an
            interpolation (the message names its key).
    """
    import yaml

    folder = Path(path)
    try:
        config = yaml.safe_load((folder / CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise CheckpointError(f"{folder}: unreadable {CONFIG_FILE} ({err})") from err
    if not isinstance(config, dict):
        raise CheckpointError(f"{folder}: {CONFIG_FILE} is not a mapping of config keys")
    for key, value in _leaves(config, ""):
        if isinstance(value, str) and INTERPOLATION in value:
            raise CheckpointError(
                f"{folder}: {CONFIG_FILE} key {key} holds an interpolation ({value!r}); a "
                "checkpoint's config is data and is never resolved"
            )
    return config


def _leaves(data: Any, key: str) -> list[tuple[str, Any]]:
    """``(dotted key, value)`` of every value in nested mappings and lists (keys included)."""
    if isinstance(data, dict):
        out: list[tuple[str, Any]] = [(f"{key}.{k}".lstrip("."), k) for k in data]
        for k, v in data.items():
            out += _leaves(v, f"{key}.{k}".lstrip("."))
        return out
    if isinstance(data, list):
        return [leaf for i, v in enumerate(data) for leaf in _leaves(v, f"{key}[{i}]")]
    return [(key, data)]


def load_checkpoint(path: Path, map_location: str = "cpu") -> tuple[dict[str, Any], dict[str, Any]]:
    """Verifies and loads a checkpoint.

    Args:
        path: The checkpoint folder.
        map_location: Device the tensors are loaded onto.

    Returns:
        The payload dict given to `CheckpointManager.save` and the meta dict.

    Raises:
        CheckpointError: The checkpoint fails verification, or its state file is not plain data
            (a forged or foreign file; it is refused before anything in it is run).
    """
    path = Path(path)
    version = check_files(path, hash_files=True)
    try:
        payload = load_state(path / STATE_FILE, version, map_location)
    except UnsafePayloadError as err:
        raise CheckpointError(str(err)) from err
    meta = json.loads((path / META_FILE).read_text(encoding="utf-8"))
    return payload, meta


def write_folder(
    folder: Path, payload: dict[str, Any], meta: dict[str, Any], config_yaml: str
) -> None:
    """Writes the payload files, then the manifest describing them, all fsynced.

    Raises:
        OSError: a file could not be written (disk full, permissions), torch's failures included.
    """
    try:
        save_state(payload, folder / STATE_FILE)
    except RuntimeError as err:  # torch reports a full disk as a RuntimeError of its zip writer
        raise OSError(errno.EIO, f"writing {folder / STATE_FILE} failed: {err}") from err
    (folder / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True), encoding="utf-8")
    (folder / CONFIG_FILE).write_text(config_yaml, encoding="utf-8")
    files = {}
    for fname in _PAYLOAD_FILES:
        fsync_file(folder / fname)
        files[fname] = {"size": (folder / fname).stat().st_size, "sha256": sha256(folder / fname)}
    manifest = json.dumps({"version": FORMAT_VERSION, "files": files}, indent=2, sort_keys=True)
    (folder / MANIFEST_FILE).write_text(manifest, encoding="utf-8")
    fsync_file(folder / MANIFEST_FILE)
    fsync_dir(folder)


def move_into_place(tmp: Path, final: Path) -> None:
    """Renames `tmp` to `final`; an existing `final` is moved aside first and deleted after.

    If the new folder cannot be moved in, the existing `final` is moved back.
    """
    if not final.exists():
        os.rename(tmp, final)
    else:
        trash = final.with_name(f"{TRASH_PREFIX}{final.name}-{secrets.token_hex(4)}")
        os.rename(final, trash)
        try:
            os.rename(tmp, final)
        except BaseException:
            os.rename(trash, final)
            raise
        shutil.rmtree(trash)
    fsync_dir(final.parent)


def check_files(path: Path, hash_files: bool) -> int:
    """Raises CheckpointError unless every file listed in the manifest is present and matches.

    Returns:
        The manifest's format version.
    """
    if not path.is_dir():
        raise CheckpointError(f"Checkpoint {path} does not exist or is not a folder")
    manifest_path = path / MANIFEST_FILE
    if not manifest_path.is_file():
        raise CheckpointError(
            f"Checkpoint {path} has no {MANIFEST_FILE}: partial write (the save was interrupted)"
        )
    version, files = read_manifest(manifest_path)
    for fname, entry in files.items():
        file = path / fname
        if not file.is_file():
            raise CheckpointError(f"Checkpoint {path} is missing file {fname}")
        size = file.stat().st_size
        if size != entry["size"]:
            raise CheckpointError(
                f"Checkpoint {path}: {fname} has size {size}, manifest says {entry['size']}"
            )
        if hash_files and sha256(file) != entry["sha256"]:
            raise CheckpointError(
                f"Checkpoint {path}: {fname} sha256 mismatch with manifest (file is corrupt)"
            )
    return version


def read_manifest(manifest_path: Path) -> tuple[int, dict[str, dict[str, Any]]]:
    """The manifest's format version and its file entries."""
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        version, files = manifest["version"], manifest["files"]
        entries_ok = all({"size", "sha256"} <= set(e) for e in files.values())
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise CheckpointError(f"Checkpoint manifest {manifest_path} is unreadable: {e}") from e
    missing = [f for f in (STATE_FILE, META_FILE) if f not in files]
    if not entries_ok or missing:
        raise CheckpointError(
            f"Checkpoint manifest {manifest_path} is malformed (missing entries: {missing})"
        )
    if version not in (LEGACY_FORMAT_VERSION, FORMAT_VERSION):
        raise CheckpointError(
            f"Checkpoint manifest {manifest_path} has format version {version!r}; this version "
            f"of soulsai_ray reads {LEGACY_FORMAT_VERSION} and {FORMAT_VERSION}"
        )
    return version, files


def is_valid(path: Path) -> bool:
    try:
        verify_checkpoint(path)
    except CheckpointError:
        return False
    return True


def is_partial(folder: Path) -> bool:
    """True for a folder holding checkpoint files but no manifest."""
    has_payload = any((folder / f).exists() for f in _PAYLOAD_FILES)
    return has_payload and not (folder / MANIFEST_FILE).exists()


def sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def fsync_dir(path: Path) -> None:
    """Makes renames inside `path` durable (POSIX only; a no-op elsewhere)."""
    if os.name != "posix":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
