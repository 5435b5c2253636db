"""The paper's inference with the released files: context video + cameras + caption -> target video.

HyDRAPipeline.__call__ (diffsynth/pipelines/HyDRA.py) on our parts: the Wan2.1 VAE encodes the context
(tiled as the official pipeline tiles it), umT5 embeds the caption and the official negative prompt, the
DiT denoises the target from the seed's noise with the official sampler and CFG (official/sampling.py), the
VAE decodes it, and frames are turned into bytes as the official tensor2video does ((x + 1) 127.5, clipped,
truncated). It offers WorldPipeline's `generate`, so `hybridmem sample` and `hybridmem eval` drive either.

    pipeline = OfficialPipeline.from_release("ckpts", device="cuda", dtype=torch.bfloat16)
    frames = pipeline.generate(context_frames, context_cameras, target_cameras, intrinsics,
                               seed=0, caption="A man walks ...")          # "Tt H W 3" uint8

Shape glossary: T video frames, F latent frames (Fc context, Ft target), C latent channels (16), h/w latent
grid (H/8, W/8), L caption tokens (512), Dc caption width (4096).
"""

from __future__ import annotations

import numpy as np

from hybridmem.errors import DataError

TEMPORAL_STRIDE = 4  # Wan2.1's VAE: 1 + 4k frames -> 1 + k latent frames
SPATIAL_FACTOR = 8
PATCH = 2  # the DiT's spatial patch: frame sizes are multiples of SPATIAL_FACTOR * PATCH = 16
PAPER_SIZE = (832, 480)  # (width, height) the paper's model was trained and is sampled at
GIB = 1024**3


class OfficialPipeline:
    """The released DiT, VAE, text encoder and tokenizer on one device."""

    temporal_stride = TEMPORAL_STRIDE

    def __init__(
        self,
        world_model,
        vae,
        text_encoder,
        tokenizer,
        device="cpu",
        steps: int = 50,
        guidance: float = 5.0,
        negative_prompt: str | None = None,
    ):
        import torch

        from hybridmem.official.text import OFFICIAL_NEGATIVE_PROMPT

        self.device = torch.device(device)
        self.world_model = world_model.to(self.device).eval()
        self.vae = vae
        self.text_encoder = text_encoder
        self.tokenizer = tokenizer
        self.steps = steps
        self.guidance = guidance
        self.negative_prompt = OFFICIAL_NEGATIVE_PROMPT if negative_prompt is None else negative_prompt

    @classmethod
    def from_release(
        cls, release, device="cpu", dtype=None, checkpoint=None, ema: bool = True, **defaults
    ) -> OfficialPipeline:
        """Load every part of `release` in `dtype` (default float32; the official inference runs bfloat16)
        on `device` ("auto", "cpu", "cuda", "cuda:N": resolved by hybridmem.device.resolve_device, as
        WorldPipeline does).

        release: the folder of the released files, or the OfficialRelease find_release made of it (a caller
        that found it already, as `sample --official`'s plan does, passes that and it is not found again).
        checkpoint: a run fine-tuned from this release (`train world --official`), whose DiT (EMA weights
        unless ema=False) replaces the release's. (Its VAE check hashes the release's VAE file once a
        process: runlock.file_sha256 keeps the digest.)
        """
        import torch

        from hybridmem.device import resolve_device
        from hybridmem.official.release import OfficialRelease, find_release, load_release_dit
        from hybridmem.official.text import load_text_encoder, load_tokenizer
        from hybridmem.official.vae import load_wan_vae

        device = resolve_device(str(device))  # `eval --device auto` passes the name as given
        dtype = dtype or torch.float32
        if not isinstance(release, OfficialRelease):
            release = find_release(release)
        if checkpoint is None:
            world_model = load_release_dit(release, dtype=dtype, device=device)
        else:
            from hybridmem.official.finetune import load_finetuned_dit

            world_model = load_finetuned_dit(checkpoint, release, dtype=dtype, device=device, ema=ema)
        vae = load_wan_vae(release.vae_file, release.vae_config, dtype=dtype, device=device)
        text_encoder = load_text_encoder(
            release.text_encoder_file, release.text_config, dtype=dtype, device=device
        )
        tokenizer = load_tokenizer(release.tokenizer_folder)
        return cls(world_model, vae, text_encoder, tokenizer, device, **defaults)

    @property
    def dtype(self):
        return next(self.world_model.parameters()).dtype

    # 1. pieces

    def embed(self, prompts: list[str]):
        """Prompts -> umT5 embeddings "B L Dc" (rows past each prompt zero), in the DiT's dtype."""
        import torch

        ids, mask = self.tokenizer(prompts)
        with torch.no_grad():
            context = self.text_encoder.encode_prompt(ids.to(self.device), mask.to(self.device))
        return context.to(self.dtype)

    def encode(self, frames: "T H W 3"):
        """uint8 frames -> latents "1 F C h w" (the official normalisation)."""
        import torch
        from einops import rearrange

        video = torch.from_numpy(np.ascontiguousarray(frames)).to(self.device)
        video = rearrange(video, "t h w c -> 1 c t h w").to(self.dtype) / 127.5 - 1.0  # 1 3 T H W
        with torch.no_grad():
            latents = self.vae.encode(video)  # 1 C F h w
        return rearrange(latents, "b c f h w -> b f c h w")

    def decode(self, latents) -> np.ndarray:
        """Latents "1 F C h w" -> uint8 frames "T H W 3", as the official tensor2video makes them."""
        import torch
        from einops import rearrange

        from hybridmem.models.checkpoint import check_model_output

        check_model_output(latents, "generation: the denoised latents", "the world model")
        with torch.no_grad():
            video = self.vae.decode(rearrange(latents, "b f c h w -> b c f h w"))  # 1 3 T H W in [-1, 1]
        check_model_output(video, "generation: the decoded frames", "the VAE")
        frames = ((video[0].float() + 1) * 127.5).clip(0, 255)  # 3 T H W; truncated below, as official
        return rearrange(frames, "c t h w -> t h w c").cpu().numpy().astype(np.uint8)

    # 2. the one-call API, WorldPipeline's

    def check_segment_length(self, count: int, name: str) -> None:
        if count < 1 or (count - 1) % TEMPORAL_STRIDE:
            raise DataError(
                f"{name}: {count} frames; Wan2.1's VAE needs 4k+1 frames per segment (the paper: 77)"
            )

    def generate(
        self,
        context_frames: "Tc H W 3",
        context_cameras: "Tc 4 4",
        target_cameras: "Tt 4 4",
        intrinsics: "4" = None,
        seed: int = 0,
        steps: int | None = None,
        shift: float | None = None,
        guidance: float | None = None,
        caption: str = "",
        progress: bool = True,
        log=None,
        caption_embedding=None,
    ) -> np.ndarray:
        """The target video "Tt H W 3" uint8 seen from `target_cameras` (the official model reads no
        intrinsics: they are accepted and unused). caption_embedding: a WorldPipeline argument, refused."""
        import torch

        from hybridmem.errors import ConfigError
        from hybridmem.official.cameras import latent_frame_cameras
        from hybridmem.official.sampling import official_denoise, official_noise

        if caption_embedding is not None:
            raise ConfigError(
                "the official model embeds its caption itself: pass caption text, not an embedding"
            )
        log = log or (lambda line: None)
        self.check_segment_length(len(context_frames), "context_frames")
        self.check_segment_length(len(target_cameras), "target_cameras")
        height, width = context_frames.shape[1:3]
        multiple = SPATIAL_FACTOR * PATCH
        if height % multiple or width % multiple:
            raise DataError(
                f"context_frames: size {width}x{height} must be a multiple of {multiple} both ways"
            )
        guidance = self.guidance if guidance is None else guidance
        steps = self.steps if steps is None else steps
        log(f"embedding the caption and the negative prompt ({'CFG ' + format(guidance, 'g')})")
        prompts = [caption] + ([self.negative_prompt] if guidance != 1.0 else [])
        embeddings = self.embed(prompts)  # P L Dc
        positive = embeddings[:1]
        negative = embeddings[1:] if guidance != 1.0 else None
        log(f"encoding the context ({len(context_frames)} frames, {width}x{height})")
        context_latents = self.encode(context_frames)  # 1 Fc C h w
        cameras = latent_frame_cameras(context_cameras, target_cameras)  # F 4 4
        camera_tensor = torch.as_tensor(cameras, dtype=torch.float32, device=self.device)[None]  # 1 F 4 4
        target_latent_frames = (len(target_cameras) - 1) // TEMPORAL_STRIDE + 1
        _, _, channels, latent_height, latent_width = context_latents.shape
        noise = official_noise(seed, target_latent_frames, latent_height, latent_width, channels).to(
            self.device
        )
        log(f"denoising {target_latent_frames} latent frames, {steps} steps (official sampler, HyDRA memory)")
        latents = official_denoise(
            self.world_model,
            context_latents,
            noise,
            camera_tensor,
            positive,
            negative,
            steps,
            guidance,
            shift,
            progress=progress,
        )
        log(f"decoding {len(target_cameras)} frames")
        return self.decode(latents)


def estimate_peak_bytes(
    release, width: int, height: int, context: int, target: int, dtype_bytes: int
) -> dict:
    """Peak memory of `OfficialPipeline.generate` on one device, known before anything is loaded: every
    part's weights (all stay loaded, so a benchmark of many clips embeds each caption without reloading),
    one DiT block's live activations over the whole sequence, and the VAE decoder's widest stage on one
    official tile. An estimate: the sampler refuses a run whose estimate exceeds the memory available
    (measured: 15.5 GiB estimated, 13.5 GiB peak RSS for the real layout at 160x96 in bf16 on the CPU, where
    the kernel may drop memory-mapped weight pages it can read back)."""
    import torch

    from hybridmem.models.world import WorldModel

    config = release.dit_config()
    with torch.device("meta"):
        dit_parameters = sum(p.numel() for p in WorldModel(config).parameters())
    text = release.text_config
    text_parameters = text.vocab * text.dim + text.num_layers * (
        4 * text.dim * text.dim_attn + 3 * text.dim * text.dim_ffn
    )
    vae = release.vae_config
    vae_parameters = 127_000_000 * (vae.base_dim / 96) ** 2  # Wan2.1's VAE: 127 M at base width 96
    latent_frames = (context - 1) // TEMPORAL_STRIDE + 1 + (target - 1) // TEMPORAL_STRIDE + 1
    tokens = latent_frames * (height // (SPATIAL_FACTOR * PATCH)) * (width // (SPATIAL_FACTOR * PATCH))
    # the residual stream, the block input, q, k, v (and q without RoPE), the attention output, the FFN
    dit_activations = tokens * (7 * config.dim + config.ffn_dim) * dtype_bytes
    tile_pixels = min(height, 8 * 30) * min(width, 8 * 52) * 4  # one official tile, 4 frames at a time
    vae_activations = 6 * tile_pixels * vae.base_dim * max(vae.dim_mult) * dtype_bytes
    weights = (dit_parameters + text_parameters + vae_parameters) * dtype_bytes
    return {
        "dit_parameters": dit_parameters,
        "text_parameters": text_parameters,
        "weights": weights,
        "activations": max(dit_activations, vae_activations),
        "peak": weights + max(dit_activations, vae_activations) + 0.6 * GIB,  # + the process itself
    }
