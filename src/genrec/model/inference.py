"""`FastDecoder`: a decode-only copy of a trained `GenerativeModel`, for serving on CPU.

Beam search over the small SID decoder spends its time in the Transformer's
kernels on `N = batch * beams` rows, not in the search. This copy keeps the same
weights and the same `BeamSearchModel` protocol, but rearranges the step:

- the self-attention's q, k and v are one matrix product (three in the model);
- self-attention of one new position over at most `levels` earlier ones is a
  dot product and a multiply-add per position, not an attention kernel;
- the self-attention cache is never copied on a reorder: each level's keys and
  values stay where they were computed and beams keep integer ancestor indices
  (see `FastState`);
- each level's input constant (code embedding + level embedding) is one table
  lookup, and the request's summary is broadcast over its beams, not repeated;
- logits are not padded to one width (beam search gathers only valid codes);
- cross-attention is two batched matrix products against keys stored transposed and
  pre-scaled at `encode` (not `scaled_dot_product_attention`, twice as slow at ~20 rows);
- it steps ragged rows (`ragged_rows`), so beam search steps only prefixes that still
  branch (`genrec.decode.pruning`): a prefix with one item below is scored without the model.

`precision` picks the number format of the matrix products: "fp32" (the model's
arithmetic up to rounding order: the same items as the model, a test holds it)
or "bf16" (the linear layers' weights and inputs in bfloat16, which CPUs with
AVX-512 BF16 / AMX multiply 4-6x faster; layer norms, softmax and the residual
stream stay fp32; the encoder runs under bf16 autocast). bf16 is approximate:
on near-ties it ranks items differently (benchmarks/results/decode.md measures
how often the top-k differs). int8 dynamic quantization, bf16 in the encoder or the
decoder only, oneDNN's bf16 arithmetic on fp32 tensors and `torch.compile` were measured
too and lost (benchmarks/results/decode_variants.md).
Training never sees this module: the weights are copied, the model left as it was.
"""

from __future__ import annotations

import copy
import math
import warnings
from contextlib import nullcontext
from dataclasses import dataclass, replace
from typing import ContextManager, cast

import torch
import torch.nn as nn
import torch.nn.functional as F

from genrec import device as devices
from genrec.model.batches import EncoderBatch
from genrec.model.layers import MLP, DecoderBlock
from genrec.model.model import GenerativeModel
from genrec.model.moe import SparseMoE

PRECISIONS = ("fp32", "bf16")


@dataclass(frozen=True)
class FastState:
    """What `FastDecoder` carries between levels; N = B * beams rows, request-major.

    The self-attention cache is never copied when beams are reordered: level s's
    keys and values stay in the order they were computed (`cache[layer][s]`,
    `[rows_s, 2d]`, keys then values) and `ancestors[s]` `[N]` says which of
    those rows each current beam descends from. A reorder gathers only these
    integer indices; a step gathers each past level's `[N, 2d]` once.

    After a ragged reorder (beam search with pruning: requests keep different
    numbers of beams) `rows` `[N]` holds each row's request (non-decreasing),
    `slot` `[N]` its place among that request's rows and `slots` the most rows
    any request has; `beams` is then unused. None: every request has `beams` rows.
    """

    memory_kt: list[torch.Tensor]  # per layer [B, H, hd, S]: keys transposed and scaled by 1/sqrt(hd)
    memory_v: list[torch.Tensor]  # per layer [B, H, S, hd]
    memory_bias: torch.Tensor  # [B, 1, 1, S] float: 0 where the encoder position is real, -inf where padding
    summary: torch.Tensor  # [B, d] fp32
    first_level_bias: torch.Tensor | None  # [B, V0] (CopyBias) or None
    beams: int = 1
    cache: tuple[tuple[torch.Tensor, ...], ...] = ()  # [layer][level] → [rows at that level, 2d]
    ancestors: tuple[torch.Tensor, ...] = ()  # [level] → [N] row of cache[layer][level] each beam reads
    rows: torch.Tensor | None = None  # [N] request of each row, after a ragged reorder
    slot: torch.Tensor | None = None  # [N] place of each row among its request's rows
    slots: int = 0  # the most rows a request has (ragged only)

    @property
    def batch_size(self) -> int:
        return self.summary.shape[0]

    @property
    def length(self) -> int:
        return len(self.ancestors)


class _Layer(nn.Module):
    """One decoder block's weights, with the self-attention's q/k/v fused into one linear layer."""

    def __init__(self, block: DecoderBlock):
        super().__init__()
        a, c = block.self_attn, block.cross
        self.n_heads, self.head_dim = a.n_heads, a.head_dim
        d = a.q.in_features
        self.norm1, self.norm2, self.norm3 = (copy.deepcopy(n) for n in (block.norm1, block.norm2, block.norm3))
        self.qkv = nn.Linear(d, 3 * d)
        with torch.no_grad():
            self.qkv.weight.copy_(torch.cat([a.q.weight, a.kv.weight]))
            self.qkv.bias.copy_(torch.cat([a.q.bias, a.kv.bias]))
        self.self_out = copy.deepcopy(a.out)
        self.cross_q, self.cross_out = copy.deepcopy(c.q), copy.deepcopy(c.out)
        self.cross_kv = copy.deepcopy(c.kv)
        # A sparse-MoE feed-forward is kept whole and run as the model runs it, in the layers'
        # precision (bf16 may route a near-tie to another expert than the model would).
        self.moe: SparseMoE | None = copy.deepcopy(block.mlp) if isinstance(block.mlp, SparseMoE) else None
        if self.moe is None:
            mlp = cast(MLP, block.mlp)
            self.up, self.down = copy.deepcopy(mlp.up), copy.deepcopy(mlp.down)


class FastDecoder(nn.Module):
    """`GenerativeModel`'s `encode`/`expand`/`step`/`reorder` for inference only; see the module docstring.

    `FastDecoder(model, "bf16")` copies what it needs from `model` (which stays as it was).
    """

    ragged_rows = True
    """`reorder` takes a ragged index (`genrec.decode.protocol`), so beam search steps only the rows
    that need it (the last level's branching prefixes) even without a pruning margin."""

    def __init__(self, model: GenerativeModel, precision: str = "bf16"):
        super().__init__()
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        if precision == "bf16" and not devices.cpu_has_bf16() and not any(p.is_cuda for p in model.parameters()):
            warnings.warn("FastDecoder(precision='bf16') on a CPU without native bf16 (AVX-512 BF16 or AMX): its "
                          "matmuls are emulated and slower than fp32 (benchmarks/results/decode_epyc.md); "
                          "precision='fp32' is exact and faster here", stacklevel=2)
        self.precision = precision
        self.spec = model.spec
        # The encoder is the model's own (not copied: its embedding tables can be large); the
        # decoder's weights are copied, so build this after training, not before.
        self.model = model.eval()
        dec = model.decoder
        levels = self.spec.levels
        with torch.no_grad():
            # Level l's input for code c chosen at level l-1: code embedding + level embedding; level 0: bos.
            offsets = model.inputs.code_offsets.tolist()
            tables = [(model.bos + dec.level.weight[0])[None, :]]
            for level in range(1, levels):
                rows = model.inputs.code.weight[offsets[level - 1]: offsets[level - 1] + self.spec.codebook_sizes[level - 1]]
                tables.append(rows + dec.level.weight[level])
        self.level_input_0: torch.Tensor  # [1, d]; level_input_l [codebook_sizes[l-1], d]
        for level, table in enumerate(tables):
            self.register_buffer(f"level_input_{level}", table.detach().clone())
        self.layers = nn.ModuleList(_Layer(block) for block in dec.layers())
        self.norm = copy.deepcopy(dec.norm)
        self.heads = copy.deepcopy(dec.heads)
        self.eval()
        if precision == "bf16":
            for part in (self.layers, self.heads):
                for module in part.modules():
                    if isinstance(module, nn.Linear):
                        module.to(torch.bfloat16)

    def _autocast(self) -> ContextManager[object]:
        if self.precision != "bf16":
            return nullcontext()
        return torch.autocast(self.level_input_0.device.type, dtype=torch.bfloat16)

    @staticmethod
    def _linear(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """A linear layer in its weights' precision; the result back in fp32. Called as `F.linear`, not
        through the module: at batch 1 a module call's hooks machinery costs as much as the product."""
        lin = cast(nn.Linear, layer)
        if lin.weight.dtype == x.dtype == torch.float32:
            return F.linear(x, lin.weight, lin.bias)
        return F.linear(x.to(lin.weight.dtype), lin.weight, lin.bias).float()

    @staticmethod
    def _norm(norm: nn.LayerNorm, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, norm.normalized_shape, norm.weight, norm.bias, norm.eps)

    # ---- the BeamSearchModel protocol ---------------------------------------------------

    @torch.no_grad()
    def encode(self, batch: EncoderBatch) -> FastState:
        m = self.model
        memory, mask, summary = self._encode_memory(batch)
        with self._autocast():
            bias = m._request_copy_bias(batch, summary)
        ks, vs = [], []
        for layer in self._layers():
            k, v = self._linear(layer.cross_kv, memory).chunk(2, dim=-1)
            ks.append((self._heads(layer, k) / math.sqrt(layer.head_dim)).transpose(2, 3).contiguous())
            vs.append(self._heads(layer, v))
        memory_bias = torch.zeros(mask.shape, device=mask.device).masked_fill(~mask, float("-inf"))
        return FastState(ks, vs, memory_bias, summary.float(), None if bias is None else bias.float())

    def _encode_memory(self, batch: EncoderBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The model's `encode_memory` (in fp32: exactly that). Under bf16 autocast, searches and
        recommendations are encoded apart and merged here in fp32, as the model's own merge of a
        mixed batch expects one dtype throughout."""
        m = self.model
        if self.precision == "fp32":
            return m.encode_memory(batch)
        search = m.has_query(batch) if m.config.search else torch.zeros(batch.batch_size, dtype=torch.bool)
        groups = [rows for rows in (search.nonzero()[:, 0], (~search).nonzero()[:, 0]) if len(rows)]
        with self._autocast():
            parts = ([(groups[0], m.encode_memory(batch))] if len(groups) == 1 else
                     [(rows, m.encode_memory(batch.index(rows).trim())) for rows in groups])
        first_memory = parts[0][1][0]
        width, d = max(p[0].shape[1] for _, p in parts), first_memory.shape[2]
        memory = torch.zeros(batch.batch_size, width, d, device=first_memory.device)
        mask = torch.zeros(batch.batch_size, 1, 1, width, dtype=torch.bool, device=first_memory.device)
        summary = torch.zeros(batch.batch_size, d, device=first_memory.device)
        for rows, (part_memory, part_mask, part_summary) in parts:
            memory[rows, :part_memory.shape[1]] = part_memory.float()
            mask[rows, :, :, :part_mask.shape[-1]] = part_mask
            summary[rows] = part_summary.float()
        return memory, mask, summary

    def expand(self, state: FastState, beams: int) -> FastState:
        if beams < 1:
            raise ValueError(f"beams must be ≥ 1, got {beams}")
        if state.rows is not None:
            raise ValueError("cannot expand a ragged state (after a pruning reorder)")
        return replace(state, beams=state.beams * beams,
                       ancestors=tuple(a.repeat_interleave(beams) for a in state.ancestors))

    def num_rows(self, state: FastState) -> int:
        return state.batch_size * state.beams if state.rows is None else len(state.rows)

    def reorder(self, state: FastState, index: torch.Tensor) -> FastState:
        """Row i continues from row `index[i]`. `index` `[N]` keeps the layout; any other length
        (beam search with pruning) is a ragged layout: request-major, any number of rows per request."""
        n = self.num_rows(state)
        if index.ndim != 1:
            raise ValueError(f"index must be 1-d, got shape {tuple(index.shape)}")
        index = index.long()
        ancestors = tuple(a.index_select(0, index) for a in state.ancestors)
        if index.shape == (n,) and state.rows is None:
            return replace(state, ancestors=ancestors)
        return self._ragged(replace(state, ancestors=ancestors), self._row_requests(state).index_select(0, index))

    def _row_requests(self, state: FastState) -> torch.Tensor:
        if state.rows is not None:
            return state.rows
        return torch.arange(state.batch_size, device=state.summary.device).repeat_interleave(state.beams)

    @staticmethod
    def _ragged(state: FastState, rows: torch.Tensor) -> FastState:
        b = state.batch_size
        counts = torch.bincount(rows, minlength=b)
        if bool((rows[1:] < rows[:-1]).any()):
            raise ValueError("a ragged reorder index must be request-major (rows of request 0, then 1, ...)")
        slots = int(counts.max()) if len(rows) else 0
        if len(rows) == b * slots:  # every request kept the same number of rows: the uniform layout
            return replace(state, beams=slots, rows=None, slot=None, slots=0)
        slot = torch.arange(len(rows), device=rows.device) - (torch.cumsum(counts, 0) - counts)[rows]
        return replace(state, rows=rows, slot=slot, slots=slots)

    @torch.no_grad()
    def step(self, state: FastState, tokens: torch.Tensor, level: int) -> tuple[torch.Tensor, FastState]:
        """`level`'s logits `[N, V_level]` (fp32) for the codes `tokens [N]` chosen at `level - 1`."""
        if not 0 <= level < self.spec.levels:
            raise ValueError(f"level must be in [0, {self.spec.levels}), got {level}")
        if level != state.length:
            raise ValueError(f"state has decoded {state.length} levels, cannot step level {level}")
        b, beams = state.batch_size, state.beams
        n = self.num_rows(state)
        if tokens.shape != (n,):
            raise ValueError(f"tokens must have shape [{n}] (one per row), got {tuple(tokens.shape)}")
        table = cast(torch.Tensor, getattr(self, f"level_input_{level}"))
        x = table.expand(n, -1) if level == 0 else table.index_select(0, tokens.long())
        if state.rows is None:
            x = (x.view(b, beams, -1) + state.summary[:, None, :]).view(n, -1)
        else:
            x = x + state.summary.index_select(0, state.rows)
        caches = []
        for i, layer in enumerate(self._layers()):
            qkv = self._linear(layer.qkv, self._norm(layer.norm1, x))  # [N, 3d]
            d = qkv.shape[1] // 3
            new = qkv[:, d:].contiguous()  # [N, 2d]: this level's keys and values
            past = [c.index_select(0, a) for c, a in zip(state.cache[i], state.ancestors)] if state.cache else []
            caches.append((*state.cache[i], new) if state.cache else (new,))
            x = x + self._linear(layer.self_out, self._self_attend(layer, qkv[:, :d], [*past, new]))
            x = x + self._linear(layer.cross_out, self._cross_attend(layer, self._norm(layer.norm2, x), state, i))
            x = x + self._mlp(layer, self._norm(layer.norm3, x))
        logits = self._linear(self.heads[level], self._norm(self.norm, x))
        if level == 0 and state.first_level_bias is not None:
            logits = (logits.view(b, beams, -1) + state.first_level_bias[:, None, :]).view(n, -1) \
                if state.rows is None else logits + state.first_level_bias.index_select(0, state.rows)
        here = torch.arange(n, device=x.device)
        return logits, replace(state, cache=tuple(caches), ancestors=(*state.ancestors, here))

    # ---- arithmetic ---------------------------------------------------------------------

    def _mlp(self, layer: _Layer, x: torch.Tensor) -> torch.Tensor:
        """up → GELU → down, the `[N, d_ff]` middle left in the layers' precision (no round trip to fp32);
        a sparse MoE runs as in the model."""
        if layer.moe is not None:
            return layer.moe(x.to(layer.moe.router.weight.dtype)).float()
        up, down = layer.up, layer.down
        if self.precision == "bf16":
            return F.linear(F.gelu(F.linear(x.to(torch.bfloat16), up.weight, up.bias)), down.weight, down.bias).float()
        return F.linear(F.gelu(F.linear(x, up.weight, up.bias)), down.weight, down.bias)

    def _self_attend(self, layer: _Layer, q: torch.Tensor, levels: list[torch.Tensor]) -> torch.Tensor:
        """One query `[N, d]` over the `t ≤ levels` positions so far, each `[N, 2d]` (keys, values):
        one dot product and one multiply-add per position and a softmax over t, not an attention
        kernel per head."""
        n, d = q.shape
        h, hd = layer.n_heads, layer.head_dim
        q = q.reshape(n, h, hd) / math.sqrt(hd)
        scores = torch.stack([torch.linalg.vecdot(kv[:, :d].reshape(n, h, hd), q) for kv in levels], dim=-1)
        weights = torch.softmax(scores, dim=-1)[..., None]  # [N, H, t, 1]
        out = weights[:, :, 0] * levels[0][:, d:].reshape(n, h, hd)
        for j in range(1, len(levels)):
            out.addcmul_(weights[:, :, j], levels[j][:, d:].reshape(n, h, hd))
        return out.reshape(n, d)

    def _cross_attend(self, layer: _Layer, x: torch.Tensor, state: FastState, i: int) -> torch.Tensor:
        """A request's beams as `beams` queries against its one memory: `[B, H, beams, hd] @ [B, H, hd, S]`,
        two batched matrix products (half the time of `scaled_dot_product_attention` at these shapes:
        its blocked kernel is built for long sequences, here both sides hold ~20 rows). Ragged rows
        are scattered into `slots` query positions per request (the empty ones attend for nothing)."""
        b, beams = state.batch_size, state.beams
        h, hd = layer.n_heads, layer.head_dim
        q = self._linear(layer.cross_q, x)
        if state.rows is None:
            q = q.view(b, beams, h, hd).transpose(1, 2)  # [B, H, beams, hd]
        else:
            padded = q.new_zeros(b, state.slots, h * hd)
            padded[state.rows, state.slot] = q
            q = padded.view(b, state.slots, h, hd).transpose(1, 2)  # [B, H, slots, hd]
        weights = torch.softmax(torch.matmul(q, state.memory_kt[i]).add_(state.memory_bias), dim=-1)
        y = torch.matmul(weights, state.memory_v[i]).transpose(1, 2)  # [B, beams or slots, H, hd]
        if state.rows is None:
            return y.reshape(b * beams, h * hd)
        return y[state.rows, state.slot].reshape(len(state.rows), h * hd)

    @staticmethod
    def _heads(layer: _Layer, x: torch.Tensor) -> torch.Tensor:  # [B, S, d] → [B, H, S, hd]
        return x.view(x.shape[0], x.shape[1], layer.n_heads, layer.head_dim).transpose(1, 2).contiguous()

    def _layers(self) -> list[_Layer]:
        return [cast(_Layer, layer) for layer in self.layers]

