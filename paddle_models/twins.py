"""Twins (PCPVT = ``CPVTV2``, SVT = ``ALTGVT``) in PaddlePaddle. Twin of ``torch_models/twins.py``.

Written from the official ``gvt.py`` (classification) and ``segmentation/gvt.py`` (dense backbone) of
Meituan-AutoML/Twins. Layer names and registration order follow the official classes: the state dict has
the official keys in the official order, with ``nn.Linear`` weights stored ``[in, out]`` (PaddleClas'
``gvt.py`` checkpoints use the same keys).

porthub additions to the official constructors: ``features_only`` (behave as the official segmentation
backbone: return the stage maps, LSA pads and masks) and the segmentation-only kwargs ``F4``,
``extra_norm`` and (``ALTGVT``) ``strides``.
"""

from __future__ import annotations

import numpy as np
import paddle
import paddle.nn.functional as F
from paddle import nn

from .layers import (
    ClassifierMixin,
    DropPath,
    LayerNorm,
    Mlp,
    attention,
    check_num_classes,
    dense_layout,
    make_norm,
    select_features,
    to_2tuple,
)

__all__ = [
    "Mlp",
    "GroupAttention",
    "Attention",
    "ViTAttention",
    "Block",
    "SBlock",
    "GroupBlock",
    "PatchEmbed",
    "PosCNN",
    "CPVTV2",
    "PCPVT",
    "ALTGVT",
]

#: the additive attention mask of the official segmentation LSA (not -inf)
_MASK_VALUE = -1000.0


def _check_heads(dim, num_heads):
    if dim % num_heads != 0:
        raise ValueError(f"embed dim {dim} must be divisible by num_heads {num_heads}")


class GroupAttention(nn.Layer):
    """LSA: attention inside non-overlapping ws x ws windows.

    ``pad_to_window`` selects the official segmentation behaviour (pad bottom/right to whole windows and
    mask); the classification code has no padding, so there the grid must be divisible by ``ws``.
    """

    def __init__(
        self, dim, num_heads=8, qkv_bias=False, qk_scale=None, attn_drop=0.0, proj_drop=0.0, ws=1, sr_ratio=1.0
    ):
        super().__init__()
        if ws == 1:
            raise ValueError("GroupAttention needs a window size ws > 1 (ws == 1 means GSA: use Attention)")
        _check_heads(dim, num_heads)
        self.dim = dim
        self.num_heads = num_heads
        head_dim = dim // num_heads
        self.scale = qk_scale or head_dim**-0.5
        self.qkv = nn.Linear(dim, dim * 3, bias_attr=None if qkv_bias else False)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        self.ws = ws
        self.pad_to_window = False

    def _window_mask(self, Hp, Wp, pad_b, pad_r, dtype):
        # The official code fills mask[:, -pad_b:, :] and mask[:, :, -pad_r:]; a zero pad makes that
        # slice "[-0:]", the whole axis, so masking only happens when both pads are positive.
        mask = paddle.zeros([1, Hp, Wp], dtype=dtype)
        mask[:, Hp - pad_b if pad_b > 0 else 0 :, :] = 1.0
        mask[:, :, Wp - pad_r if pad_r > 0 else 0 :] = 1.0
        hg, wg, ws = Hp // self.ws, Wp // self.ws, self.ws
        mask = mask.reshape([1, hg, ws, wg, ws]).transpose([0, 1, 3, 2, 4]).reshape([1, hg * wg, ws * ws])
        diff = mask.unsqueeze(2) - mask.unsqueeze(3)
        return paddle.where(diff != 0, paddle.full_like(diff, _MASK_VALUE), paddle.zeros_like(diff))

    def forward(self, x, H, W):
        B, N, C = x.shape
        ws = self.ws
        pad_r = (ws - W % ws) % ws
        pad_b = (ws - H % ws) % ws
        padded = pad_r > 0 or pad_b > 0
        if padded and not self.pad_to_window:
            raise ValueError(
                f"LSA window {ws} does not divide the {H}x{W} token grid; the official classification model "
                f"needs every stage grid divisible by its ws (build with features_only=True for the "
                f"segmentation backbone, which pads and masks)"
            )
        x = x.reshape([B, H, W, C])
        if padded:
            # the full per-axis form (first axis first) avoids Paddle's length-dependent pad conventions
            x = F.pad(x, [0, 0, 0, pad_b, 0, pad_r, 0, 0])
        Hp, Wp = H + pad_b, W + pad_r
        hg, wg = Hp // ws, Wp // ws
        x = x.reshape([B, hg, ws, wg, ws, C]).transpose([0, 1, 3, 2, 4, 5])
        qkv = (
            self.qkv(x)
            .reshape([B, hg * wg, ws * ws, 3, self.num_heads, C // self.num_heads])
            .transpose([3, 0, 1, 4, 2, 5])
        )
        q, k, v = qkv[0], qkv[1], qkv[2]
        mask = self._window_mask(Hp, Wp, pad_b, pad_r, x.dtype).unsqueeze(2) if padded else None
        x = (
            attention(q, k, v, self.scale, mask, self.attn_drop)
            .transpose([0, 1, 3, 2, 4])
            .reshape([B, hg, wg, ws, ws, C])
            .transpose([0, 1, 3, 2, 4, 5])
            .reshape([B, Hp, Wp, C])
        )
        if padded:
            x = x[:, :H, :W, :]
        x = self.proj(x.reshape([B, N, C]))
        return self.proj_drop(x)


class Attention(nn.Layer):
    """GSA: every token attends to a sub-sampled (conv k = s = sr_ratio) summary of the map."""

    def __init__(self, dim, num_heads=8, qkv_bias=False, qk_scale=None, attn_drop=0.0, proj_drop=0.0, sr_ratio=1):
        super().__init__()
        _check_heads(dim, num_heads)
        self.dim = dim
        self.num_heads = num_heads
        head_dim = dim // num_heads
        self.scale = qk_scale or head_dim**-0.5
        self.q = nn.Linear(dim, dim, bias_attr=None if qkv_bias else False)
        self.kv = nn.Linear(dim, dim * 2, bias_attr=None if qkv_bias else False)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        self.sr_ratio = sr_ratio
        if sr_ratio > 1:
            self.sr = nn.Conv2D(dim, dim, kernel_size=sr_ratio, stride=sr_ratio)
            # a plain LayerNorm (eps 1e-5), not the model's norm_layer
            self.norm = LayerNorm(dim)

    def forward(self, x, H, W):
        B, N, C = x.shape
        heads = self.num_heads
        q = self.q(x).reshape([B, N, heads, C // heads]).transpose([0, 2, 1, 3])
        if self.sr_ratio > 1:
            x = x.transpose([0, 2, 1]).reshape([B, C, H, W])
            x = self.sr(x).reshape([B, C, -1]).transpose([0, 2, 1])
            x = self.norm(x)
        kv = self.kv(x).reshape([B, -1, 2, heads, C // heads]).transpose([2, 0, 3, 1, 4])
        k, v = kv[0], kv[1]
        x = attention(q, k, v, self.scale, None, self.attn_drop).transpose([0, 2, 1, 3]).reshape([B, N, C])
        x = self.proj(x)
        return self.proj_drop(x)


class ViTAttention(nn.Layer):
    """timm 0.3.2's ViT attention (``SBlock``'s), global over all tokens."""

    def __init__(self, dim, num_heads=8, qkv_bias=False, qk_scale=None, attn_drop=0.0, proj_drop=0.0):
        super().__init__()
        self.num_heads = num_heads
        head_dim = dim // num_heads
        self.scale = qk_scale or head_dim**-0.5
        self.qkv = nn.Linear(dim, dim * 3, bias_attr=None if qkv_bias else False)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x):
        B, N, C = x.shape
        qkv = self.qkv(x).reshape([B, N, 3, self.num_heads, C // self.num_heads]).transpose([2, 0, 3, 1, 4])
        q, k, v = qkv[0], qkv[1], qkv[2]
        x = attention(q, k, v, self.scale, None, self.attn_drop).transpose([0, 2, 1, 3]).reshape([B, N, C])
        x = self.proj(x)
        return self.proj_drop(x)


def _drop_path(rate):
    return DropPath(rate) if rate > 0.0 else nn.Identity()


class Block(nn.Layer):
    """PCPVT block: pre-norm GSA + MLP."""

    def __init__(self, dim, num_heads, mlp_ratio=4.0, qkv_bias=False, qk_scale=None, drop=0.0, attn_drop=0.0,
                 drop_path=0.0, act_layer=nn.GELU, norm_layer=LayerNorm, sr_ratio=1):
        super().__init__()
        self.norm1 = norm_layer(dim)
        self.attn = Attention(dim, num_heads=num_heads, qkv_bias=qkv_bias, qk_scale=qk_scale,
                              attn_drop=attn_drop, proj_drop=drop, sr_ratio=sr_ratio)
        self.drop_path = _drop_path(drop_path)
        self.norm2 = norm_layer(dim)
        self.mlp = Mlp(in_features=dim, hidden_features=int(dim * mlp_ratio), act_layer=act_layer, drop=drop)

    def forward(self, x, H, W):
        x = x + self.drop_path(self.attn(self.norm1(x), H, W))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class SBlock(nn.Layer):
    """timm 0.3.2 ViT block (used by the official ``PCPVT`` class); ignores the grid size."""

    def __init__(self, dim, num_heads, mlp_ratio=4.0, qkv_bias=False, qk_scale=None, drop=0.0, attn_drop=0.0,
                 drop_path=0.0, act_layer=nn.GELU, norm_layer=LayerNorm, sr_ratio=1):
        super().__init__()
        self.norm1 = norm_layer(dim)
        self.attn = ViTAttention(dim, num_heads=num_heads, qkv_bias=qkv_bias, qk_scale=qk_scale,
                                 attn_drop=attn_drop, proj_drop=drop)
        self.drop_path = _drop_path(drop_path)
        self.norm2 = norm_layer(dim)
        self.mlp = Mlp(in_features=dim, hidden_features=int(dim * mlp_ratio), act_layer=act_layer, drop=drop)

    def forward(self, x, H, W):
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class GroupBlock(nn.Layer):
    """SVT block: LSA when ``ws > 1``, GSA when ``ws == 1``.

    The official class replaces the attention of a timm block after construction, which puts ``attn``
    last in the state dict; it is registered last here for the same order.
    """

    def __init__(self, dim, num_heads, mlp_ratio=4.0, qkv_bias=False, qk_scale=None, drop=0.0, attn_drop=0.0,
                 drop_path=0.0, act_layer=nn.GELU, norm_layer=LayerNorm, sr_ratio=1, ws=1):
        super().__init__()
        self.norm1 = norm_layer(dim)
        self.drop_path = _drop_path(drop_path)
        self.norm2 = norm_layer(dim)
        self.mlp = Mlp(in_features=dim, hidden_features=int(dim * mlp_ratio), act_layer=act_layer, drop=drop)
        if ws == 1:
            self.attn = Attention(dim, num_heads, qkv_bias, qk_scale, attn_drop, drop, sr_ratio)
        else:
            self.attn = GroupAttention(dim, num_heads, qkv_bias, qk_scale, attn_drop, drop, ws)

    def forward(self, x, H, W):
        x = x + self.drop_path(self.attn(self.norm1(x), H, W))
        return x + self.drop_path(self.mlp(self.norm2(x)))


_BLOCKS = {"Block": Block, "SBlock": SBlock, "GroupBlock": GroupBlock}


def _block_class(block_cls):
    """``block_cls`` as a class or its (possibly dotted) official name, e.g. ``"gvt.GroupBlock"``."""
    if isinstance(block_cls, str):
        name = block_cls.rsplit(".", 1)[-1]
        if name not in _BLOCKS:
            raise ValueError(f"block_cls {block_cls!r} is not one of {sorted(_BLOCKS)}")
        return _BLOCKS[name]
    return block_cls


class PatchEmbed(nn.Layer):
    """Conv k = s = patch_size, flatten to tokens, LayerNorm (eps 1e-5)."""

    def __init__(self, img_size=224, patch_size=16, in_chans=3, embed_dim=768):
        super().__init__()
        img_size = to_2tuple(img_size)
        patch_size = to_2tuple(patch_size)
        if img_size[0] % patch_size[0] or img_size[1] % patch_size[1]:
            raise ValueError(f"img_size {img_size} must be divisible by patch_size {patch_size} at every stage")
        self.img_size = img_size
        self.patch_size = patch_size
        self.H, self.W = img_size[0] // patch_size[0], img_size[1] // patch_size[1]
        self.num_patches = self.H * self.W
        self.proj = nn.Conv2D(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.norm = LayerNorm(embed_dim)

    def forward(self, x):
        H, W = x.shape[2] // self.patch_size[0], x.shape[3] // self.patch_size[1]
        x = self.proj(x).flatten(start_axis=2).transpose([0, 2, 1])
        return self.norm(x), (H, W)


class PosCNN(nn.Layer):
    """PEG: depthwise 3x3 conv on the token map, plus the input when s == 1."""

    def __init__(self, in_chans, embed_dim=768, s=1):
        super().__init__()
        self.proj = nn.Sequential(nn.Conv2D(in_chans, embed_dim, 3, s, 1, groups=embed_dim))
        self.s = s

    def forward(self, x, H, W):
        B, N, C = x.shape
        feat = x.transpose([0, 2, 1]).reshape([B, C, H, W])
        x = self.proj(feat)
        if self.s == 1:
            x = x + feat
        return x.flatten(start_axis=2).transpose([0, 2, 1])


def _grid(img_size, patch_size, divisor):
    """The official ``img_size // patch_size // divisor``, per axis."""
    (h, w), (ph, pw) = to_2tuple(img_size), to_2tuple(patch_size)
    return (h // ph // divisor, w // pw // divisor)


def _patch_embeds(img_size, patch_size, in_chans, embed_dims, strides=None):
    """Stage 0 embeds the image with ``patch_size``; later stages merge ``strides[i-1]`` (default 2)."""
    embeds = nn.LayerList()
    scale = 1
    for i in range(len(embed_dims)):
        if i == 0:
            embeds.append(PatchEmbed(img_size, patch_size, in_chans, embed_dims[0]))
        elif strides is None:
            embeds.append(PatchEmbed(_grid(img_size, patch_size, 2 ** (i - 1)), 2, embed_dims[i - 1], embed_dims[i]))
        else:
            embeds.append(
                PatchEmbed(_grid(img_size, patch_size, scale), strides[i - 1], embed_dims[i - 1], embed_dims[i])
            )
        if strides is not None:
            # the official loop multiplies by strides[i - 1] also at i == 0, i.e. by strides[-1]
            scale *= strides[i - 1]
    return embeds


def _drop_path_rates(drop_path_rate, depths):
    return [float(r) for r in np.linspace(0.0, drop_path_rate, sum(depths))]


class CPVTV2(ClassifierMixin, nn.Layer):
    """Twins-PCPVT: pyramid of GSA stages with a PEG after each stage's first block, GAP and a linear head."""

    def __init__(self, img_size=224, patch_size=4, in_chans=3, num_classes=1000, embed_dims=(64, 128, 256, 512),
                 num_heads=(1, 2, 4, 8), mlp_ratios=(4, 4, 4, 4), qkv_bias=False, qk_scale=None, drop_rate=0.0,
                 attn_drop_rate=0.0, drop_path_rate=0.0, norm_layer=LayerNorm, depths=(3, 4, 6, 3),
                 sr_ratios=(8, 4, 2, 1), block_cls=Block, F4=False, extra_norm=False, features_only=False,
                 out_indices=(0, 1, 2, 3)):
        super().__init__()
        norm_layer = make_norm(norm_layer)
        self._setup(num_classes, depths, F4, extra_norm, features_only, embed_dims, patch_size, None, out_indices)
        self.patch_embeds = _patch_embeds(img_size, patch_size, in_chans, embed_dims)
        self.pos_drops = nn.LayerList([nn.Dropout(p=drop_rate) for _ in depths])
        self.blocks = self._stages(embed_dims, num_heads, mlp_ratios, qkv_bias, qk_scale, drop_rate, attn_drop_rate,
                                   drop_path_rate, norm_layer, depths, sr_ratios, _block_class(block_cls))
        self.norm = norm_layer(embed_dims[-1])
        self.head = nn.Linear(embed_dims[-1], num_classes) if num_classes > 0 else nn.Identity()
        if extra_norm:
            self.norm_list = nn.LayerList([norm_layer(dim) for dim in embed_dims])
        self.pos_block = nn.LayerList([PosCNN(dim, dim) for dim in embed_dims])
        self._set_window_padding()

    def _setup(self, num_classes, depths, F4, extra_norm, features_only, embed_dims, patch_size, strides, out_indices):
        self.num_classes = check_num_classes(num_classes)
        self.depths = list(depths)
        self.F4 = F4
        self.extra_norm = extra_norm
        self.features_only = features_only
        self.num_features = embed_dims[-1]
        # stage maps: the first at patch_size, each later one merged by its stride (2 unless ALTGVT's strides)
        reductions = [to_2tuple(patch_size)[0]]
        for i in range(1, len(embed_dims)):
            reductions.append(reductions[-1] * (2 if strides is None else strides[i - 1]))
        stages = [(dim, reductions[i], f"blocks.{i}") for i, dim in enumerate(embed_dims)]
        # the official segmentation flag F4 keeps the last of four maps only
        self.feature_info, self.out_indices = select_features(stages, (3,) if F4 else out_indices)

    def _stages(self, embed_dims, num_heads, mlp_ratios, qkv_bias, qk_scale, drop_rate, attn_drop_rate,
                drop_path_rate, norm_layer, depths, sr_ratios, block_cls, wss=None):
        rates = _drop_path_rates(drop_path_rate, depths)
        stages = nn.LayerList()
        cur = 0
        for k, depth in enumerate(depths):
            blocks = nn.LayerList()
            for i in range(depth):
                kwargs = dict(dim=embed_dims[k], num_heads=num_heads[k], mlp_ratio=mlp_ratios[k], qkv_bias=qkv_bias,
                              qk_scale=qk_scale, drop=drop_rate, attn_drop=attn_drop_rate, drop_path=rates[cur + i],
                              norm_layer=norm_layer, sr_ratio=sr_ratios[k])
                if wss is not None:
                    # SVT alternates: LSA on even block indices, GSA on odd ones
                    kwargs["ws"] = 1 if i % 2 == 1 else wss[k]
                blocks.append(block_cls(**kwargs))
            stages.append(blocks)
            cur += depth
        return stages

    def _set_window_padding(self):
        # only the segmentation backbone pads LSA windows; the classification model requires whole windows
        for module in self.sublayers():
            if isinstance(module, GroupAttention):
                module.pad_to_window = self.features_only

    def forward_features(self, x):
        """The last stage's normed tokens (B, N, C), or with ``features_only`` the picked stage maps."""
        B = x.shape[0]
        last = len(self.depths) - 1
        outputs = []
        for i in range(max(self.out_indices) + 1 if self.features_only else len(self.depths)):
            x, (H, W) = self.patch_embeds[i](x)
            x = self.pos_drops[i](x)
            for j, blk in enumerate(self.blocks[i]):
                x = blk(x, H, W)
                if j == 0:
                    x = self.pos_block[i](x, H, W)
            if self.features_only:
                if self.extra_norm:
                    x = self.norm_list[i](x)
                x = x.reshape([B, H, W, -1]).transpose([0, 3, 1, 2])
                if i in self.out_indices:
                    outputs.append(x)
            elif i < last:
                x = x.reshape([B, H, W, -1]).transpose([0, 3, 1, 2])
        if self.features_only:
            return outputs
        return self.norm(x)

    def pool(self, x):
        return x.mean(axis=1)

    @dense_layout
    def forward(self, x):
        x = self.forward_features(x)
        return x if self.features_only else self.forward_head(x)


class PCPVT(CPVTV2):
    """The official PCPVT class: CPVTV2 with timm ViT blocks (no factory uses it)."""

    def __init__(self, img_size=224, patch_size=4, in_chans=3, num_classes=1000, embed_dims=(64, 128, 256),
                 num_heads=(1, 2, 4), mlp_ratios=(4, 4, 4), qkv_bias=False, qk_scale=None, drop_rate=0.0,
                 attn_drop_rate=0.0, drop_path_rate=0.0, norm_layer=LayerNorm, depths=(4, 4, 4),
                 sr_ratios=(4, 2, 1), block_cls=SBlock, F4=False, extra_norm=False, features_only=False,
                 out_indices=(0, 1, 2, 3)):
        super().__init__(img_size, patch_size, in_chans, num_classes, embed_dims, num_heads, mlp_ratios, qkv_bias,
                         qk_scale, drop_rate, attn_drop_rate, drop_path_rate, norm_layer, depths, sr_ratios,
                         block_cls, F4, extra_norm, features_only, out_indices)


class ALTGVT(PCPVT):
    """Twins-SVT: stages alternate LSA (window ``wss[i]``) and GSA blocks."""

    def __init__(self, img_size=224, patch_size=4, in_chans=3, num_classes=1000, embed_dims=(64, 128, 256),
                 num_heads=(1, 2, 4), mlp_ratios=(4, 4, 4), qkv_bias=False, qk_scale=None, drop_rate=0.0,
                 attn_drop_rate=0.0, drop_path_rate=0.0, norm_layer=LayerNorm, depths=(4, 4, 4),
                 sr_ratios=(4, 2, 1), block_cls=GroupBlock, wss=(7, 7, 7), F4=False, extra_norm=False,
                 strides=(2, 2, 2), features_only=False, out_indices=(0, 1, 2, 3)):
        # The official class builds its parent and then re-creates blocks (and patch_embeds for custom
        # strides), which moves them to the end of the state dict; this builds each part once, in that order.
        nn.Layer.__init__(self)
        norm_layer = make_norm(norm_layer)
        self._setup(num_classes, depths, F4, extra_norm, features_only, embed_dims, patch_size, strides, out_indices)
        self.wss = list(wss)
        self.strides = tuple(strides)
        custom_strides = self.strides != (2, 2, 2)
        if not custom_strides:
            self.patch_embeds = _patch_embeds(img_size, patch_size, in_chans, embed_dims)
        self.pos_drops = nn.LayerList([nn.Dropout(p=drop_rate) for _ in depths])
        self.norm = norm_layer(embed_dims[-1])
        self.head = nn.Linear(embed_dims[-1], num_classes) if num_classes > 0 else nn.Identity()
        self.pos_block = nn.LayerList([PosCNN(dim, dim) for dim in embed_dims])
        if extra_norm:
            self.norm_list = nn.LayerList([norm_layer(dim) for dim in embed_dims])
        self.blocks = self._stages(embed_dims, num_heads, mlp_ratios, qkv_bias, qk_scale, drop_rate, attn_drop_rate,
                                   drop_path_rate, norm_layer, depths, sr_ratios, _block_class(block_cls), self.wss)
        if custom_strides:
            self.patch_embeds = _patch_embeds(img_size, patch_size, in_chans, embed_dims, self.strides)
        self._set_window_padding()
