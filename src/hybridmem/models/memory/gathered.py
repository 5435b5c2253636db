"""Gathered attention: each query latent frame attends to the rows the retrieval policy chose for it.

retrieval.py decides which keys each query frame reads (its window's latent frames, its retrieved memory
slices, which retrieved slots are valid); this module only executes that decision fast, for all query
frames at once, in chunks, with a custom backward. It changes no result: tests compare it, forward and
backward, against per-frame attention (tests/models/test_memory_gathered.py), the per-frame HyDRA loop in
tests/hydra_reference.py and brute-force masked attention.

Shapes (docs/ARCHITECTURE.md's glossary): B batch, F latent frames, P tokens of one latent frame, a heads,
d head width, S memory slices, P' tokens of one slice, K retrieved slices. From retrieval.py: Wn window width
in latent frames, Q query latent frames. Defined here: Qc query frames of one chunk, G = Wn P + K P' keys a
query frame gathers, E = F P + S P' rows (entries) of one batch element's key table.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange

# ------------------------------------------------------------------------------------------- key table


def key_table(keys: torch.Tensor, memory_keys: torch.Tensor | None) -> torch.Tensor:
    """Every key a query may read, one row per token: "B a F P d" (+ "B a S P' d") -> "(B E) a d".

    E = F P + S P': the sequence's tokens first, then the memory slices' tokens. One gather from this table
    builds a chunk's whole key set, instead of gathering window and memory apart and concatenating them:
    every extra copy of the gathered keys costs memory traffic comparable to the attention itself on CPU.
    """
    parts = [rearrange(keys, "b a f p d -> b (f p) a d")]
    if memory_keys is not None:
        parts.append(rearrange(memory_keys, "b a s p d -> b (s p) a d"))
    return rearrange(torch.cat(parts, dim=1), "b e a d -> (b e) a d")


def token_indices(
    frames: torch.Tensor,
    tokens_per_frame: int,
    chosen: torch.Tensor | None,
    tokens_per_slice: int,
    memory_start: int,
    table_rows: int,
    batch: int,
) -> torch.Tensor:
    """Rows of `key_table` each query frame reads: "B Qc G", G = Wn P + K P', window tokens first.

    frames: "Qc Wn" window latent frames; chosen: "B Qc K" retrieved candidates, or None (no memory);
    memory_start: F P, the first memory row of a batch element; table_rows: E, the rows of one batch
    element (batch element b's rows start at b E).
    """
    device = frames.device
    frame_rows = frames[..., None] * tokens_per_frame + torch.arange(tokens_per_frame, device=device)
    rows = rearrange(frame_rows, "q w p -> 1 q (w p)").expand(batch, -1, -1)  # B Qc (Wn P)
    if chosen is not None:
        slice_rows = memory_start + chosen[..., None] * tokens_per_slice
        slice_rows = slice_rows + torch.arange(tokens_per_slice, device=device)  # B Qc K P'
        rows = torch.cat([rows, rearrange(slice_rows, "b q k p -> b q (k p)")], dim=-1)  # B Qc G
    return rows + torch.arange(batch, device=device)[:, None, None] * table_rows  # B Qc G


def slot_mask(valid: torch.Tensor | None, tokens_per_slice: int, keys_per_query: int) -> torch.Tensor | None:
    """Which of the G gathered keys each query frame may read: "B Q G" bool, or None when all of them.

    valid: "B Q K" retrieved slots; the window's Wn P keys, first in every row, are always readable.
    """
    if valid is None or bool(valid.all()):
        return None
    memory_mask = valid.repeat_interleave(tokens_per_slice, dim=-1)  # B Q (K P')
    window_mask = memory_mask.new_ones(memory_mask.shape[:-1] + (keys_per_query - memory_mask.shape[-1],))
    return torch.cat([window_mask, memory_mask], dim=-1)  # B Q G


# The CPU flash-attention kernels behind scaled_dot_product_attention, called directly so that backward can
# reuse forward's output and log-sum-exp instead of recomputing the attention (about a fifth of the
# forward+backward time). Private ATen ops: used only where present and on CPU, with the public recompute
# path as the fallback (tests run both).
CPU_FLASH_FORWARD = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
CPU_FLASH_BACKWARD = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu_backward", None)
USE_CPU_FLASH = CPU_FLASH_FORWARD is not None and CPU_FLASH_BACKWARD is not None


def chunks(num_queries: int, chunk: int):
    """(begin, end) of consecutive query-frame chunks."""
    for begin in range(0, num_queries, chunk):
        yield begin, min(begin + chunk, num_queries)


@dataclass(frozen=True)
class TableLayout:
    """Where things sit in a key table ("(B E) a d", see `key_table`): frames' tokens, then slices' tokens."""

    batch: int
    num_frames: int  # F
    tokens_per_frame: int  # P
    num_slices: int  # S (0 without memory)
    tokens_per_slice: int  # P'

    @property
    def memory_start(self) -> int:
        return self.num_frames * self.tokens_per_frame

    @property
    def rows(self) -> int:  # E, the rows of one batch element
        return self.memory_start + self.num_slices * self.tokens_per_slice


def scatter_rows(
    grad_table: torch.Tensor,
    grad_gathered: torch.Tensor,
    frames: torch.Tensor,
    chosen: torch.Tensor | None,
    layout: TableLayout,
) -> None:
    """Add the gradient of gathered rows back onto the table they were gathered from (in place).

    grad_table: "(B E) a d"; grad_gathered: "(B Qc G) a d" laid out as `token_indices` gathered it;
    frames: "Qc Wn"; chosen: "B Qc K" or None. The adds run over whole latent frames and whole slices
    (rows of P a d numbers), not single tokens: index_add_ over token rows of a d numbers was ten times
    slower on CPU, and it was most of the backward.
    """
    batch, (num_queries, window) = layout.batch, frames.shape
    width = grad_table.shape[1] * grad_table.shape[2]  # a d
    per_batch = grad_table.view(batch, layout.rows, width)
    frame_grads = per_batch[:, : layout.memory_start].view(batch, layout.num_frames, -1)  # B F (P a d)
    gathered = grad_gathered.view(batch, num_queries, -1, width)  # B Qc G (a d)
    window_tokens = window * layout.tokens_per_frame
    window_grads = gathered[:, :, :window_tokens].reshape(batch, num_queries, window, -1)  # B Qc Wn (P a d)
    # window offset w of every query frame in one index_add_ (frames repeat only within one offset's
    # column at the clamped ends, which index_add_ sums correctly)
    for offset in range(window):
        frame_grads.index_add_(1, frames[:, offset], window_grads[:, :, offset])
    if chosen is None:
        return
    slice_grads = per_batch[:, layout.memory_start :].view(batch, layout.num_slices, -1)  # B S (P' a d)
    memory_grads = gathered[:, :, window_tokens:].reshape(batch, -1, layout.tokens_per_slice * width)
    for b in range(batch):  # batch elements retrieve different slices; B is small (not a frame loop)
        # along dim 1 of a 1-element batch, not dim 0: CPU index_add_ on dim 0 becomes a scatter_add_ that
        # sorts an index as large as the source, 50x slower here
        slice_grads[b : b + 1].index_add_(1, chosen[b].reshape(-1), memory_grads[b : b + 1])  # (Qc K) rows


class GatheredAttention(torch.autograd.Function):
    """Query frames attend to rows of a key table, chunk by chunk, without keeping the gathered keys.

    queries "B a Q P d"; key_rows, value_rows "(B E) a d"; frames "Q Wn" window latent frames; chosen
    "B Q K" retrieved slices or None; mask "B Q G" bool or None; layout: TableLayout; chunk: query frames
    per step; keep_for_backward: whether a backward will follow. Returns "B a Q P d".

    Why a Function and not autograd through index_select: autograd would keep every chunk's gathered keys
    and values for backward ((Wn P + K P') / P times k and v: several times what full attention keeps) and
    give each chunk's gradient its own zero-filled copy of the table. Here forward gathers into one reused
    buffer; backward re-gathers each chunk, runs the attention backward (from the saved log-sum-exp on CPU,
    else by recomputing the chunk as activation checkpointing would) and adds its key/value gradients into
    one table-sized buffer (`scatter_rows`). Memory stays bounded by one chunk, and the gradients equal
    autograd's (tests compare against the per-frame loop).
    """

    @staticmethod
    def _gather(table, flat_rows, buffer, keys_per_query):
        """Rows of `table` into `buffer`: "(B Qc G) a d" and the same memory viewed as "(B Qc) a G d"."""
        gathered = torch.index_select(table, 0, flat_rows, out=buffer[: flat_rows.shape[0]])
        return gathered, rearrange(gathered, "(bq g) a d -> bq a g d", g=keys_per_query)

    @staticmethod
    def _rows(frames, chosen, layout, begin, end):
        """Flat table rows of query frames [begin, end): "(B Qc G)"."""
        rows = token_indices(
            frames[begin:end],
            layout.tokens_per_frame,
            None if chosen is None else chosen[:, begin:end],
            layout.tokens_per_slice,
            layout.memory_start,
            layout.rows,
            layout.batch,
        )  # B Qc G
        return rearrange(rows, "b q g -> (b q g)")

    @staticmethod
    def _chunk_mask(mask, begin, end, additive_dtype=None):
        """The chunk's mask "(B Qc) 1 1 G": bool, or additive (0 / -inf) for the CPU kernels; None if all."""
        if mask is None:
            return None
        chunk_mask = mask[:, begin:end]  # B Qc G
        if bool(chunk_mask.all()):
            return None
        chunk_mask = rearrange(chunk_mask, "b q g -> (b q) 1 1 g")
        if additive_dtype is None:
            return chunk_mask
        return torch.zeros(chunk_mask.shape, dtype=additive_dtype).masked_fill(~chunk_mask, float("-inf"))

    @staticmethod
    def forward(ctx, queries, key_rows, value_rows, frames, chosen, mask, layout, chunk, keep_for_backward):
        batch, _, num_queries, _, _ = queries.shape
        keys_per_query = frames.shape[1] * layout.tokens_per_frame  # G
        keys_per_query += 0 if chosen is None else chosen.shape[2] * layout.tokens_per_slice
        fused = keep_for_backward and USE_CPU_FLASH and queries.device.type == "cpu"
        out = torch.empty_like(queries)  # B a Q P d
        key_buffer = key_rows.new_empty(
            (batch * min(chunk, num_queries) * keys_per_query,) + key_rows.shape[1:]
        )
        value_buffer = torch.empty_like(key_buffer)
        lse = None  # B a Q P log-sum-exp of the fused CPU kernel, kept for its backward
        for begin, end in chunks(num_queries, chunk):
            # 1. gather the chunk's keys and values: "(B Qc G) a d" viewed as "(B Qc) a G d"
            flat_rows = GatheredAttention._rows(frames, chosen, layout, begin, end)
            _, chunk_keys = GatheredAttention._gather(key_rows, flat_rows, key_buffer, keys_per_query)
            _, chunk_values = GatheredAttention._gather(value_rows, flat_rows, value_buffer, keys_per_query)
            chunk_queries = rearrange(queries[:, :, begin:end], "b a q p d -> (b q) a p d")
            # 2. one attention call for every query frame of the chunk
            if fused:
                additive = GatheredAttention._chunk_mask(mask, begin, end, queries.dtype)
                attended, chunk_lse = CPU_FLASH_FORWARD(
                    chunk_queries, chunk_keys, chunk_values, 0.0, False, attn_mask=additive
                )  # (B Qc) a P d, (B Qc) a P
                if lse is None:
                    lse = chunk_lse.new_empty(queries.shape[:-1])  # B a Q P
                lse[:, :, begin:end] = rearrange(chunk_lse, "(b q) a p -> b a q p", b=batch)
            else:
                attended = F.scaled_dot_product_attention(
                    chunk_queries,
                    chunk_keys,
                    chunk_values,
                    attn_mask=GatheredAttention._chunk_mask(mask, begin, end),
                )  # (B Qc) a P d
            out[:, :, begin:end] = rearrange(attended, "(b q) a p d -> b a q p d", b=batch)
        if keep_for_backward:
            # The fused backward needs the output and log-sum-exp: saved through save_for_backward (not as
            # ctx attributes) so activation checkpointing can free and recompute them like any activation.
            saved_out = out if fused else None
            ctx.save_for_backward(queries, key_rows, value_rows, frames, chosen, mask, saved_out, lse)
            ctx.layout, ctx.chunk, ctx.keys_per_query, ctx.fused = layout, chunk, keys_per_query, fused
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        queries, key_rows, value_rows, frames, chosen, mask, out, lse = ctx.saved_tensors
        layout, keys_per_query = ctx.layout, ctx.keys_per_query
        batch, _, num_queries, _, _ = queries.shape
        grad_queries = torch.empty_like(queries)
        grad_key_rows, grad_value_rows = torch.zeros_like(key_rows), torch.zeros_like(value_rows)
        key_buffer = key_rows.new_empty(
            (batch * min(ctx.chunk, num_queries) * keys_per_query,) + key_rows.shape[1:]
        )
        value_buffer = torch.empty_like(key_buffer)
        for begin, end in chunks(num_queries, ctx.chunk):
            # 1. re-gather the chunk's keys and values
            flat_rows = GatheredAttention._rows(frames, chosen, layout, begin, end)
            flat_keys, chunk_keys = GatheredAttention._gather(key_rows, flat_rows, key_buffer, keys_per_query)
            flat_values, chunk_values = GatheredAttention._gather(
                value_rows, flat_rows, value_buffer, keys_per_query
            )
            chunk_queries = rearrange(queries[:, :, begin:end], "b a q p d -> (b q) a p d")
            grad_chunk = rearrange(grad_out[:, :, begin:end], "b a q p d -> (b q) a p d").contiguous()
            # 2. attention backward: from the saved log-sum-exp, or by recomputing the chunk
            if ctx.fused:
                grad_q, grad_k, grad_v = CPU_FLASH_BACKWARD(
                    grad_chunk,
                    chunk_queries,
                    chunk_keys,
                    chunk_values,
                    rearrange(out[:, :, begin:end], "b a q p d -> (b q) a p d").contiguous(),
                    rearrange(lse[:, :, begin:end], "b a q p -> (b q) a p").contiguous(),
                    0.0,
                    False,
                    attn_mask=GatheredAttention._chunk_mask(mask, begin, end, queries.dtype),
                )  # (B Qc) a P d, (B Qc) a G d twice
                grad_k = rearrange(grad_k, "bq a g d -> (bq g) a d")
                grad_v = rearrange(grad_v, "bq a g d -> (bq g) a d")
            else:
                with torch.enable_grad():
                    chunk_queries = chunk_queries.detach().requires_grad_()
                    flat_keys = flat_keys.detach().requires_grad_()
                    flat_values = flat_values.detach().requires_grad_()
                    attended = F.scaled_dot_product_attention(
                        chunk_queries,
                        rearrange(flat_keys, "(bq g) a d -> bq a g d", g=keys_per_query),
                        rearrange(flat_values, "(bq g) a d -> bq a g d", g=keys_per_query),
                        attn_mask=GatheredAttention._chunk_mask(mask, begin, end),
                    )  # (B Qc) a P d
                    grad_q, grad_k, grad_v = torch.autograd.grad(
                        attended, (chunk_queries, flat_keys, flat_values), grad_chunk
                    )
            # 3. scatter: query gradients into their frames, key and value gradients back onto the table rows
            grad_queries[:, :, begin:end] = rearrange(grad_q, "(b q) a p d -> b a q p d", b=batch)
            chunk_chosen = None if chosen is None else chosen[:, begin:end]
            scatter_rows(grad_key_rows, grad_k, frames[begin:end], chunk_chosen, layout)
            scatter_rows(grad_value_rows, grad_v, frames[begin:end], chunk_chosen, layout)
        return grad_queries, grad_key_rows, grad_value_rows, None, None, None, None, None, None


def frame_attention(
    queries: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    window_idx: torch.Tensor,
    memory_keys: torch.Tensor | None = None,
    memory_values: torch.Tensor | None = None,
    indices: torch.Tensor | None = None,
    valid: torch.Tensor | None = None,
    query_chunk: int = 0,
) -> torch.Tensor:
    """Each query frame attends to [its window's full-resolution frames; its retrieved candidates].

    queries: "B a Q P d"; keys, values: "B a F P d" (all latent frames); window_idx: "Q Wn" into F;
    memory_keys, memory_values: "B a S P' d"; indices, valid: "B Q K". Returns "B a Q P d".
    All query frames of a chunk gather their keys with one index tensor and go to one
    scaled_dot_product_attention call, so the cost is linear in Q for fixed Wn and K. query_chunk (latent
    frames, 0 = all at once) bounds memory: only one chunk's gathered keys exist at a time, in forward and
    in backward (GatheredAttention).
    """
    batch, _, num_queries, _, _ = queries.shape
    _, _, num_frames, tokens_per_frame, _ = keys.shape
    use_memory = memory_keys is not None and indices is not None and indices.shape[-1] > 0
    layout = TableLayout(
        batch,
        num_frames,
        tokens_per_frame,
        memory_keys.shape[2] if use_memory else 0,
        memory_keys.shape[3] if use_memory else 0,
    )
    # 1. tables of every readable key and value, and which gathered keys each query frame may read
    key_rows = key_table(keys, memory_keys if use_memory else None)  # (B E) a d
    value_rows = key_table(values, memory_values if use_memory else None)
    keys_per_query = window_idx.shape[1] * tokens_per_frame + (
        indices.shape[-1] * layout.tokens_per_slice if use_memory else 0
    )
    mask = slot_mask(valid if use_memory else None, layout.tokens_per_slice, keys_per_query)  # B Q G or None
    # 2. attend, chunk by chunk
    chunk = query_chunk if query_chunk > 0 else num_queries
    keep_for_backward = torch.is_grad_enabled() and (
        queries.requires_grad or key_rows.requires_grad or value_rows.requires_grad
    )
    return GatheredAttention.apply(
        queries,
        key_rows,
        value_rows,
        window_idx,
        indices if use_memory else None,
        mask,
        layout,
        chunk,
        keep_for_backward,
    )  # B a Q P d
