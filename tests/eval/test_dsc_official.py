"""The official DSC definition against an independent, slow re-implementation of the official eval_dsc.py.

The reference below follows the official script's steps with other code: boxes from every subject pixel of
a frame, normalised by the frame size; transformers' own CLIPImageProcessor (PIL backend, which the
official `CLIPProcessor` runs); the vision tower's patch tokens; a scalar-loop RoIAlign with torchvision's
semantics (aligned, sampling ratio -1); mean over bins, L2-normalise, mean of all pairwise similarities.
It runs on a tiny randomly initialised CLIP (tests/tiny.py; 64 px input, 8 px patches: an 8 x 8 grid, so a
large box takes 2 samples per bin side and the adaptive grid is exercised).
"""

import math

import numpy as np
import pytest
import torch

from hybridmem.eval import dsc
from hybridmem.eval.features import CLIP_FOLDER, ClipEncoder, clip_processor_pixels
from hybridmem.eval.metrics import boxes_from_masks

IMAGE_SIZE = 64


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory):
    from tiny import save_tiny_clip  # here: benchmarks/dsc_official_check.py loads this file without tests/

    return save_tiny_clip(
        tmp_path_factory.mktemp("clip") / CLIP_FOLDER, image_size=IMAGE_SIZE, vocab_size=32, seed=1
    )


def _processor(size: int = IMAGE_SIZE):
    """What the official `CLIPProcessor.from_pretrained` builds for a CLIP of input size `size`."""
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    return CLIPImageProcessorPil(size={"shortest_edge": size}, crop_size={"height": size, "width": size})


# --- the reference --------------------------------------------------------------------------------


def _bilinear(feature_map, y, x):
    """One sample of a "C H W" map, torchvision's bilinear_interpolate."""
    _, height, width = feature_map.shape
    if y < -1.0 or y > height or x < -1.0 or x > width:
        return torch.zeros(feature_map.shape[0], dtype=torch.float64)
    y, x = max(y, 0.0), max(x, 0.0)
    y0, x0 = int(y), int(x)
    if y0 >= height - 1:
        y0 = y1 = height - 1
        y = float(y0)
    else:
        y1 = y0 + 1
    if x0 >= width - 1:
        x0 = x1 = width - 1
        x = float(x0)
    else:
        x1 = x0 + 1
    ly, lx = y - y0, x - x0
    return (
        (1 - ly) * (1 - lx) * feature_map[:, y0, x0]
        + (1 - ly) * lx * feature_map[:, y0, x1]
        + ly * (1 - lx) * feature_map[:, y1, x0]
        + ly * lx * feature_map[:, y1, x1]
    )


def _roi_mean_adaptive(feature_map, box, bins=7):
    """Mean over the 7x7 bins of torchvision roi_align(aligned=True, sampling_ratio=-1) for one box."""
    x0, y0, x1, y1 = box
    start_x, start_y = x0 - 0.5, y0 - 0.5
    bin_w, bin_h = (x1 - x0) / bins, (y1 - y0) / bins
    grid_w, grid_h = math.ceil((x1 - x0) / bins), math.ceil((y1 - y0) / bins)
    total = torch.zeros(feature_map.shape[0], dtype=torch.float64)
    for ph in range(bins):
        for pw in range(bins):
            cell = torch.zeros_like(total)
            for iy in range(grid_h):
                for ix in range(grid_w):
                    y = start_y + ph * bin_h + (iy + 0.5) * bin_h / grid_h
                    x = start_x + pw * bin_w + (ix + 0.5) * bin_w / grid_w
                    cell += _bilinear(feature_map, y, x)
            total += cell / max(grid_h * grid_w, 1)
    return total / bins**2


def _reference_features(model, frames, normalised_boxes):
    valid = [index for index, box in enumerate(normalised_boxes) if box[0] >= 0]
    if not valid:
        raise ValueError("No valid subject boxes were provided.")
    processor = _processor(model.config.vision_config.image_size)
    pixel_values = processor([frames[i] for i in valid], return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        tokens = model.vision_model(pixel_values=pixel_values).last_hidden_state[:, 1:, :]
    side = int(round(tokens.shape[1] ** 0.5))
    maps = tokens.reshape(len(valid), side, side, -1).permute(0, 3, 1, 2).double()
    features = []
    for row, index in enumerate(valid):
        box = [value * side for value in normalised_boxes[index]]
        features.append(_roi_mean_adaptive(maps[row], box))
    features = torch.stack(features)
    return features / features.norm(dim=-1, keepdim=True)


def _reference_boxes(instance_ids):
    """The official boxes: bounding rectangle of every subject pixel, normalised; -1 when there is none."""
    boxes = []
    height, width = instance_ids.shape[1:]
    for frame_ids in instance_ids:
        rows, cols = np.nonzero(frame_ids > 0)
        if rows.size == 0:
            boxes.append([-1.0] * 4)
        else:
            x, y = cols.min(), rows.min()
            w, h = cols.max() - x + 1, rows.max() - y + 1
            boxes.append([x / width, y / height, (x + w) / width, (y + h) / height])
    return boxes


def reference_dsc(model, context, predicted, ground_truth, context_ids, target_ids):
    context_features = _reference_features(model, list(context), _reference_boxes(context_ids))
    target_boxes = _reference_boxes(target_ids)
    predicted_features = _reference_features(model, list(predicted), target_boxes)  # --boxes gt
    gt_features = _reference_features(model, list(ground_truth), target_boxes)
    return {
        "dsc_ctx": float((predicted_features @ context_features.T).mean()),
        "dsc_gt": float((predicted_features @ gt_features.T).mean()),
    }


# --- scenes ---------------------------------------------------------------------------------------


def _scene(height, width, frames, seed):
    """Two textured subjects moving over a textured background; frames 0-1 without any subject."""
    rng = np.random.default_rng(seed)
    video = np.repeat(rng.integers(0, 256, size=(1, height, width, 3), dtype=np.uint8), frames, axis=0)
    ids = np.zeros((frames, height, width), dtype=np.uint8)
    patches = [rng.integers(0, 256, size=(height // 3, width // 4, 3), dtype=np.uint8) for _ in range(2)]
    for t in range(2, frames):
        for subject, patch in enumerate(patches, start=1):
            y = (3 * t + 11 * subject) % (height - patch.shape[0])
            x = (5 * t * subject + 7) % (width - patch.shape[1])
            video[t, y : y + patch.shape[0], x : x + patch.shape[1]] = patch
            ids[t, y : y + patch.shape[0], x : x + patch.shape[1]] = subject
    return video, ids


def _boxes_by_subject(ids):
    return {subject: boxes_from_masks(ids == subject) for subject in (1, 2)}


@pytest.mark.parametrize("height, width", [(72, 72), (48, 80), (90, 56)])
def test_official_dsc_matches_slow_reference(clip_folder, height, width):
    from transformers import CLIPModel

    encoder = ClipEncoder(clip_folder)
    model = CLIPModel.from_pretrained(clip_folder).eval()
    video, ids = _scene(height, width, frames=9, seed=height + width)
    context, context_ids = video[:4], ids[:4]
    ground_truth, target_ids = video[4:], ids[4:]
    noise = np.random.default_rng(0).integers(-40, 40, size=ground_truth.shape)
    predicted = np.clip(ground_truth.astype(int) + noise, 0, 255).astype(np.uint8)
    target_boxes = _boxes_by_subject(target_ids)
    ours = dsc.dsc_scores(
        encoder, predicted, ground_truth, context, target_boxes, target_boxes, _boxes_by_subject(context_ids)
    )
    reference = reference_dsc(model, context, predicted, ground_truth, context_ids, target_ids)
    assert abs(ours["dsc_ctx"] - reference["dsc_ctx"]) < 1e-5
    assert abs(ours["dsc_gt"] - reference["dsc_gt"]) < 1e-5
    assert ours["dsc_frames"] == {"predicted": 5, "ground_truth": 5, "context": 2}
    # the per-subject definition is a different measurement on these two-subject frames
    per_subject = dsc.dsc_scores(
        encoder,
        predicted,
        ground_truth,
        context,
        target_boxes,
        target_boxes,
        _boxes_by_subject(context_ids),
        definition="per-subject",
    )
    assert abs(per_subject["dsc_gt"] - ours["dsc_gt"]) > 1e-4


@pytest.mark.parametrize("height, width", [(72, 72), (48, 80), (90, 56), (64, 64)])
def test_clip_processor_pixels_equal_transformers_processor(height, width):
    frames = np.random.default_rng(height).integers(0, 256, size=(2, height, width, 3), dtype=np.uint8)
    expected = _processor()(list(frames), return_tensors="pt")["pixel_values"]
    ours = clip_processor_pixels(frames, IMAGE_SIZE)
    assert ours.dtype == torch.float32 and ours.shape == (2, 3, IMAGE_SIZE, IMAGE_SIZE)
    torch.testing.assert_close(ours, expected, rtol=0, atol=1e-6)


def test_no_visible_subject_is_undefined_as_in_the_official_script(clip_folder):
    from transformers import CLIPModel

    encoder = ClipEncoder(clip_folder)
    video, ids = _scene(48, 48, frames=6, seed=3)
    context, context_ids = video[:2], ids[:2]  # frames 0-1 show no subject
    target_boxes = _boxes_by_subject(ids[2:])
    scores = dsc.dsc_scores(
        encoder, video[2:], video[2:], context, target_boxes, target_boxes, _boxes_by_subject(context_ids)
    )
    assert math.isnan(scores["dsc_ctx"]) and math.isnan(scores["dsc_gt"])
    assert "context" in scores["dsc_undefined"] and "raises ValueError" in scores["dsc_undefined"]
    with pytest.raises(ValueError, match="No valid subject boxes"):
        reference_dsc(
            CLIPModel.from_pretrained(clip_folder), context, video[2:], video[2:], context_ids, ids[2:]
        )


def test_union_boxes_bound_every_subject():
    first = np.array([[1.0, 2.0, 5.0, 6.0], [np.nan] * 4, [np.nan] * 4])
    second = np.array([[3.0, 0.0, 9.0, 4.0], [2.0, 2.0, 3.0, 3.0], [np.nan] * 4])
    union = dsc.union_boxes({1: first, 2: second}, 3)
    np.testing.assert_array_equal(union[:2], [[1.0, 0.0, 9.0, 6.0], [2.0, 2.0, 3.0, 3.0]])
    assert np.isnan(union[2]).all()


def test_unknown_definition_lists_the_valid_ones(clip_folder):
    from hybridmem.errors import ConfigError

    video, ids = _scene(48, 48, frames=4, seed=0)
    with pytest.raises(ConfigError, match="official, per-subject"):
        dsc.dsc_scores(None, video, video, video, {}, {}, {}, definition="mine")
