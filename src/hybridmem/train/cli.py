"""`hybridmem train {world,vae}`: the training commands (the loops live in train/world.py and train/vae.py).

hybridmem train vae --data runs/world --preset tiny --out runs/vae --steps 2000
hybridmem train world --cache runs/cache/train --memory hydra --preset tiny --out runs/world_hydra
torchrun --nproc_per_node 4 -m hybridmem.cli train world ...      # DDP
"""

from __future__ import annotations

import argparse

from hybridmem.train.config import (
    VaeTrainConfig,
    WorldTrainConfig,
    add_vae_arguments,
    add_world_arguments,
    config_from_args,
)

WORLD_DOC = """Flow-matching training of the world model on a latent cache (see hybridmem/train/world.py).

    hybridmem train world --cache runs/cache/train --memory hydra --preset tiny --out runs/world_hydra \\
        --steps 2000 --batch-size 4 --lr 1e-4 --warmup 200 --save-every 500 --val-every 250
    hybridmem train world ... --out runs/world_hydra --resume
    torchrun --nproc_per_node 8 -m hybridmem.cli train world ... --precision bf16
"""

VAE_DOC = """Training of the causal video VAE on clips (see hybridmem/train/vae.py).

    hybridmem train vae --data runs/world --preset tiny --out runs/vae --steps 2000 --val-every 250
    hybridmem train vae ... --out runs/vae --resume
"""


def run_world(args: argparse.Namespace) -> int:
    from hybridmem.train.world import train_world

    train_world(config_from_args(WorldTrainConfig, args))
    return 0


def run_vae(args: argparse.Namespace) -> int:
    from hybridmem.train.vae import train_vae

    train_vae(config_from_args(VaeTrainConfig, args))
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser("train", help="train the VAE or the world model")
    commands = parser.add_subparsers(dest="train_command", metavar="MODEL", required=True)
    world_parser = commands.add_parser(
        "world",
        help="flow-matching training of the world model on a latent cache",
        description=WORLD_DOC,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_world_arguments(world_parser)
    world_parser.set_defaults(func=run_world)
    vae_parser = commands.add_parser(
        "vae",
        help="train the video VAE on a dataset split",
        description=VAE_DOC,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_vae_arguments(vae_parser)
    vae_parser.set_defaults(func=run_vae)
