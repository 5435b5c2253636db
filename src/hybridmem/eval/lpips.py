"""LPIPS (Zhang et al. 2018) with AlexNet or VGG16 backbones written in plain torch.

The backbones copy torchvision's `features` layer layout, so a torchvision state dict (keys
`features.0.weight` ...; `classifier.*` keys are ignored) loads unchanged, and the linear heads use the
LPIPS v0.1 layout (`lin0.model.1.weight` ... a 1x1 conv without bias behind a dropout), so the released
`alex.pth`/`vgg.pth` files load unchanged. Nothing is downloaded; weights live under the weights folder:

    WEIGHTS/lpips/alex.pth       LPIPS v0.1 linear heads for AlexNet (from the `lpips` package, weights/v0.1)
    WEIGHTS/lpips/alexnet.pth    torchvision AlexNet ImageNet weights (alexnet-owt-7be5be79.pth, renamed)
    WEIGHTS/lpips/vgg.pth        LPIPS v0.1 linear heads for VGG16
    WEIGHTS/lpips/vgg16.pth      torchvision VGG16 ImageNet weights (vgg16-397923af.pth, renamed)

Distance: images in [-1, 1] -> fixed scaling layer -> backbone activations at 5 taps -> unit-normalise over
channels -> squared difference -> 1x1 linear head -> mean over space -> sum over taps. Frames are compared at
their own resolution (no resize), as the reference implementation does.

Shape letters: N images, C channels, H/W pixels or feature grid.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from einops import rearrange
from torch import nn

from hybridmem.errors import CheckpointError, DataError
from hybridmem.eval.features import WeightsNotFound
from hybridmem.validation import check_choice

# LPIPS' ScalingLayer constants: ImageNet mean/std re-expressed for inputs in [-1, 1].
SCALING_SHIFT = (-0.030, -0.088, -0.188)
SCALING_SCALE = (0.458, 0.448, 0.450)
NORMALISE_EPS = 1e-10


def alexnet_features() -> nn.Sequential:
    """torchvision AlexNet `features` (indices must match for its state dict)."""
    return nn.Sequential(
        nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2),  # 0
        nn.ReLU(inplace=False),  # 1  tap relu1
        nn.MaxPool2d(kernel_size=3, stride=2),  # 2
        nn.Conv2d(64, 192, kernel_size=5, padding=2),  # 3
        nn.ReLU(inplace=False),  # 4  tap relu2
        nn.MaxPool2d(kernel_size=3, stride=2),  # 5
        nn.Conv2d(192, 384, kernel_size=3, padding=1),  # 6
        nn.ReLU(inplace=False),  # 7  tap relu3
        nn.Conv2d(384, 256, kernel_size=3, padding=1),  # 8
        nn.ReLU(inplace=False),  # 9  tap relu4
        nn.Conv2d(256, 256, kernel_size=3, padding=1),  # 10
        nn.ReLU(inplace=False),  # 11 tap relu5
        nn.MaxPool2d(kernel_size=3, stride=2),  # 12 (unused by LPIPS, kept for the layout)
    )


VGG16_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


def vgg16_features() -> nn.Sequential:
    """torchvision VGG16 `features`: conv3x3+ReLU pairs and max-pools in configuration D."""
    layers: list[nn.Module] = []
    in_channels = 3
    for item in VGG16_LAYOUT:
        if item == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(in_channels, item, kernel_size=3, padding=1), nn.ReLU(inplace=False)]
            in_channels = item
    return nn.Sequential(*layers)


# Smallest frame side each backbone can take up to its last tap (its pooling shrinks the map below 1 cell).
MIN_FRAME_SIDE = {"alex": 31, "vgg": 16}

# backbone name -> (builder, indices of the ReLUs whose outputs LPIPS compares, their channel counts,
#                   head file name, backbone file name)
BACKBONES = {
    "alex": (alexnet_features, (1, 4, 7, 9, 11), (64, 192, 384, 256, 256), "alex.pth", "alexnet.pth"),
    "vgg": (vgg16_features, (3, 8, 15, 22, 29), (64, 128, 256, 512, 512), "vgg.pth", "vgg16.pth"),
}


def _check_backbone(name: str) -> None:
    check_choice(name, sorted(BACKBONES), "LPIPS backbone")


class LinearHead(nn.Module):
    """LPIPS NetLinLayer: dropout then a 1x1 conv to one channel, no bias (keys `model.1.weight`)."""

    def __init__(self, channels: int):
        super().__init__()
        self.model = nn.Sequential(nn.Dropout(), nn.Conv2d(channels, 1, kernel_size=1, bias=False))

    def forward(self, squared_difference: "N C H W") -> "N 1 H W":
        return self.model(squared_difference)


class LPIPS(nn.Module):
    """Learned perceptual distance; `forward(a, b)` takes images "N 3 H W" in [-1, 1], returns "N"."""

    def __init__(self, backbone: str = "alex"):
        super().__init__()
        _check_backbone(backbone)
        builder, taps, channels, _, _ = BACKBONES[backbone]
        self.backbone_name = backbone
        self.taps = taps
        self.features = builder()
        for index, width in enumerate(channels):
            self.add_module(f"lin{index}", LinearHead(width))
        self.register_buffer("shift", torch.tensor(SCALING_SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(SCALING_SCALE).view(1, 3, 1, 1), persistent=False)
        self.eval()

    def activations(self, images: "N 3 H W") -> list:
        """Backbone outputs at the LPIPS taps, unit-normalised over channels."""
        x = (images - self.shift) / self.scale
        outputs = []
        for index, layer in enumerate(self.features[: self.taps[-1] + 1]):
            x = layer(x)
            if index in self.taps:
                norm = torch.sqrt((x**2).sum(dim=1, keepdim=True))  # "N 1 h w"
                outputs.append(x / (norm + NORMALISE_EPS))
        return outputs

    def forward(self, images_a: "N 3 H W", images_b: "N 3 H W") -> torch.Tensor:
        distance = images_a.new_zeros(images_a.shape[0])
        pairs = zip(self.activations(images_a), self.activations(images_b), strict=True)
        for index, (feature_a, feature_b) in enumerate(pairs):
            head = getattr(self, f"lin{index}")
            distance = distance + head((feature_a - feature_b) ** 2).mean(dim=(1, 2, 3))  # "N"
        return distance


def lpips_files(weights_dir: str | Path, backbone: str) -> tuple[Path, Path]:
    """(linear heads file, backbone file) expected for `backbone` under the weights folder."""
    _check_backbone(backbone)
    _, _, _, head_file, backbone_file = BACKBONES[backbone]
    folder = Path(weights_dir) / "lpips"
    return folder / head_file, folder / backbone_file


def _load_state(path: Path) -> dict:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unpickling failure means the same thing to the user
        raise CheckpointError(
            f"{path}: cannot be read as a torch state dict ({error}); re-download it"
        ) from error
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: expected a state dict (name -> tensor), got {type(state).__name__}")
    return state


def load_lpips(weights_dir: str | Path, backbone: str = "alex") -> LPIPS:
    """LPIPS with its backbone and heads read from `weights_dir/lpips/`; WeightsNotFound if absent."""
    head_path, backbone_path = lpips_files(weights_dir, backbone)
    for path in (head_path, backbone_path):
        if not path.is_file():
            raise WeightsNotFound(path)
    model = LPIPS(backbone)
    backbone_state = {
        key.removeprefix("features."): value
        for key, value in _load_state(backbone_path).items()
        if key.startswith("features.")
    }
    head_state = {key: value for key, value in _load_state(head_path).items() if key.startswith("lin")}
    try:
        model.features.load_state_dict(backbone_state)
        model.load_state_dict(head_state, strict=False)
    except RuntimeError as error:
        raise CheckpointError(
            f"{backbone_path} / {head_path}: do not match the {backbone} LPIPS layout ({error})"
        ) from error
    missing_heads = [
        f"lin{index}.model.1.weight" for index in range(5) if f"lin{index}.model.1.weight" not in head_state
    ]
    if missing_heads:
        raise CheckpointError(f"{head_path}: missing LPIPS head weights {missing_heads}")
    return model


@torch.no_grad()
def lpips_per_frame(model: LPIPS, pred: "T H W 3", target: "T H W 3", batch_size: int = 8) -> np.ndarray:
    """LPIPS distance per frame ("T") between two uint8 videos (0 for identical frames)."""
    smallest = MIN_FRAME_SIDE[model.backbone_name]
    if min(pred.shape[1:3]) < smallest:
        raise DataError(
            f"LPIPS-{model.backbone_name} needs frames of at least {smallest} px a side, got "
            f"{pred.shape[1]}x{pred.shape[2]}; evaluate at a larger resolution or use --lpips-backbone vgg"
        )
    device = next(model.parameters()).device
    distances = []
    for start in range(0, pred.shape[0], batch_size):
        pair = [
            rearrange(
                torch.from_numpy(np.ascontiguousarray(video[start : start + batch_size])),
                "n h w c -> n c h w",
            )
            .to(device)
            .float()
            / 127.5
            - 1.0
            for video in (pred, target)
        ]
        distances.append(model(*pair).cpu().double().numpy())
    return np.concatenate(distances)
