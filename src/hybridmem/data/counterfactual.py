"""Counterfactual renders of a clip's re-entering subject: what "vanished" and "frozen" would look like.

The paper names three failures of a subject that leaves the view and comes back: it vanished, it froze where
it was last seen, or it came back as someone else. A procedural generator can render the first two exactly,
as the same clip with one thing changed, so a benchmark can ask whether a generation is closer to the truth
than to each failure (hybridmem.eval.reentry):

    erased   the target segment with the re-entering subject removed (everything else, shadows of the other
             subjects included, is rendered from the same plan)
    frozen   the target segment with that subject held at its position, heading and gait phase of
             `last_seen_frame`, the last context frame in which it was visible before it left the view

Both are stored losslessly beside the clip in COUNTERFACTUALS_FILE, for the target frames only:

    subject_id       int64 scalar   instance id of the re-entering subject (as in ids.npz)
    last_seen_frame  int64 scalar   clip frame index (context) where it was last visible before its exit
    entry_frame      int64 scalar   clip frame index (target) where it re-enters
    erased_frames    "Tt H W 3" uint8   erased_ids   "Tt H W" uint8 (original ids; the subject's is absent)
    frozen_frames    "Tt H W 3" uint8   frozen_ids   "Tt H W" uint8

Train clips, clips rendered before counterfactuals existed and the released HM-World layout have none;
`Clip.counterfactuals_note` then says why.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hybridmem.errors import DataError

COUNTERFACTUALS_FILE = "counterfactuals.npz"
COUNTERFACTUAL_SPLITS = ("val", "test")  # the splits the generator renders them for (the benchmark's)
_SCALARS = ("subject_id", "last_seen_frame", "entry_frame")
_FRAMES = ("erased_frames", "frozen_frames")
_IDS = ("erased_ids", "frozen_ids")


@dataclass
class Counterfactuals:
    """The erased and frozen renders of one clip's target segment (see the module docstring)."""

    subject_id: int
    last_seen_frame: int
    entry_frame: int
    erased_frames: np.ndarray  # "Tt H W 3" uint8
    erased_ids: np.ndarray  # "Tt H W" uint8
    frozen_frames: np.ndarray  # "Tt H W 3" uint8
    frozen_ids: np.ndarray  # "Tt H W" uint8

    def check(self, target_frames: int, height: int, width: int, where: str = "counterfactuals") -> None:
        """Raise DataError naming the field unless every array has the target segment's shape and uint8."""
        for name in _FRAMES + _IDS:
            value = getattr(self, name)
            shape = (target_frames, height, width, 3) if name in _FRAMES else (target_frames, height, width)
            if not isinstance(value, np.ndarray) or value.shape != shape or value.dtype != np.uint8:
                got = (getattr(value, "shape", None), getattr(value, "dtype", None))
                raise DataError(f"{where}: '{name}' should be uint8 of shape {shape}, got {got}")
        if not 1 <= self.subject_id <= 254:
            raise DataError(f"{where}: 'subject_id' {self.subject_id} is not an instance id in [1, 254]")
        if np.any(self.erased_ids == self.subject_id):
            raise DataError(f"{where}: 'erased_ids' still shows subject {self.subject_id}")

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        arrays = {name: np.int64(getattr(self, name)) for name in _SCALARS}
        arrays.update({name: getattr(self, name) for name in _FRAMES + _IDS})
        np.savez_compressed(buffer, **arrays)
        return buffer.getvalue()


def save_counterfactuals(path: str | Path, counterfactuals: Counterfactuals) -> None:
    """Write the archive (callers write into a staging folder that is renamed into place as a whole)."""
    Path(path).write_bytes(counterfactuals.to_bytes())


def load_counterfactuals(path: str | Path, target_frames: int, height: int, width: int) -> Counterfactuals:
    """Read and check one archive; DataError naming the file and the field when it is malformed."""
    path = Path(path)
    from hybridmem import npyio

    # headers checked before anything is allocated; a missing array is named
    archive = npyio.read_npz(path, [*_SCALARS, *_FRAMES, *_IDS], fix="regenerate the clip")
    try:
        values = {name: int(archive[name]) for name in _SCALARS}
    except (TypeError, ValueError) as error:
        raise DataError(f"{path}: a scalar field is not one integer ({error}); regenerate the clip") from None
    values.update({name: archive[name] for name in _FRAMES + _IDS})
    counterfactuals = Counterfactuals(**values)
    counterfactuals.check(target_frames, height, width, where=str(path))
    return counterfactuals
