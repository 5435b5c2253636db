"""Frame feature extractors with local weights: CLIP ViT-B/16 (DSC, background consistency), DINO ViT-B/16
(subject consistency). Nothing is downloaded: models load with `local_files_only=True` from

    WEIGHTS/clip-vit-base-patch16/   a transformers CLIPModel folder (config.json + model.safetensors),
                                     e.g. a local copy of openai/clip-vit-base-patch16
    WEIGHTS/dino-vitb16/             a transformers ViTModel folder, e.g. a local copy of facebook/dino-vitb16
    WEIGHTS/lpips/...                see hybridmem.eval.lpips

WEIGHTS is `--weights-dir`, else the environment variable HYBRIDMEM_WEIGHTS, else DEFAULT_WEIGHTS_DIR
(~/.cache/hybridmem/weights). A missing folder raises `WeightsNotFound`, which the protocol turns into
"not computed: weights not found at PATH" in the report.

Preprocessing (S = the model's configured image size, 224 for the B/16 models; read from the config):
- CLIP image embeddings (background consistency), as VBench's clip_transform: resize the shorter side
  to S (bicubic, antialiased), centre-crop S x S, CLIP mean/std; embedding = visual_projection(post-
  layernorm class token), the same as CLIP's encode_image. (VBench itself loads CLIP ViT-B/32 here; we use
  the ViT-B/16 folder that DSC needs, one model for both.)
- DINO (subject consistency), as VBench's dino_transform: resize the shorter side to S (bilinear, no
  antialiasing), no crop, ImageNet mean/std, position embeddings interpolated; feature = the
  final-layernorm class token.
- CLIP patch tokens for DSC, two preprocessings (hybridmem.eval.dsc says which definition uses which):
  - `patch_tokens_cropped` (the official DSC): what the official eval_dsc.py gets from `CLIPProcessor`, i.e.
    transformers' CLIPImageProcessor with its PIL backend: resize with PIL bicubic on the uint8 image so the
    shorter side is S (the longer one int(S * long / short)), the result rounded back to uint8 by PIL;
    centre crop S x S at top = (h - S) // 2, left = (w - S) // 2; x * (1/255) in float64, cast to float32;
    (x - mean) / std in float32. On a non-square frame the crop drops the sides of the longer axis.
  - `patch_tokens_squashed` (the per-subject DSC): the whole frame resized (squashed) to S x S, torch bicubic
    antialiased, CLIP mean/std, so that a pixel box maps onto the patch grid by scaling x by grid_w / W and
    y by grid_h / H.
  Tokens are the vision tower's last hidden state without the class token (before the pooled-output
  layernorm), as `output.last_hidden_state[:, 1:]` in the official script.

Shape letters: T frames, H/W pixels, S model input size, h/w patch grid, D feature width.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange

from hybridmem.errors import HybridmemError

WEIGHTS_ENV = "HYBRIDMEM_WEIGHTS"
DEFAULT_WEIGHTS_DIR = Path("~/.cache/hybridmem/weights")
CLIP_FOLDER = "clip-vit-base-patch16"
DINO_FOLDER = "dino-vitb16"
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class WeightsNotFound(HybridmemError, FileNotFoundError):
    """A metric's weights are not on disk; `path` says where they were looked for."""

    def __init__(self, path: str | Path):
        self.path = str(path)
        super().__init__(f"weights not found at {self.path}")


def resolve_weights_dir(weights_dir: str | Path | None = None) -> Path:
    """--weights-dir, else $HYBRIDMEM_WEIGHTS, else ~/.cache/hybridmem/weights (user-expanded)."""
    chosen = weights_dir or os.environ.get(WEIGHTS_ENV) or DEFAULT_WEIGHTS_DIR
    return Path(chosen).expanduser()


def _model_folder(weights_dir: str | Path, name: str) -> Path:
    folder = Path(weights_dir) / name
    if not (folder / "config.json").is_file():
        raise WeightsNotFound(folder)
    return folder


def _normalise(images: "T 3 S S", mean: tuple, std: tuple) -> "T 3 S S":
    return (images - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


def frames_to_float(frames: "T H W 3") -> "T 3 H W":
    """uint8 frames -> float32 tensor in [0, 1], channels first."""
    return rearrange(torch.from_numpy(np.ascontiguousarray(frames)).float() / 255.0, "t h w c -> t c h w")


def resize_shorter_side(images: "T 3 H W", size: int, mode: str, antialias: bool = True) -> torch.Tensor:
    """Resize so the shorter side is `size` (torchvision Resize(int) rounding: int(size * long / short))."""
    height, width = images.shape[-2:]
    if height <= width:
        new_h, new_w = size, int(size * width / height)
    else:
        new_h, new_w = int(size * height / width), size
    return F.interpolate(images, size=(new_h, new_w), mode=mode, antialias=antialias, align_corners=False)


def centre_crop(images: "T 3 H W", size: int) -> "T 3 S S":
    height, width = images.shape[-2:]
    top, left = int(round((height - size) / 2.0)), int(round((width - size) / 2.0))
    return images[..., top : top + size, left : left + size]


def clip_processor_pixels(frames: "T H W 3", size: int) -> "T 3 S S":
    """CLIPProcessor-equivalent pixel values (float32): shorter side -> `size` with PIL bicubic on uint8,
    centre crop `size` x `size` (floor offsets), x / 255, CLIP mean/std; see the module docstring."""
    from PIL import Image

    mean = np.asarray(CLIP_MEAN, dtype=np.float32)
    std = np.asarray(CLIP_STD, dtype=np.float32)
    images = []
    for frame in np.asarray(frames, dtype=np.uint8):
        height, width = frame.shape[:2]
        short, long = min(height, width), max(height, width)
        new_long = int(size * long / short)  # truncation, as transformers' get_resize_output_image_size
        new_h, new_w = (new_long, size) if width <= height else (size, new_long)
        resized = np.asarray(Image.fromarray(frame).resize((new_w, new_h), resample=Image.BICUBIC))
        top, left = (new_h - size) // 2, (new_w - size) // 2
        crop = resized[top : top + size, left : left + size]  # "S S 3" uint8
        unit = (crop.astype(np.float64) * (1 / 255)).astype(np.float32)
        images.append((unit - mean) / std)  # float32 throughout, as transformers' normalize
    return torch.from_numpy(rearrange(np.stack(images), "t h w c -> t c h w").copy())


class ClipEncoder:
    """CLIP vision tower: image embeddings for background consistency, patch tokens for DSC."""

    def __init__(self, folder: str | Path, device: str = "cpu", batch_size: int = 16):
        from transformers import CLIPModel

        self.folder = Path(folder)
        self.model = CLIPModel.from_pretrained(self.folder, local_files_only=True).eval().to(device)
        self.device, self.batch_size = device, batch_size
        self.image_size = self.model.config.vision_config.image_size
        self.patch_size = self.model.config.vision_config.patch_size

    @classmethod
    def from_weights_dir(cls, weights_dir: str | Path, device: str = "cpu") -> ClipEncoder:
        return cls(_model_folder(weights_dir, CLIP_FOLDER), device)

    def _batches(self, images: "T 3 S S"):
        for start in range(0, images.shape[0], self.batch_size):
            yield images[start : start + self.batch_size].to(self.device)

    @torch.no_grad()
    def image_embeddings(self, frames: "T H W 3") -> "T D":
        """CLIP image embeddings (encode_image), shorter side resized and centre-cropped, not normalised."""
        images = resize_shorter_side(frames_to_float(frames), self.image_size, "bicubic").clamp(0.0, 1.0)
        images = _normalise(centre_crop(images, self.image_size), CLIP_MEAN, CLIP_STD)
        embeddings = []
        for batch in self._batches(images):
            pooled = self.model.vision_model(pixel_values=batch).pooler_output  # "t D_vision"
            embeddings.append(self.model.visual_projection(pooled).float().cpu())  # "t D"
        return torch.cat(embeddings)

    @property
    def grid_size(self) -> int:
        """Patch grid side h = w of an S x S input."""
        return self.image_size // self.patch_size

    def _patch_tokens(self, images: "T 3 S S") -> "T h w D":
        tokens = []
        for batch in self._batches(images):
            hidden = self.model.vision_model(pixel_values=batch).last_hidden_state  # "t (1 + h w) D"
            tokens.append(rearrange(hidden[:, 1:].float().cpu(), "t (h w) d -> t h w d", h=self.grid_size))
        if not tokens:
            return torch.zeros(0, self.grid_size, self.grid_size, self.model.config.vision_config.hidden_size)
        return torch.cat(tokens)

    @torch.no_grad()
    def patch_tokens_cropped(self, frames: "T H W 3") -> "T h w D":
        """Last-layer patch tokens (class token dropped) after CLIPProcessor's resize and centre crop."""
        return self._patch_tokens(clip_processor_pixels(frames, self.image_size))

    @torch.no_grad()
    def patch_tokens_squashed(self, frames: "T H W 3") -> "T h w D":
        """Last-layer patch tokens (class token dropped) of each whole frame squashed to S x S."""
        images = frames_to_float(frames)
        images = F.interpolate(
            images, size=(self.image_size, self.image_size), mode="bicubic", antialias=True
        )
        return self._patch_tokens(_normalise(images.clamp(0.0, 1.0), CLIP_MEAN, CLIP_STD))


class DinoEncoder:
    """DINO ViT class-token features for VBench subject consistency."""

    def __init__(self, folder: str | Path, device: str = "cpu", batch_size: int = 16):
        from transformers import ViTModel

        self.folder = Path(folder)
        self.model = (
            ViTModel.from_pretrained(self.folder, local_files_only=True, add_pooling_layer=False)
            .eval()
            .to(device)
        )
        self.device, self.batch_size = device, batch_size
        self.image_size = self.model.config.image_size

    @classmethod
    def from_weights_dir(cls, weights_dir: str | Path, device: str = "cpu") -> DinoEncoder:
        return cls(_model_folder(weights_dir, DINO_FOLDER), device)

    @torch.no_grad()
    def class_features(self, frames: "T H W 3") -> "T D":
        # VBench's dino_transform: Resize(224, antialias=False), bilinear
        images = resize_shorter_side(frames_to_float(frames), self.image_size, "bilinear", antialias=False)
        images = _normalise(images, IMAGENET_MEAN, IMAGENET_STD)
        features = []
        for start in range(0, images.shape[0], self.batch_size):
            batch = images[start : start + self.batch_size].to(self.device)
            hidden = self.model(pixel_values=batch, interpolate_pos_encoding=True).last_hidden_state
            features.append(hidden[:, 0].float().cpu())  # "t D" class token after the final layernorm
        return torch.cat(features)
