"""Focal Transformer (microsoft/Focal-Transformer) in PaddlePaddle: v1 "Focal" and v2 "Focal-fast".

Twin of ``torch_models/focal.py``. Class, attribute and buffer names follow the official
``classification/focal_transformer.py`` (v1, :class:`FocalTransformer`) and
``classification/focal_transformer_v2.py`` (v2, whose official class is also called
``FocalTransformer``; here it is :class:`FocalTransformerV2` so both live in one module), so the
state-dict keys are the official ones (Linear weights transposed, as for every Paddle Linear).

The models are fixed-size like the official ones: every block bakes its input resolution in at
construction, and the v2 top-k index/coordinate buffers depend on it.

``Layer.to(dtype=...)`` casts integer buffers too, so index buffers are cast back to int64 where
they are used.
"""

from __future__ import annotations

import math

import paddle
import paddle.nn.functional as F
from paddle import nn
from paddle.distributed.fleet.utils import recompute

from .layers import (
    AdaptiveAvgPool1D,
    ClassifierMixin,
    DropPath,
    Mlp,
    attention,
    check_num_classes,
    dense_layout,
    make_norm,
    reject_unknown,
    select_features,
    to_2tuple,
)

__all__ = ["FocalTransformer", "FocalTransformerV2"]

# Masked logits get -100 rather than -inf, as in the official code (and Swin), so a window whose
# keys are all masked still has a finite softmax.
_MASK_VALUE = -100.0

_EXPAND_FACTOR = {"even": 0, "odd": 1, "all": -1}
_POOL_METHODS = ("none", "fc", "conv", "mean", "max")


def _swap(x, a, b):
    perm = list(range(x.ndim))
    perm[a], perm[b] = perm[b], perm[a]
    return x.transpose(perm)


def _index(buffer):
    return buffer.astype("int64")


def _zeros_parameter(layer, shape):
    return layer.create_parameter(shape, default_initializer=nn.initializer.Constant(0.0))


def window_partition(x, window_size):
    """(B, H, W, C) -> (B * nWh * nWw, ws, ws, C), windows row-major with the batch outermost."""
    B, H, W, C = x.shape
    x = x.reshape([B, H // window_size, window_size, W // window_size, window_size, C])
    return x.transpose([0, 1, 3, 2, 4, 5]).reshape([-1, window_size, window_size, C])


def window_partition_noreshape(x, window_size):
    """(B, H, W, C) -> (B, nWh, nWw, ws, ws, C)."""
    B, H, W, C = x.shape
    x = x.reshape([B, H // window_size, window_size, W // window_size, window_size, C])
    return x.transpose([0, 1, 3, 2, 4, 5])


def window_reverse(windows, window_size, H, W):
    """Inverse of :func:`window_partition`."""
    C = windows.shape[-1]
    x = windows.reshape([-1, H // window_size, W // window_size, window_size, window_size, C])
    return x.transpose([0, 1, 3, 2, 4, 5]).reshape([-1, H, W, C])


def get_relative_position_index(q_windows, k_windows):
    """Index into a ``(q_h + k_h - 1) * (q_w + k_w - 1)`` bias table for every (query, key) pair of a
    q_h x q_w query window and a k_h x k_w key window (both row-major); int64."""
    coords_q = paddle.stack(paddle.meshgrid(paddle.arange(q_windows[0]), paddle.arange(q_windows[1]))).flatten(1)
    coords_k = paddle.stack(paddle.meshgrid(paddle.arange(k_windows[0]), paddle.arange(k_windows[1]))).flatten(1)
    relative = (coords_q[:, :, None] - coords_k[:, None, :]).transpose([1, 2, 0])
    rows = (relative[:, :, 0] + (k_windows[0] - 1)) * (q_windows[1] + k_windows[1] - 1)
    cols = relative[:, :, 1] + (k_windows[1] - 1)
    return (rows + cols).astype("int64")


def get_shift_mask(H, W, window_size, shift_size):
    """The Swin attention mask of a cyclically shifted H x W map: (nW, ws*ws, ws*ws), -100 between
    tokens that came from different regions, 0 elsewhere; float32 like the official buffer."""
    img_mask = paddle.zeros([1, H, W, 1], dtype="float32")
    bounds = ((0, -window_size), (-window_size, -shift_size), (-shift_size, None))
    cnt = 0
    for h0, h1 in bounds:
        for w0, w1 in bounds:
            img_mask[:, h0:h1, w0:w1, :] = cnt
            cnt += 1
    mask_windows = window_partition(img_mask, window_size).reshape([-1, window_size * window_size])
    diff = mask_windows.unsqueeze(1) - mask_windows.unsqueeze(2)
    return paddle.where(diff != 0, paddle.full_like(diff, _MASK_VALUE), paddle.zeros_like(diff))


def _check_pool_method(pool_method):
    if pool_method not in _POOL_METHODS:
        raise ValueError(f"focal_pool {pool_method!r} is not one of {_POOL_METHODS}")


def _pool_windows(block, shifted_x):
    """The pooled maps of focal levels 1.. (each (B, nWh_k, nWw_k, C)) of a padded, shifted map."""
    B, H, W, C = shifted_x.shape
    pooled_all = []
    for k in range(block.focal_level - 1):
        window_size_glo = math.floor(block.window_size_glo / (2**k))
        H_pool = math.ceil(H / block.window_size) * (2**k) * window_size_glo
        W_pool = math.ceil(W / block.window_size) * (2**k) * window_size_glo

        # Level k>0 windows are smaller than ws/2^k times 2^k, so the map is centre-trimmed (or
        # zero-padded) to an exact multiple of the pooling window.
        x_level_k = shifted_x
        if H > H_pool:
            trim_t = (H - H_pool) // 2
            x_level_k = x_level_k[:, trim_t : trim_t + H_pool]
        elif H < H_pool:
            pad_t = (H_pool - H) // 2
            x_level_k = F.pad(x_level_k, [0, 0, pad_t, H_pool - H - pad_t, 0, 0, 0, 0])
        if W > W_pool:
            trim_l = (W - W_pool) // 2
            x_level_k = x_level_k[:, :, trim_l : trim_l + W_pool]
        elif W < W_pool:
            pad_l = (W_pool - W) // 2
            x_level_k = F.pad(x_level_k, [0, 0, 0, 0, pad_l, W_pool - W - pad_l, 0, 0])

        windows = window_partition_noreshape(x_level_k, window_size_glo)
        nWh, nWw = windows.shape[1:3]
        if block.pool_method == "mean":
            pooled = windows.mean(axis=[3, 4])
        elif block.pool_method == "max":
            pooled = windows.amax(axis=[3, 4])
        elif block.pool_method == "fc":
            # the learned weights act on the within-window position (row-major), shared by channels
            windows = _swap(windows.reshape([B, nWh, nWw, window_size_glo * window_size_glo, C]), 3, 4)
            pooled = block.pool_layers[k](windows).reshape([B, nWh, nWw, C])
        else:
            windows = windows.reshape([-1, window_size_glo, window_size_glo, C]).transpose([0, 3, 1, 2])
            pooled = block.pool_layers[k](windows).reshape([B, nWh, nWw, C])
        pooled_all.append(pooled)
    return pooled_all


def _make_pool_layers(pool_method, focal_level, window_size_glo, dim):
    pool_layers = nn.LayerList()
    if pool_method == "none":
        return pool_layers
    for k in range(focal_level - 1):
        size = math.floor(window_size_glo / (2**k))
        if pool_method == "fc":
            layer = nn.Linear(size * size, 1)
            layer.weight.set_value(paddle.full(layer.weight.shape, 1.0 / (size * size), dtype=layer.weight.dtype))
            layer.bias.set_value(paddle.zeros(layer.bias.shape, dtype=layer.bias.dtype))
            pool_layers.append(layer)
        elif pool_method == "conv":
            pool_layers.append(nn.Conv2D(dim, dim, kernel_size=size, stride=size, groups=dim))
    return pool_layers


class WindowAttention(nn.Layer):
    """v1 focal attention of one window: its own tokens, the rolled neighbour tokens within
    ``expand_size`` of it, and the pooled windows of each coarser focal level."""

    def __init__(self, dim, expand_size, window_size, focal_window, focal_level, num_heads,
                 qkv_bias=True, qk_scale=None, attn_drop=0.0, proj_drop=0.0, pool_method="none"):
        super().__init__()
        self.dim = dim
        self.expand_size = expand_size
        self.window_size = window_size
        self.pool_method = pool_method
        self.num_heads = num_heads
        head_dim = dim // num_heads
        # `or`, as officially: qk_scale False/None/0 all mean head_dim ** -0.5
        self.scale = qk_scale or head_dim**-0.5
        self.focal_level = focal_level
        self.focal_window = focal_window
        wh, ww = window_size

        self.relative_position_bias_table = _zeros_parameter(self, [(2 * wh - 1) * (2 * ww - 1), num_heads])
        self.register_buffer(
            "relative_position_index", get_relative_position_index(window_size, window_size), persistable=True
        )

        if self.expand_size > 0 and focal_level > 0:
            es = self.expand_size
            self.window_size_of_key = 4 * wh * ww - 4 * (wh - es) * (wh - es)
            self.relative_position_bias_table_to_neighbors = _zeros_parameter(
                self, [1, num_heads, wh * ww, self.window_size_of_key])
            # positions of the four rolled copies (tl, tr, bl, br) that lie outside the window itself
            mask_tl = paddle.ones([wh, ww])
            mask_tl[:-es, :-es] = 0
            mask_tr = paddle.ones([wh, ww])
            mask_tr[:-es, es:] = 0
            mask_bl = paddle.ones([wh, ww])
            mask_bl[es:, :-es] = 0
            mask_br = paddle.ones([wh, ww])
            mask_br[es:, es:] = 0
            mask_rolled = paddle.stack((mask_tl, mask_tr, mask_bl, mask_br), 0).flatten()
            self.register_buffer("valid_ind_rolled", paddle.nonzero(mask_rolled).reshape([-1]), persistable=True)

        if pool_method != "none" and focal_level > 1:
            self.relative_position_bias_table_to_windows = nn.ParameterList()
            self.unfolds = nn.LayerList()
            for k in range(focal_level - 1):
                stride = 2**k
                kernel_size = 2 * (self.focal_window // 2) + 2**k + (2**k - 1)
                self.unfolds.append(
                    nn.Unfold(kernel_sizes=[kernel_size, kernel_size], strides=stride, paddings=kernel_size // 2)
                )
                self.relative_position_bias_table_to_windows.append(_zeros_parameter(
                    self, [num_heads, (wh + focal_window + 2**k - 2) * (ww + focal_window + 2**k - 2)]))
                self.register_buffer(
                    f"relative_position_index_{k}",
                    get_relative_position_index(window_size, to_2tuple(focal_window + 2**k - 1)), persistable=True)
                if k > 0:
                    # a stride-2^k unfold of a kernel one 2^k-1 border larger than the focal region;
                    # only its bottom-right (fw + 2^k - 1)^2 part is kept
                    mask = paddle.zeros([kernel_size, kernel_size])
                    mask[(2**k) - 1:, (2**k) - 1:] = 1
                    self.register_buffer(
                        f"valid_ind_unfold_{k}", paddle.nonzero(mask.flatten()).reshape([-1]), persistable=True
                    )

        self.qkv = nn.Linear(dim, dim * 3, bias_attr=None if qkv_bias else False)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        self.softmax = nn.Softmax(axis=-1)

    def _split_heads(self, windows):
        """(n, ws, ws, C) -> (n, nH, ws*ws, hd)."""
        n, wh, ww, C = windows.shape
        return _swap(windows.reshape([n, wh * ww, self.num_heads, C // self.num_heads]), 1, 2)

    def forward(self, x_all, mask_all):
        x = x_all[0]
        B, H, W, C = x.shape
        ws = self.window_size[0]
        window_area = self.window_size[0] * self.window_size[1]
        qkv = self.qkv(x).reshape([B, H, W, 3, C]).transpose([3, 0, 1, 2, 4])
        q, k, v = qkv[0], qkv[1], qkv[2]
        q_windows = self._split_heads(window_partition(q, ws))
        k_windows = self._split_heads(window_partition(k, ws))
        v_windows = self._split_heads(window_partition(v, ws))

        biases = [
            paddle.index_select(
                self.relative_position_bias_table, _index(self.relative_position_index).reshape([-1]), axis=0
            )
            .reshape([window_area, window_area, -1])
            .transpose([2, 0, 1])
            .unsqueeze(0)
        ]
        masks = [mask_all[0]]

        if self.expand_size > 0 and self.focal_level > 0:
            es = self.expand_size
            # the neighbours are cyclic: border windows see the opposite border, unmasked
            shifts = ((-es, -es), (-es, es), (es, -es), (es, es))
            k_rolled = paddle.concat(
                [self._split_heads(window_partition(paddle.roll(k, list(s), axis=[1, 2]), ws)) for s in shifts], 2
            )
            v_rolled = paddle.concat(
                [self._split_heads(window_partition(paddle.roll(v, list(s), axis=[1, 2]), ws)) for s in shifts], 2
            )
            valid = _index(self.valid_ind_rolled)
            k_rolled = paddle.concat((k_windows, paddle.index_select(k_rolled, valid, axis=2)), 2)
            v_rolled = paddle.concat((v_windows, paddle.index_select(v_rolled, valid, axis=2)), 2)
            biases.append(self.relative_position_bias_table_to_neighbors)
            masks.append(None)
        else:
            k_rolled, v_rolled = k_windows, v_windows

        k_all, v_all = [k_rolled], [v_rolled]
        if self.pool_method != "none" and self.focal_level > 1:
            for k in range(self.focal_level - 1):
                unfold = self.unfolds[k]
                kernel = unfold.kernel_sizes[0]
                pooled = x_all[k + 1]
                nWh, nWw = pooled.shape[1:3]
                width = (self.focal_window + 2**k - 1) ** 2

                # pooled windows that the unfold took from its zero padding are masked out
                ones = paddle.ones([1, 1, nWh, nWw], dtype=pooled.dtype)
                unfolded_mask = _swap(unfold(ones).reshape([kernel * kernel, -1]), 0, 1)
                qkv_pooled = self.qkv(pooled).reshape([B, nWh, nWw, 3, C]).transpose([3, 0, 4, 1, 2])
                k_pooled = self._unfold_heads(unfold, qkv_pooled[1])
                v_pooled = self._unfold_heads(unfold, qkv_pooled[2])
                if k > 0:
                    valid = _index(getattr(self, f"valid_ind_unfold_{k}"))
                    unfolded_mask = paddle.index_select(unfolded_mask, valid, axis=1)
                    k_pooled = paddle.index_select(k_pooled, valid, axis=2)
                    v_pooled = paddle.index_select(v_pooled, valid, axis=2)
                if unfolded_mask.shape[-1] != width:
                    raise ValueError(
                        f"focal_window {self.focal_window} gives {unfolded_mask.shape[-1]} pooled keys at focal level "
                        f"{k + 1} "
                        f"but a {width}-wide position bias; the official code only works with an odd focal_window"
                    )
                k_all.append(k_pooled)
                v_all.append(v_pooled)

                index_k = _index(getattr(self, f"relative_position_index_{k}"))
                biases.append(
                    paddle.index_select(self.relative_position_bias_table_to_windows[k], index_k.reshape([-1]), axis=1)
                    .reshape([-1, window_area, width])
                    .unsqueeze(0)
                )
                masks.append(paddle.where(unfolded_mask == 0, paddle.full_like(unfolded_mask, _MASK_VALUE),
                                          paddle.zeros_like(unfolded_mask)).reshape([-1, 1, 1, width]))
        k_all = paddle.concat(k_all, 2)
        v_all = paddle.concat(v_all, 2)

        nH, n = self.num_heads, q_windows.shape[0]
        bias = paddle.concat([b.expand([1, nH, window_area, b.shape[-1]]) for b in biases], -1)
        widths = [b.shape[-1] for b in biases]
        if any(m is not None for m in masks):
            # The masks (0 or -100) go into the bias before it meets q k^T: exact where a mask is 0; where
            # it is -100 the weight is e^-100-small either way. They vary by window and key (the shift
            # mask also by query), never by head, so they are built head-free; windows are batch-major.
            n_windows = max(m.shape[0] for m in masks if m is not None)
            rows = max(math.prod(m.shape) // (m.shape[0] * w) for m, w in zip(masks, widths) if m is not None)
            mask = paddle.concat([
                paddle.zeros([1, 1, 1, w], dtype=bias.dtype).expand([n_windows, 1, rows, w]) if m is None
                else m.astype(bias.dtype).reshape([m.shape[0], 1, -1, w]).expand([n_windows, 1, rows, w])
                for m, w in zip(masks, widths)], -1)
            bias = (mask + bias).unsqueeze(0).expand([n // n_windows, -1, -1, -1, -1]).flatten(0, 1)
        x = attention(q_windows, k_all, v_all, self.scale, bias, self.attn_drop)
        x = _swap(x, 1, 2).reshape([n, window_area, C])
        return self.proj_drop(self.proj(x))

    def _unfold_heads(self, unfold, t):
        """(B, C, nWh, nWw) -> (B * L, nH, kernel**2, hd): the kernel x kernel pooled neighbourhood of each window."""
        B, C = t.shape[:2]
        kernel = unfold.kernel_sizes[0]
        t = unfold(t).reshape([B, C, kernel, kernel, -1]).transpose([0, 4, 2, 3, 1])
        return _swap(t.reshape([-1, kernel * kernel, self.num_heads, C // self.num_heads]), 1, 2)


class FocalTransformerBlock(nn.Layer):
    """v1 block: pre-norm focal attention (on a zero-padded map) and MLP, each with a residual."""

    def __init__(self, dim, input_resolution, num_heads, window_size=7, expand_size=0, shift_size=0,
                 mlp_ratio=4.0, qkv_bias=True, qk_scale=None, drop=0.0, attn_drop=0.0, drop_path=0.0,
                 act_layer=nn.GELU, norm_layer=None, pool_method="none",
                 focal_level=1, focal_window=1, use_layerscale=False, layerscale_value=1e-4):
        super().__init__()
        _check_pool_method(pool_method)
        norm_layer = make_norm(norm_layer)
        self.dim = dim
        self.input_resolution = tuple(input_resolution)
        self.num_heads = num_heads
        self.window_size = window_size
        self.shift_size = shift_size
        self.expand_size = expand_size
        self.mlp_ratio = mlp_ratio
        self.pool_method = pool_method
        self.focal_level = focal_level
        self.focal_window = focal_window
        self.use_layerscale = use_layerscale

        if min(self.input_resolution) <= self.window_size:
            # one window covers the map: no neighbours, no shift
            self.expand_size = 0
            self.shift_size = 0
            self.window_size = min(self.input_resolution)
        if not 0 <= self.shift_size < self.window_size:
            raise ValueError(f"shift_size {self.shift_size} must be in [0, window_size {self.window_size})")
        self.window_size_glo = self.window_size

        self.pool_layers = _make_pool_layers(pool_method, focal_level, self.window_size_glo, dim)
        self.norm1 = norm_layer(dim)
        self.attn = WindowAttention(
            dim, expand_size=self.expand_size, window_size=to_2tuple(self.window_size),
            focal_window=focal_window, focal_level=focal_level, num_heads=num_heads,
            qkv_bias=qkv_bias, qk_scale=qk_scale, attn_drop=attn_drop, proj_drop=drop, pool_method=pool_method)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = norm_layer(dim)
        self.mlp = Mlp(in_features=dim, hidden_features=int(dim * mlp_ratio), act_layer=act_layer, drop=drop)

        if self.shift_size > 0:
            self.register_buffer(
                "attn_mask", get_shift_mask(*self.input_resolution, self.window_size, self.shift_size), persistable=True
            )
        else:
            self.attn_mask = None

        if self.use_layerscale:
            self.gamma_1 = self.create_parameter([dim], default_initializer=nn.initializer.Constant(layerscale_value))
            self.gamma_2 = self.create_parameter([dim], default_initializer=nn.initializer.Constant(layerscale_value))

    def forward(self, x):
        H, W = self.input_resolution
        B, L, C = x.shape
        if L != H * W:
            raise ValueError(f"block built for {H}x{W} tokens got {L}: rebuild the model for this input size")
        shortcut = x
        x = self.norm1(x).reshape([B, H, W, C])

        # zeros are padded after norm1, so padded tokens carry k = v = qkv.bias and are attended to
        pad_r = (self.window_size - W % self.window_size) % self.window_size
        pad_b = (self.window_size - H % self.window_size) % self.window_size
        if pad_r > 0 or pad_b > 0:
            x = F.pad(x, [0, 0, 0, pad_b, 0, pad_r, 0, 0])
        Hp, Wp = x.shape[1:3]

        shifted_x = (
            paddle.roll(x, shifts=[-self.shift_size, -self.shift_size], axis=[1, 2]) if self.shift_size > 0 else x
        )
        x_windows_all = [shifted_x]
        x_window_masks_all = [self.attn_mask]
        if self.focal_level > 1 and self.pool_method != "none":
            x_windows_all += _pool_windows(self, shifted_x)
            x_window_masks_all += [None] * (self.focal_level - 1)

        attn_windows = self.attn(x_windows_all, x_window_masks_all)
        attn_windows = attn_windows[:, : self.window_size**2].reshape([-1, self.window_size, self.window_size, C])
        shifted_x = window_reverse(attn_windows, self.window_size, Hp, Wp)
        x = (
            paddle.roll(shifted_x, shifts=[self.shift_size, self.shift_size], axis=[1, 2])
            if self.shift_size > 0
            else shifted_x
        )
        x = x[:, :H, :W].reshape([B, H * W, C])

        x = shortcut + self.drop_path(self.gamma_1 * x if self.use_layerscale else x)
        y = self.mlp(self.norm2(x))
        return x + self.drop_path(self.gamma_2 * y if self.use_layerscale else y)


class PatchEmbed(nn.Layer):
    """Stem (``is_stem``) and downsampling: a strided convolution, then a norm over channels."""

    def __init__(self, img_size=(224, 224), patch_size=4, in_chans=3, embed_dim=96,
                 use_conv_embed=False, norm_layer=None, use_pre_norm=False, is_stem=False):
        super().__init__()
        patch_size = to_2tuple(patch_size)
        img_size = to_2tuple(img_size)
        self.img_size = img_size
        self.patch_size = patch_size
        self.patches_resolution = [img_size[0] // patch_size[0], img_size[1] // patch_size[1]]
        self.num_patches = self.patches_resolution[0] * self.patches_resolution[1]
        self.in_chans = in_chans
        self.embed_dim = embed_dim
        self.use_pre_norm = use_pre_norm
        self.use_conv_embed = use_conv_embed

        if use_conv_embed:
            # overlapping: k7 s4 p2 for the stem, k3 s2 p1 for the downsamples, whatever patch_size says
            kernel_size, padding, stride = (7, 2, 4) if is_stem else (3, 1, 2)
            self.kernel_size = kernel_size
            self.proj = nn.Conv2D(in_chans, embed_dim, kernel_size=kernel_size, stride=stride, padding=padding)
        else:
            self.proj = nn.Conv2D(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

        if self.use_pre_norm:
            self.pre_norm = nn.GroupNorm(1, in_chans) if norm_layer is not None else None
        self.norm = norm_layer(embed_dim) if norm_layer is not None else None

    def forward(self, x):
        H, W = x.shape[2:]
        if (H, W) != tuple(self.img_size):
            raise ValueError(f"input is {H}x{W} but this model was built for {self.img_size[0]}x{self.img_size[1]}: "
                             "build it with that img_size")
        if self.use_pre_norm and self.pre_norm is not None:
            x = self.pre_norm(x)
        x = _swap(self.proj(x).flatten(2), 1, 2)
        if self.norm is not None:
            x = self.norm(x)
        return x


class BasicLayer(nn.Layer):
    """One stage: ``depth`` blocks, then (all but the last stage) a downsampling :class:`PatchEmbed`."""

    block_class = FocalTransformerBlock

    def __init__(self, dim, input_resolution, depth, num_heads, window_size, expand_size, expand_layer="all",
                 mlp_ratio=4.0, qkv_bias=True, qk_scale=None, drop=0.0, attn_drop=0.0,
                 drop_path=0.0, norm_layer=None, pool_method="none",
                 focal_level=1, focal_window=1, use_conv_embed=False, use_shift=False, use_pre_norm=False,
                 downsample=None, use_checkpoint=False, use_layerscale=False, layerscale_value=1e-4, **block_kwargs):
        super().__init__()
        if expand_layer not in _EXPAND_FACTOR:
            raise ValueError(f"expand_layer {expand_layer!r} is not one of {tuple(_EXPAND_FACTOR)}")
        norm_layer = make_norm(norm_layer)
        self.dim = dim
        self.input_resolution = tuple(input_resolution)
        self.depth = depth
        self.use_checkpoint = use_checkpoint
        self.return_map = False
        expand_factor = _EXPAND_FACTOR[expand_layer]
        self.blocks = nn.LayerList([
            self.block_class(
                dim=dim, input_resolution=input_resolution, num_heads=num_heads, window_size=window_size,
                shift_size=(0 if i % 2 == 0 else window_size // 2) if use_shift else 0,
                expand_size=0 if i % 2 == expand_factor else expand_size,
                mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, qk_scale=qk_scale, drop=drop, attn_drop=attn_drop,
                drop_path=drop_path[i] if isinstance(drop_path, (list, tuple)) else drop_path,
                norm_layer=norm_layer, pool_method=pool_method, focal_level=focal_level, focal_window=focal_window,
                use_layerscale=use_layerscale, layerscale_value=layerscale_value, **block_kwargs)
            for i in range(depth)])
        if downsample is not None:
            self.downsample = downsample(
                img_size=input_resolution, patch_size=2, in_chans=dim, embed_dim=2 * dim,
                use_conv_embed=use_conv_embed, norm_layer=norm_layer, use_pre_norm=use_pre_norm, is_stem=False)
        else:
            self.downsample = None

    def forward(self, x):
        for blk in self.blocks:
            if self.use_checkpoint and self.training:
                # the official BasicLayer checkpoints every block (recomputed in the backward)
                x = recompute(blk, x)
            else:
                x = blk(x)
        image = None
        if self.downsample is not None or self.return_map:
            image = x.reshape([x.shape[0], self.input_resolution[0], self.input_resolution[1], -1]).transpose(
                [0, 3, 1, 2]
            )
        if self.downsample is not None:
            x = self.downsample(image)
        # features_only: (NCHW map before the downsampling, tokens after it)
        return (image, x) if self.return_map else x


class FocalTransformer(ClassifierMixin, nn.Layer):
    """Focal Transformer v1 with the official constructor (``classification/focal_transformer.py``).

    Unlike the official one, unknown keyword arguments raise TypeError. ``features_only`` returns the NCHW
    map of each stage before its downsampling (strides 4, 8, 16, 32) that ``out_indices`` picks,
    described by ``feature_info``."""

    layer_class = BasicLayer

    def __init__(self, img_size=224, patch_size=4, in_chans=3, num_classes=1000, embed_dim=96,
                 depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24), window_size=7, mlp_ratio=4.0,
                 qkv_bias=True, qk_scale=None, drop_rate=0.0, attn_drop_rate=0.0, drop_path_rate=0.1,
                 norm_layer=None, ape=False, patch_norm=True, use_checkpoint=False, use_shift=False,
                 focal_stages=(0, 1, 2, 3), focal_levels=(1, 1, 1, 1), focal_windows=(7, 5, 3, 1),
                 focal_pool="fc", expand_stages=(0, 1, 2, 3), expand_sizes=(3, 3, 3, 3), expand_layer="all",
                 use_conv_embed=False, use_layerscale=False, layerscale_value=1e-4, use_pre_norm=False,
                 features_only=False, out_indices=(0, 1, 2, 3), **kwargs):
        super().__init__()
        # expand_stages is accepted and unused, as officially (expand_sizes alone decides)
        norm_layer = make_norm(norm_layer)
        self.num_classes = check_num_classes(num_classes)
        self.num_layers = len(depths)
        self.features_only = features_only
        # the conv stem has stride 4 whatever patch_size says; each downsampling halves
        stem = 4 if use_conv_embed else to_2tuple(patch_size)[0]
        stages = [(int(embed_dim * 2**i), stem * 2**i, f"layers.{i}") for i in range(self.num_layers)]
        self.feature_info, self.out_indices = select_features(stages, out_indices)
        self.embed_dim = embed_dim
        self.ape = ape
        self.patch_norm = patch_norm
        self.num_features = int(embed_dim * 2 ** (self.num_layers - 1))
        self.mlp_ratio = mlp_ratio

        self.patch_embed = PatchEmbed(
            img_size=to_2tuple(img_size), patch_size=patch_size, in_chans=in_chans, embed_dim=embed_dim,
            use_conv_embed=use_conv_embed, is_stem=True, norm_layer=norm_layer if self.patch_norm else None)
        num_patches = self.patch_embed.num_patches
        patches_resolution = self.patch_embed.patches_resolution
        self.patches_resolution = patches_resolution

        if self.ape:
            self.absolute_pos_embed = _zeros_parameter(self, [1, num_patches, embed_dim])
        self.pos_drop = nn.Dropout(p=drop_rate)

        dpr = [float(x) for x in paddle.linspace(0, drop_path_rate, sum(depths)).tolist()]
        extra = self._layer_kwargs(kwargs)
        self.layers = nn.LayerList()
        for i_layer in range(self.num_layers):
            self.layers.append(self.layer_class(
                dim=int(embed_dim * 2**i_layer),
                input_resolution=(patches_resolution[0] // (2**i_layer), patches_resolution[1] // (2**i_layer)),
                depth=depths[i_layer], num_heads=num_heads[i_layer], window_size=window_size,
                mlp_ratio=self.mlp_ratio, qkv_bias=qkv_bias, qk_scale=qk_scale, drop=drop_rate,
                attn_drop=attn_drop_rate, drop_path=dpr[sum(depths[:i_layer]):sum(depths[:i_layer + 1])],
                norm_layer=norm_layer, pool_method=focal_pool if i_layer in focal_stages else "none",
                downsample=PatchEmbed if i_layer < self.num_layers - 1 else None,
                focal_level=focal_levels[i_layer], focal_window=focal_windows[i_layer],
                expand_size=expand_sizes[i_layer], expand_layer=expand_layer, use_conv_embed=use_conv_embed,
                use_shift=use_shift, use_pre_norm=use_pre_norm, use_checkpoint=use_checkpoint,
                use_layerscale=use_layerscale, layerscale_value=layerscale_value, **extra))

        self.norm = norm_layer(self.num_features)
        self.avgpool = AdaptiveAvgPool1D(1)
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        for layer in self.layers:
            layer.return_map = features_only

    def _layer_kwargs(self, kwargs):
        """Constructor arguments that only the v2 stages take; anything else is a mistake."""
        reject_unknown(type(self).__name__, kwargs)
        return {}

    def forward_features(self, x):
        """The last stage's normed tokens (B, N, C), or with ``features_only`` the picked stage maps."""
        x = self.patch_embed(x)
        if self.ape:
            x = x + self.absolute_pos_embed
        x = self.pos_drop(x)
        if self.features_only:
            maps = []
            for i in range(max(self.out_indices) + 1):
                feat, x = self.layers[i](x)
                if i in self.out_indices:
                    maps.append(feat)
            return maps
        for layer in self.layers:
            x = layer(x)
        return self.norm(x)

    def pool(self, x):
        return paddle.flatten(self.avgpool(_swap(x, 1, 2)), 1)

    @dense_layout
    def forward(self, x):
        x = self.forward_features(x)
        return x if self.features_only else self.forward_head(x)


def get_topk_closest_indice(q_windows, k_windows, topk=1):
    """For each query-grid cell, the ``topk`` key-grid cells nearest to its centre (indices into the
    row-major key grid) and their (dy, dx) offsets as float32; topk is clamped to the key count."""
    coords_h_q = paddle.arange(q_windows[0])
    coords_w_q = paddle.arange(q_windows[1])
    if q_windows[0] != k_windows[0]:
        factor = k_windows[0] // q_windows[0]
        coords_h_q = coords_h_q * factor + factor // 2
        coords_w_q = coords_w_q * factor + factor // 2
    coords_q = paddle.stack(paddle.meshgrid(coords_h_q, coords_w_q)).flatten(1)
    coords_k = paddle.stack(paddle.meshgrid(paddle.arange(k_windows[0]), paddle.arange(k_windows[1]))).flatten(1)
    relative_coords = coords_q[:, :, None] - coords_k[:, None, :]
    dists = paddle.sqrt(relative_coords[0].astype("float32") ** 2 + relative_coords[1].astype("float32") ** 2)
    topk = min(topk, dists.shape[1])
    # distances tie a lot, so which cells win depends on the top-k kernel: checkpoints carry these
    # buffers and loading them (not rebuilding them) is what reproduces the official model
    _, indice_topk = paddle.topk(-dists, topk, axis=1)
    relative_coord_topk = paddle.take_along_axis(relative_coords, indice_topk.unsqueeze(0).tile([2, 1, 1]), axis=2)
    return indice_topk.astype("int64"), relative_coord_topk.transpose([1, 2, 0]).astype("float32"), topk


class WindowAttentionV2(nn.Layer):
    """v2 ("Focal-fast") attention: each window attends to the top-k cells nearest to it at every
    focal level (the full map at level 0, pooled windows above), with an MLP position bias."""

    def __init__(self, dim, input_resolution, expand_size, shift_size, window_size, window_size_glo, focal_window,
                 focal_level, num_heads, qkv_bias=True, qk_scale=None, attn_drop=0.0, proj_drop=0.0,
                 pool_method="none", topK=64):
        super().__init__()
        self.dim = dim
        self.shift_size = shift_size
        self.expand_size = expand_size
        self.window_size = window_size
        self.window_size_glo = window_size_glo
        self.pool_method = pool_method
        self.input_resolution = tuple(input_resolution)
        self.num_heads = num_heads
        head_dim = dim // num_heads
        self.scale = qk_scale or head_dim**-0.5
        self.focal_level = focal_level
        self.focal_window = focal_window
        self.nWh = self.input_resolution[0] // self.window_size[0]
        self.nWw = self.input_resolution[1] // self.window_size[1]

        self.qkv = nn.Linear(dim, dim * 3, bias_attr=None if qkv_bias else False)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        self.softmax = nn.Softmax(axis=-1)
        self.topK = topK

        coords_window = paddle.stack(paddle.meshgrid(
            paddle.arange(self.window_size[0]) - self.window_size[0] // 2,
            paddle.arange(self.window_size[1]) - self.window_size[1] // 2), axis=-1)
        self.register_buffer("window_coords", coords_window.astype("int64"), persistable=True)

        self.coord2rpb_all = nn.LayerList()
        self.topks = []
        for k in range(self.focal_level):
            key_grid = self.input_resolution if k == 0 else (self.nWh, self.nWw)
            indice, coord, topk = get_topk_closest_indice((self.nWh, self.nWw), key_grid, self.topK)
            self.topks.append(topk)
            if k > 0:
                # pooled cells are one window apart
                coord = coord * self.window_size[0]
            coord_window = coord.unsqueeze(1) + coords_window.reshape([-1, 2]).astype("float32")[None, :, None, :]
            self.register_buffer(f"topk_cloest_indice_{k}", indice, persistable=True)
            self.register_buffer(f"topk_cloest_coords_{k}", coord_window, persistable=True)
            self.coord2rpb_all.append(
                nn.Sequential(nn.Linear(2, head_dim), nn.ReLU(), nn.Linear(head_dim, self.num_heads))
            )

    def forward(self, x_all, mask_all=None):
        # v2 applies neither the shift mask nor a pooled-window mask (mask_all is unused officially)
        x = x_all[0]
        B, H, W, C = x.shape
        nH, hd = self.num_heads, C // self.num_heads
        qkv = self.qkv(x).reshape([B, H, W, 3, C]).transpose([3, 0, 1, 2, 4])
        q, k, v = qkv[0], qkv[1], qkv[2]
        ws = self.window_size[0]
        q_windows = _swap(window_partition(q, ws).reshape([-1, ws * ws, nH, hd]), 1, 2)

        k_all, v_all, rpbs = [], [], []
        for level in range(self.focal_level):
            indice = _index(getattr(self, f"topk_cloest_indice_{level}"))
            coords = getattr(self, f"topk_cloest_coords_{level}").astype(x.dtype)
            rpbs.append(self.coord2rpb_all[level](coords))
            if level == 0:
                k_k = k.reshape([B, -1, nH, hd])
                v_k = v.reshape([B, -1, nH, hd])
            else:
                qkv_k = self.qkv(x_all[level]).reshape([B, -1, 3, nH, hd])
                k_k, v_k = qkv_k[:, :, 1], qkv_k[:, :, 2]
            n_win, topk = indice.shape
            flat = indice.reshape([-1])
            k_sel = _swap(paddle.index_select(k_k, flat, axis=1).reshape([B, n_win, topk, nH, hd]), 2, 3)
            v_sel = _swap(paddle.index_select(v_k, flat, axis=1).reshape([B, n_win, topk, nH, hd]), 2, 3)
            k_all.append(k_sel.reshape([-1, nH, topk, hd]))
            v_all.append(v_sel.reshape([-1, nH, topk, hd]))
        k_all = paddle.concat(k_all, 2)
        v_all = paddle.concat(v_all, 2)

        attn = (q_windows * self.scale) @ _swap(k_all, -2, -1)
        rpb = paddle.concat(rpbs, 2).transpose([0, 3, 1, 2])
        attn = (attn.reshape([B, -1] + list(attn.shape[1:])) + rpb.unsqueeze(0)).reshape(attn.shape)
        attn = self.attn_drop(self.softmax(attn))
        x = _swap(attn @ v_all, 1, 2).flatten(2)
        return self.proj_drop(self.proj(x))


class FocalTransformerBlockV2(nn.Layer):
    """v2 block: like v1 but without padding (the map must be a multiple of the window)."""

    def __init__(self, dim, input_resolution, num_heads, window_size=7, expand_size=0, shift_size=0,
                 mlp_ratio=4.0, qkv_bias=True, qk_scale=None, drop=0.0, attn_drop=0.0, drop_path=0.0,
                 act_layer=nn.GELU, norm_layer=None, pool_method="none",
                 focal_level=1, focal_window=1, topK=64, use_layerscale=False, layerscale_value=1e-4):
        super().__init__()
        _check_pool_method(pool_method)
        norm_layer = make_norm(norm_layer)
        self.dim = dim
        self.input_resolution = tuple(input_resolution)
        self.num_heads = num_heads
        self.window_size = window_size
        self.shift_size = shift_size
        self.expand_size = expand_size
        self.mlp_ratio = mlp_ratio
        self.pool_method = pool_method
        self.focal_level = focal_level
        self.focal_window = focal_window
        self.use_layerscale = use_layerscale

        if min(self.input_resolution) <= self.window_size:
            self.expand_size = 0
            self.shift_size = 0
            self.window_size = min(self.input_resolution)
        if not 0 <= self.shift_size < self.window_size:
            raise ValueError(f"shift_size {self.shift_size} must be in [0, window_size {self.window_size})")
        H, W = self.input_resolution
        self.window_size_glo = self.window_size

        self.pool_layers = _make_pool_layers(pool_method, focal_level, self.window_size_glo, dim)
        self.norm1 = norm_layer(dim)
        self.attn = WindowAttentionV2(
            dim, input_resolution=input_resolution, expand_size=self.expand_size, shift_size=self.shift_size,
            window_size=to_2tuple(self.window_size), window_size_glo=to_2tuple(self.window_size_glo),
            focal_window=focal_window, focal_level=self.focal_level, num_heads=num_heads, qkv_bias=qkv_bias,
            qk_scale=qk_scale, attn_drop=attn_drop, proj_drop=drop, pool_method=pool_method, topK=topK)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = norm_layer(dim)
        self.mlp = Mlp(in_features=dim, hidden_features=int(dim * mlp_ratio), act_layer=act_layer, drop=drop)

        if self.shift_size > 0:
            # built and saved as officially, though v2 attention never applies it
            self.register_buffer("attn_mask", get_shift_mask(H, W, self.window_size, self.shift_size), persistable=True)
        else:
            self.attn_mask = None

        if self.use_layerscale:
            self.gamma_1 = self.create_parameter([dim], default_initializer=nn.initializer.Constant(layerscale_value))
            self.gamma_2 = self.create_parameter([dim], default_initializer=nn.initializer.Constant(layerscale_value))

    def forward(self, x):
        H, W = self.input_resolution
        B, L, C = x.shape
        if L != H * W:
            raise ValueError(f"block built for {H}x{W} tokens got {L}: rebuild the model for this input size")
        if H % self.window_size or W % self.window_size:
            raise ValueError(f"Focal-fast has no padding: its {H}x{W} stage map is not a multiple of the "
                             f"{self.window_size}x{self.window_size} window; choose img_size accordingly")
        shortcut = x
        x = self.norm1(x).reshape([B, H, W, C])
        shifted_x = (
            paddle.roll(x, shifts=[-self.shift_size, -self.shift_size], axis=[1, 2]) if self.shift_size > 0 else x
        )
        x_windows_all = [shifted_x]
        if self.focal_level > 1 and self.pool_method != "none":
            x_windows_all += _pool_windows(self, shifted_x)
        elif self.focal_level > 1:
            raise ValueError("Focal-fast with focal_level > 1 needs pooled windows: put this stage in focal_stages")

        attn_windows = self.attn(x_windows_all)
        attn_windows = attn_windows[:, : self.window_size**2].reshape([-1, self.window_size, self.window_size, C])
        shifted_x = window_reverse(attn_windows, self.window_size, H, W)
        x = (
            paddle.roll(shifted_x, shifts=[self.shift_size, self.shift_size], axis=[1, 2])
            if self.shift_size > 0
            else shifted_x
        )
        x = x.reshape([B, H * W, C])

        x = shortcut + self.drop_path(self.gamma_1 * x if self.use_layerscale else x)
        y = self.mlp(self.norm2(x))
        return x + self.drop_path(self.gamma_2 * y if self.use_layerscale else y)


class BasicLayerV2(BasicLayer):
    block_class = FocalTransformerBlockV2


class FocalTransformerV2(FocalTransformer):
    """Focal-fast (official ``FocalTransformer`` of ``classification/focal_transformer_v2.py``); takes
    ``focal_topK`` on top of the v1 constructor arguments."""

    layer_class = BasicLayerV2

    def __init__(self, img_size=224, patch_size=4, in_chans=3, num_classes=1000, embed_dim=96,
                 depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24), window_size=7, mlp_ratio=4.0,
                 qkv_bias=True, qk_scale=None, drop_rate=0.0, attn_drop_rate=0.0, drop_path_rate=0.1,
                 norm_layer=None, ape=False, patch_norm=True, use_checkpoint=False, use_shift=False,
                 focal_stages=(0, 1, 2, 3), focal_levels=(1, 1, 1, 1), focal_windows=(7, 5, 3, 1),
                 focal_topK=64, focal_pool="fc", expand_stages=(0, 1, 2, 3), expand_sizes=(3, 3, 3, 3),
                 expand_layer="all", use_conv_embed=False, use_layerscale=False, layerscale_value=1e-4,
                 use_pre_norm=False, features_only=False, out_indices=(0, 1, 2, 3), **kwargs):
        super().__init__(
            img_size=img_size, patch_size=patch_size, in_chans=in_chans, num_classes=num_classes,
            embed_dim=embed_dim, depths=depths, num_heads=num_heads, window_size=window_size,
            mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, qk_scale=qk_scale, drop_rate=drop_rate,
            attn_drop_rate=attn_drop_rate, drop_path_rate=drop_path_rate, norm_layer=norm_layer, ape=ape,
            patch_norm=patch_norm, use_checkpoint=use_checkpoint, use_shift=use_shift,
            focal_stages=focal_stages, focal_levels=focal_levels, focal_windows=focal_windows,
            focal_pool=focal_pool, expand_stages=expand_stages, expand_sizes=expand_sizes,
            expand_layer=expand_layer, use_conv_embed=use_conv_embed, use_layerscale=use_layerscale,
            layerscale_value=layerscale_value, use_pre_norm=use_pre_norm, features_only=features_only,
            out_indices=out_indices, topK=focal_topK, **kwargs)

    def _layer_kwargs(self, kwargs):
        extra = {"topK": kwargs.pop("topK")}
        reject_unknown(type(self).__name__, kwargs)
        return extra
