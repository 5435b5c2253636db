"""The in-memory form of one HM-World sample, whatever layout it was read from.

Loaders (hybridmem.data.hmworld) convert every convention at the edge, so everything downstream sees:
OpenCV camera axes, metres, world z up, uint8 RGB frames. Shape letters: T video frames, H/W pixels,
S subjects.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hybridmem.data.counterfactual import Counterfactuals


@dataclass
class SubjectTrack:
    """One moving subject over the whole clip (context then target frames)."""

    subject_id: int  # 1-based instance id, as in `Clip.instance_ids`
    name: str  # taxonomy name, for example "human_03"; "unknown" when the layout does not say
    positions: np.ndarray  # "T 3" float64, metres, world frame, subject's ground-contact point
    headings: np.ndarray  # "T" float64, radians, yaw about world z, 0 = facing +x
    boxes: np.ndarray | None = None  # "T 4" float64 pixel (x0, y0, x1, y1); NaN where not visible
    visible_fraction: np.ndarray | None = None  # "T" float64 in [0, 1]


@dataclass
class Event:
    """A subject leaving or entering the view; `frame` indexes the whole clip (context then target)."""

    subject_id: int
    kind: str  # "exit" or "entry"
    frame: int


@dataclass
class Clip:
    """A context segment followed by a target segment, on one time axis of T = context + target frames."""

    frames: np.ndarray  # "T H W 3" uint8 RGB
    cameras: np.ndarray  # "T 4 4" float64 camera-to-world, OpenCV axes, metres
    intrinsics: np.ndarray  # "4" float64 (fx, fy, cx, cy) in pixels of `frames`
    context_frames: int  # frames [0, context_frames) are the context, the rest the target
    fps: float
    subjects: list[SubjectTrack] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    instance_ids: np.ndarray | None = None  # "T H W" uint8, 0 = background, k = subject_id k
    caption: str = ""
    metadata: dict = field(default_factory=dict)
    source: str = ""  # folder it was read from
    # erased / frozen renders of the re-entering subject (hybridmem.data.counterfactual); None for train
    # clips, older clips and the released layout, with the reason in counterfactuals_note
    counterfactuals: Counterfactuals | None = None
    counterfactuals_note: str = ""

    @property
    def num_frames(self) -> int:
        return self.frames.shape[0]

    @property
    def target_frames(self) -> int:
        return self.num_frames - self.context_frames

    @property
    def context(self) -> slice:
        return slice(0, self.context_frames)

    @property
    def target(self) -> slice:
        return slice(self.context_frames, self.num_frames)
