"""The paper's own model: Wan2.1-T2V-1.3B fine-tuned with HyDRA (H-EmbodVis/HyDRA), run through hybridmem.

The official DiT is our WorldModel with the official choices (`dit.official_dit_config`, the
`hydra-official` preset); this room holds what is specific to the released files: the key maps and the
importer of the official state dicts (`dit.py`), the Wan2.1 VAE on diffusers (`vae.py`), the umT5 text
encoder on transformers (`text.py`), the official camera convention (`cameras.py`), and the parity check
against numbers computed by the official code (`check.py`, `hybridmem official check DIR`).

Layer: below sample/train/eval (which use it), above models, diffusion and data (docs/ARCHITECTURE.md).
Nothing here downloads: every file comes from a local folder.
"""
