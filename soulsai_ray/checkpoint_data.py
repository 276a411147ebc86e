"""A checkpoint's payload as data only: tensors, numbers, strings and containers of them.

`encode` turns a payload (torch state dicts, numpy arrays, RNG states, counters) into a tree
that `torch.load(weights_only=True)` reads without any allow-list: numpy arrays become tensors
under a one-key marker dict and numpy scalars become Python numbers. `decode` undoes that. A
state file is never unpickled with ``weights_only=False``, so loading one runs no code.

Checkpoints written before this format (manifest version 1) stored numpy arrays as pickled
objects; they load with an allow-list of exactly numpy's array and dtype reconstructors, which
rebuild arrays from raw bytes and call nothing else. Anything else a state file asks to import is
refused before it is created.
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

FORMAT_VERSION = 2
"""Manifest version of checkpoints whose state file holds only `encode` output."""
LEGACY_FORMAT_VERSION = 1
"""Manifest version of checkpoints that pickled numpy arrays."""

_NDARRAY = "__ndarray__"
_LEGACY_NUMPY_GLOBALS = [
    np.ndarray,
    np.dtype,
    np._core.multiarray._reconstruct,
    np._core.multiarray.scalar,
    *sorted({type(np.dtype(code)) for code in "?bBhHiIlLqQefdgFDG"}, key=str),
]


class UnsafePayloadError(ValueError):
    """A state file holds something other than tensors, numbers, strings and their containers."""


def encode(payload: Any) -> Any:
    """The payload with every numpy array and scalar replaced by a tensor or Python number.

    Raises:
        UnsafePayloadError: the payload holds an object that is not plain data (a class
            instance, a function, an object-dtype array).
    """
    # torch is imported where it is used: the replay actor and the weight store start without it
    import torch

    if isinstance(payload, np.ndarray):
        if payload.dtype.hasobject:
            raise UnsafePayloadError(f"object arrays cannot be checkpointed ({payload.dtype})")
        # np.array (not ascontiguousarray, which makes 0-d arrays 1-d) keeps the shape
        return {_NDARRAY: torch.from_numpy(np.array(payload, order="C", copy=True))}
    if isinstance(payload, np.generic):
        return payload.item()
    if isinstance(payload, torch.Tensor) or payload is None:
        return payload
    if isinstance(payload, bool | int | float | str | bytes):
        return payload
    if isinstance(payload, Mapping):
        return {key: encode(value) for key, value in payload.items()}
    if isinstance(payload, list | tuple):
        return type(payload)(encode(value) for value in payload)
    raise UnsafePayloadError(f"{type(payload).__name__} cannot be checkpointed as data")


def decode(tree: Any) -> Any:
    """Undoes `encode`: marker dicts become numpy arrays again."""
    if isinstance(tree, dict):
        if len(tree) == 1 and _NDARRAY in tree:
            return tree[_NDARRAY].numpy()
        return {key: decode(value) for key, value in tree.items()}
    if isinstance(tree, list | tuple):
        return type(tree)(decode(value) for value in tree)
    return tree


def save_state(payload: Any, path: Path) -> None:
    """Writes `encode(payload)` with `torch.save`.

    Raises:
        UnsafePayloadError: see `encode`.
        OSError: the file could not be written.
    """
    import torch

    torch.save(encode(payload), path)


def load_state(path: Path, format_version: int, map_location: str = "cpu") -> Any:
    """Reads a state file without unpickling code.

    Args:
        path: The state file.
        format_version: The manifest's version; 1 allows numpy's array reconstructors.
        map_location: Device the tensors are loaded onto.

    Raises:
        UnsafePayloadError: the file asks for anything but plain data (nothing was executed).
    """
    import torch

    allowed = _LEGACY_NUMPY_GLOBALS if format_version == LEGACY_FORMAT_VERSION else []
    try:
        with torch.serialization.safe_globals(allowed):
            tree = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise UnsafePayloadError(
            f"{path} is not plain data (it asks for {_refused(err)}); refused, nothing was run"
        ) from err
    return decode(tree)


def _refused(err: Exception) -> str:
    """What torch's restricted unpickler refused to import, call or build."""
    match = re.search(r"GLOBAL (\S+)|but got <class '([^']+)'>", str(err))
    if match:
        return match.group(1) or match.group(2)
    return "an object the restricted unpickler does not allow"
