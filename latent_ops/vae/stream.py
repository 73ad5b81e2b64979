"""Layer-streamed, exact execution of diffusers KL-VAE encoders/decoders with bounded temporaries.

The stock ``AutoencoderKL`` forward keeps several full-resolution activations of every layer
alive (4.5 GiB peak RSS at 1024 px for the SD VAE). This module runs the same network one layer at a time:
each GroupNorm takes its statistics over the *whole* image (per sample and group, accumulated
band by band in float64), and every convolution is evaluated in horizontal bands of rows that
carry a one-row halo, writing straight into its destination. A resnet's second convolution is
written in place into the tensor it reads (saving one row of halo before overwriting), so at
most two activations of one level exist at once; the decoder's last upsampler is fused into the
following resnet (:meth:`Streamer.up_resnet`) so its output, the largest tensor, is never stored.
The mid-block attention is global and exact
(queries in chunks, all keys). The result equals the stock forward up to float summation order.

The same machinery can *record* every GroupNorm's statistics, or *replace* them with given ones:
that is how the tile mode in :mod:`latent_ops.vae.tiling` keeps tiles seamless. Whole encoders and
decoders are run through a :class:`Streamer` by :mod:`latent_ops.vae.exact`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Stats = dict[str, tuple[Tensor, Tensor]]
"""GroupNorm name -> ``(mean [B, G], rstd [B, G])`` in float32."""

BAND_BYTES = 16 * 2**20
"""Target size of one band of input rows (bytes)."""

QUERY_CHUNK = 1024
"""Attention queries per chunk (scores for one chunk: ``QUERY_CHUNK x tokens`` floats)."""


class Streamer:
    """Runs the layers of one KL-VAE encoder/decoder exactly, band by band.

    Args:
        root: the module whose sub-module names key the statistics (the ``AutoencoderKL``).
        fixed: statistics to use instead of computing them (tile mode); missing names raise.
        record: if True, computed statistics are stored in :attr:`recorded`.
    """

    def __init__(self, root: nn.Module, fixed: Stats | None = None, record: bool = False) -> None:
        self.names = {id(m): n for n, m in root.named_modules()}
        self.fixed = fixed
        self.record = record
        self.recorded: Stats = {}
        self.groups = int(getattr(root, "config", {}).get("norm_num_groups", 0) or 0)
        # (key of the last tensor a convolution wrote, (count, mean [B,G] f64, M2 [B,G] f64)):
        # statistics gathered while the band was hot, so the next GroupNorm needs no extra pass.
        # Only the most recent output is kept, so a freed tensor's address can never match.
        self._moments: tuple[tuple, tuple[int, Tensor, Tensor]] | None = None

    # ---------------------------------------------------------------- statistics
    def _rows(self, x: Tensor) -> int:
        per_row = max(1, x.shape[0] * x.shape[1] * x.shape[3] * x.element_size())
        return max(1, min(x.shape[2], BAND_BYTES // per_row))

    @staticmethod
    def _merge(acc: tuple[int, Tensor, Tensor] | None, band: Tensor, groups: int) -> tuple[int, Tensor, Tensor]:
        """Chan et al.'s pairwise update of (count, mean, M2) with one band ``[B, C, rows, W]``."""
        b, c = band.shape[:2]
        v = band.reshape(b, groups, c // groups, -1)
        var_b, mean_b = torch.var_mean(v.float(), dim=(2, 3), correction=0)
        n_b = v.shape[2] * v.shape[3]
        if acc is None:
            return n_b, mean_b.double(), var_b.double() * n_b
        count, mean, m2 = acc
        delta = mean_b.double() - mean
        total = count + n_b
        return total, mean + delta * (n_b / total), m2 + var_b.double() * n_b + delta.square() * (count * n_b / total)

    @staticmethod
    def _key(x: Tensor) -> tuple:
        return (x.data_ptr(), tuple(x.shape), x.dtype)

    def group_stats(self, x: Tensor, groups: int, eps: float) -> tuple[Tensor, Tensor]:
        """Mean and 1/std per (sample, group) of ``x [B, C, H, W]`` -> two ``[B, G]`` float32.

        Uses the moments gathered when ``x`` was written if there are any (see :meth:`conv`),
        else one banded pass. Band means/variances come from ``torch.var_mean`` in float32 and
        are combined in float64 with Chan et al.'s formula (no ``E[x^2] - E[x]^2`` cancellation).
        """
        acc = None
        if self._moments is not None and groups == self.groups and self._moments[0] == self._key(x):
            acc = self._moments[1]
        self._moments = None
        if acc is None:
            rows = self._rows(x)
            for a in range(0, x.shape[2], rows):
                acc = self._merge(acc, x[:, :, a : a + rows], groups)
        assert acc is not None
        count, mean, m2 = acc
        return mean.float(), torch.rsqrt(m2 / count + eps).float()

    def norm_affine(
        self, gn: nn.GroupNorm, x: Tensor, moments: tuple[int, Tensor, Tensor] | None = None
    ) -> tuple[Tensor, Tensor]:
        """Per-channel ``(scale, shift)`` ``[B, C, 1, 1]`` (x's dtype) that apply ``gn`` to ``x``.

        ``moments`` = ``(count, mean, M2)`` gathered elsewhere (``x`` then only gives shape/dtype).
        """
        name = self.names.get(id(gn), "?")
        if self.fixed is not None:
            if name not in self.fixed:
                raise ValueError(f"Streamer: no fixed statistics for GroupNorm {name!r}")
            mean, rstd = self.fixed[name]
            if mean.shape[0] != x.shape[0]:
                mean, rstd = mean.expand(x.shape[0], -1), rstd.expand(x.shape[0], -1)
        else:
            if moments is not None:
                count, mean64, m2 = moments
                mean, rstd = mean64.float(), torch.rsqrt(m2 / count + gn.eps).float()
            else:
                mean, rstd = self.group_stats(x, gn.num_groups, gn.eps)
            if self.record:
                self.recorded[name] = (mean, rstd)
        per = x.shape[1] // gn.num_groups
        mean_c = mean.to(x.device).repeat_interleave(per, dim=1)
        rstd_c = rstd.to(x.device).repeat_interleave(per, dim=1)
        weight = gn.weight.float() if gn.weight is not None else torch.ones_like(mean_c[0])
        bias = gn.bias.float() if gn.bias is not None else torch.zeros_like(mean_c[0])
        scale = rstd_c * weight
        shift = bias - mean_c * scale
        return scale.to(x.dtype)[:, :, None, None], shift.to(x.dtype)[:, :, None, None]

    # ---------------------------------------------------------------- convolutions
    def conv(
        self,
        src: Tensor,
        conv: nn.Conv2d,
        *,
        pre: tuple[Tensor, Tensor] | None = None,
        upsample: bool = False,
        dst: Tensor | None = None,
        accumulate: bool = False,
        add: Callable[[int, int], Tensor] | None = None,
    ) -> Tensor:
        """``conv(silu(pre(src)))`` (``pre`` = GroupNorm affine) for a stride-1 3x3 or 1x1 conv.

        Args:
            src: ``[B, C_in, H, W]``.
            conv: a stride-1 ``nn.Conv2d`` with kernel 1 (padding 0) or 3 (padding 1).
            pre: GroupNorm ``(scale, shift)`` then SiLU applied to the input rows, or None.
            upsample: nearest 2x upsampling of the (activated) input first.
            dst: where to write the result: None = a new tensor; ``src`` = in place (needs equal
                channels and no upsampling); another tensor with ``accumulate=True`` = add into it.
            add: ``add(a, b)`` returns a tensor added to output rows ``[a, b)`` (a shortcut).

        Returns:
            ``[B, C_out, H', W']`` (``H' = 2H`` when upsampling).
        """
        k = conv.kernel_size[0]
        if conv.stride != (1, 1) or k not in (1, 3) or conv.padding[0] != k // 2:
            raise ValueError(f"Streamer.conv: unsupported conv {conv}")
        b, _, h, w = src.shape
        f = 2 if upsample else 1
        ho, wo = h * f, w * f
        inplace = dst is src
        if inplace and (upsample or conv.out_channels != src.shape[1]):
            raise ValueError("Streamer.conv: in-place output needs equal channels and no upsampling")
        out = dst if dst is not None else src.new_empty(b, conv.out_channels, ho, wo)
        rows = max(1, self._rows(src) // f)
        halo = k // 2
        saved: Tensor | None = None
        collect = self.groups > 0 and conv.out_channels % self.groups == 0
        acc: tuple[int, Tensor, Tensor] | None = None
        self._moments = None
        for a in range(0, ho, rows):
            e = min(a + rows, ho)
            lo, hi = max(a - halo, 0), min(e + halo, ho)
            s_lo, s_hi = lo // f, (hi - 1) // f + 1
            if inplace and saved is not None and halo:
                slab = torch.cat([saved, src[:, :, a:s_hi]], dim=2)
            else:
                slab = src[:, :, s_lo:s_hi]
            if pre is not None:
                slab = F.silu(torch.addcmul(pre[1], slab, pre[0]), inplace=True)
            if upsample:
                slab = F.interpolate(slab, scale_factor=2.0, mode="nearest")[:, :, lo - 2 * s_lo : hi - 2 * s_lo]
            if halo:
                top, bottom = (a - halo < 0), (e + halo > ho)
                if top or bottom:
                    slab = F.pad(slab, (0, 0, halo if top else 0, halo if bottom else 0))
            y = F.conv2d(slab, conv.weight, conv.bias, padding=(0, halo))
            if add is not None:
                y += add(a, e)
            if inplace and halo:
                saved = src[:, :, e - halo : e].clone()
            if accumulate:
                out[:, :, a:e] += y
                y = out[:, :, a:e]
            else:
                out[:, :, a:e] = y
            if collect:
                acc = self._merge(acc, y, self.groups)
        if acc is not None:
            self._moments = (self._key(out), acc)
        return out

    def downsample(self, src: Tensor, conv: nn.Conv2d) -> Tensor:
        """diffusers ``Downsample2D`` (pad right/bottom by 1, 3x3 conv, stride 2) in bands."""
        b, _, h, w = src.shape
        ho, wo = (h - 2) // 2 + 1, (w - 2) // 2 + 1
        out = src.new_empty(b, conv.out_channels, ho, wo)
        rows = max(1, self._rows(src) // 2)
        acc: tuple[int, Tensor, Tensor] | None = None
        self._moments = None
        for a in range(0, ho, rows):
            e = min(a + rows, ho)
            lo, hi = 2 * a, 2 * e + 1
            slab = src[:, :, lo : min(hi, h)]
            slab = F.pad(slab, (0, 1, 0, max(0, hi - h)))
            y = F.conv2d(slab, conv.weight, conv.bias, stride=2)
            out[:, :, a:e] = y
            if self.groups and y.shape[1] % self.groups == 0:
                acc = self._merge(acc, y, self.groups)
        if acc is not None:
            self._moments = (self._key(out), acc)
        return out

    # ---------------------------------------------------------------- blocks
    def resnet(self, block: nn.Module, x: Tensor) -> Tensor:
        """diffusers ``ResnetBlock2D`` (no time embedding, SiLU); ``x`` may be overwritten."""
        if getattr(block, "upsample", None) is not None or getattr(block, "downsample", None) is not None:
            raise ValueError("Streamer.resnet: resnets with built-in resampling are not supported")
        if block.time_emb_proj is not None or not isinstance(block.nonlinearity, nn.SiLU):
            raise ValueError("Streamer.resnet: only SiLU resnets without time embedding are supported")
        hidden = self.conv(x, block.conv1, pre=self.norm_affine(block.norm1, x))
        pre2 = self.norm_affine(block.norm2, hidden)
        if block.conv_shortcut is None:
            out = self.conv(hidden, block.conv2, pre=pre2, dst=x, accumulate=True)
        else:
            sc = block.conv_shortcut
            if sc.kernel_size[0] == 1:
                shortcut = lambda a, e: F.conv2d(x[:, :, a:e], sc.weight, sc.bias)  # noqa: E731
            else:
                full = self.conv(x, sc)
                shortcut = lambda a, e: full[:, :, a:e]  # noqa: E731
            out = self.conv(hidden, block.conv2, pre=pre2, dst=hidden, add=shortcut)
        if block.output_scale_factor != 1:
            self._moments = None
            out.div_(block.output_scale_factor)
        return out

    def up_resnet(self, upconv: nn.Conv2d, block: nn.Module, x: Tensor) -> Tensor:
        """``resnet(block, upsample_conv(x))`` without storing the upsampled tensor.

        Used for the decoder's last upsampler, whose output (e.g. 256 channels at full
        resolution, 1 GB at 1024 px) would otherwise be the largest tensor: pass 1 computes it
        band by band for the GroupNorm statistics and the 1x1 shortcut, pass 2 recomputes the rows
        each band of ``conv1`` needs. Costs one extra upsampling convolution.

        Args:
            upconv: the 3x3 conv of a nearest-2x ``Upsample2D``.
            block: a ``ResnetBlock2D`` with a 1x1 ``conv_shortcut``.
            x: ``[B, C, H, W]`` input of the upsampler.

        Returns:
            ``[B, C_out, 2H, 2W]``.
        """
        sc = block.conv_shortcut
        b, _, h, w = x.shape
        ho = 2 * h
        shortcut = x.new_empty(b, sc.out_channels, ho, 2 * w)
        acc: tuple[int, Tensor, Tensor] | None = None
        need_stats = self.fixed is None
        rows = max(1, BAND_BYTES // max(1, b * upconv.out_channels * 2 * w * x.element_size()))
        for a in range(0, ho, rows):
            e = min(a + rows, ho)
            u = self._up_rows(x, upconv, a, e)
            shortcut[:, :, a:e] = F.conv2d(u, sc.weight, sc.bias)
            if need_stats:
                acc = self._merge(acc, u, block.norm1.num_groups)
        ref = x.new_empty(()).expand(b, upconv.out_channels, ho, 2 * w)  # shape/dtype only
        pre1 = self.norm_affine(block.norm1, ref, acc)
        hidden = x.new_empty(b, block.conv1.out_channels, ho, 2 * w)
        acc = None
        for a in range(0, ho, rows):
            e = min(a + rows, ho)
            lo, hi = max(a - 1, 0), min(e + 1, ho)
            slab = F.silu(torch.addcmul(pre1[1], self._up_rows(x, upconv, lo, hi), pre1[0]), inplace=True)
            slab = F.pad(slab, (0, 0, 1 if a == 0 else 0, 1 if e == ho else 0))
            y = F.conv2d(slab, block.conv1.weight, block.conv1.bias, padding=(0, 1))
            hidden[:, :, a:e] = y
            if self.groups and y.shape[1] % self.groups == 0:
                acc = self._merge(acc, y, self.groups)
        self._moments = (self._key(hidden), acc) if acc is not None else None
        pre2 = self.norm_affine(block.norm2, hidden)
        out = self.conv(hidden, block.conv2, pre=pre2, dst=hidden, add=lambda a, e: shortcut[:, :, a:e])
        if block.output_scale_factor != 1:
            self._moments = None
            out.div_(block.output_scale_factor)
        return out

    def _up_rows(self, x: Tensor, upconv: nn.Conv2d, lo: int, hi: int) -> Tensor:
        """Rows ``[lo, hi)`` of ``upconv(nearest2x(x))`` computed from the rows of ``x`` they need."""
        h2 = 2 * x.shape[2]
        xl, xh = max((lo - 1) // 2, 0), min((hi + 1) // 2 + 1, x.shape[2])
        u = F.interpolate(x[:, :, xl:xh], scale_factor=2.0, mode="nearest")
        top, bottom = lo == 0, hi == h2
        first = max(lo - 1, 0) - 2 * xl
        last = min(hi + 1, h2) - 2 * xl
        u = F.pad(u[:, :, first:last], (0, 0, 1 if top else 0, 1 if bottom else 0))
        return F.conv2d(u, upconv.weight, upconv.bias, padding=(0, 1))

    def attention(self, attn: nn.Module, x: Tensor) -> Tensor:
        """diffusers VAE mid-block ``Attention`` over all ``H*W`` tokens, added into ``x``."""
        b, c, h, w = x.shape
        n = h * w
        if attn.group_norm is not None:
            scale, shift = self.norm_affine(attn.group_norm, x)
            tokens = torch.addcmul(shift, x, scale).reshape(b, c, n).transpose(1, 2)
        else:
            tokens = x.reshape(b, c, n).transpose(1, 2)
        self._moments = None  # x is updated in place below
        heads = attn.heads
        q = attn.to_q(tokens)
        k = attn.to_k(tokens).reshape(b, n, heads, -1).transpose(1, 2)
        v = attn.to_v(tokens).reshape(b, n, heads, -1).transpose(1, 2)
        del tokens
        flat = x.view(b, c, n)
        factor = float(attn.rescale_output_factor)
        for i in range(0, n, QUERY_CHUNK):
            j = min(i + QUERY_CHUNK, n)
            qc = q[:, i:j].reshape(b, j - i, heads, -1).transpose(1, 2)
            o = F.scaled_dot_product_attention(qc, k, v, scale=attn.scale)
            o = attn.to_out[0](o.transpose(1, 2).reshape(b, j - i, -1))
            if attn.residual_connection:
                flat[:, :, i:j] += o.transpose(1, 2)
                if factor != 1.0:
                    flat[:, :, i:j] /= factor
            else:
                flat[:, :, i:j] = o.transpose(1, 2) / factor
        return x

    def mid(self, block: nn.Module, x: Tensor) -> Tensor:
        """diffusers ``UNetMidBlock2D``: resnet, (attention, resnet)*."""
        x = self.resnet(block.resnets[0], x)
        for attn, res in zip(block.attentions, block.resnets[1:], strict=True):
            if attn is not None:
                x = self.attention(attn, x)
            x = self.resnet(res, x)
        return x
