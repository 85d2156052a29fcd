"""CrossFormer and CrossFormer++ (Wang et al., ICLR 2022 / TPAMI 2023), Paddle.
Twin of ``torch_models/crossformer.py``.

Official code: cheerss/CrossFormer, branch ``main`` (``models/crossformer.py`` for classification and
``models/crossformer_backbone_det.py`` for the dense backbone). Class and attribute names follow it so
that released state dicts load with ``strict=True``: the main code's state dict is canonical (the DPB
tables and the padding mask are non-persistent buffers); the 2021 release files, which also hold the
tables, are read through the ``official_v1`` layout of ``converters/crossformer.py``.

The group geometry (effective group sizes, DPB tables, masks) comes from ``converters.crossformer`` so
that both frameworks and the layout that rebuilds the v1 buffers share one rule.
"""

from __future__ import annotations

import math

import numpy as np
import paddle
import paddle.nn.functional as F
from paddle import nn
from paddle.distributed.fleet.utils import recompute

from porthub.geometry.crossformer import compute_group_size, dpb_tables, group_mask, pad_amounts

from .layers import (
    AdaptiveAvgPool1D,
    ClassifierMixin,
    DropPath,
    LayerNorm,
    Mlp,
    attention,
    check_num_classes,
    dense_layout,
    make_norm,
    register_constant,
    select_features,
    to_2tuple,
)

__all__ = [
    "Mlp",
    "DynamicPosBias",
    "Attention",
    "CrossFormerBlock",
    "PatchMerging",
    "Stage",
    "PatchEmbed",
    "CrossFormer",
    "CrossFormerBackbone",
]


def _reuse_while_frozen(module, key, compute):
    """``compute()``, every time. (The PyTorch twin reuses the last value while the parameters keep their
    in-place version; Paddle's in-place updates, ``set_state_dict``, ``set_value`` and optimizer steps,
    leave no version mark, so a reused value could silently go stale.)"""
    return compute()


def _per_stage(value, count: int) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value] * count


class DynamicPosBias(nn.Layer):
    """DPB: an MLP from relative offsets (dh, dw) to one bias per head. Its LayerNorms are always the
    default ``nn.LayerNorm`` (eps 1e-5), whatever ``norm_layer`` the model gets."""

    def __init__(self, dim, num_heads, residual):
        super().__init__()
        self.residual = residual
        self.num_heads = num_heads
        self.pos_dim = dim // 4
        self.pos_proj = nn.Linear(2, self.pos_dim)
        self.pos1 = nn.Sequential(LayerNorm(self.pos_dim), nn.ReLU(), nn.Linear(self.pos_dim, self.pos_dim))
        self.pos2 = nn.Sequential(LayerNorm(self.pos_dim), nn.ReLU(), nn.Linear(self.pos_dim, self.pos_dim))
        self.pos3 = nn.Sequential(LayerNorm(self.pos_dim), nn.ReLU(), nn.Linear(self.pos_dim, self.num_heads))

    def forward(self, biases):
        if self.residual:
            pos = self.pos_proj(biases)
            pos = pos + self.pos1(pos)
            pos = pos + self.pos2(pos)
            return self.pos3(pos)
        return self.pos3(self.pos2(self.pos1(self.pos_proj(biases))))


class Attention(nn.Layer):
    """Multi-head self-attention inside a group, with the DPB bias.

    ``group_size`` (Gh, Gw) fixes the DPB tables at construction as non-persistent buffers (classification);
    ``None`` builds them in each forward for the group size it is given (dense backbone). ``q`` is scaled
    before ``q @ k^T``, as in the official code.
    """

    def __init__(
        self, dim, group_size, num_heads, qkv_bias=True, qk_scale=None, attn_drop=0.0, proj_drop=0.0, position_bias=True
    ):
        super().__init__()
        self.dim = dim
        self.group_size = group_size
        self.num_heads = num_heads
        head_dim = dim // num_heads
        self.scale = qk_scale or head_dim**-0.5
        self.position_bias = position_bias
        if position_bias:
            self.pos = DynamicPosBias(self.dim // 4, self.num_heads, residual=False)
            if group_size is not None:
                biases, index = dpb_tables(*group_size)
                register_constant(self, "biases", paddle.to_tensor(biases), persistent=False)
                register_constant(self, "relative_position_index", paddle.to_tensor(index), persistent=False)
        self.qkv = nn.Linear(dim, dim * 3, bias_attr=None if qkv_bias else False)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        self.softmax = nn.Softmax(axis=-1)

    def relative_position_bias(self, group_size, like):
        """``(heads, Gh*Gw, Gh*Gw)`` in the dtype of ``like``."""

        def compute():
            if self.group_size is not None:
                biases, index = self.biases, self.relative_position_index
            else:
                biases, index = (paddle.to_tensor(t, place=like.place) for t in dpb_tables(*group_size))
            n = group_size[0] * group_size[1]
            pos = self.pos(biases.astype(like.dtype))
            # Layer.to(dtype=float64) casts integer buffers too; the index values are exact either way
            pos = paddle.index_select(pos, index.reshape([-1]).astype("int64"), axis=0)
            return pos.reshape([n, n, -1]).transpose([2, 0, 1])

        return _reuse_while_frozen(self.pos, (tuple(group_size), like.dtype, like.place), compute)

    def forward(self, x, mask=None, group_size=None):
        group_size = self.group_size if group_size is None else group_size
        B_, N, C = x.shape
        qkv = self.qkv(x).reshape([B_, N, 3, self.num_heads, C // self.num_heads]).transpose([2, 0, 3, 1, 4])
        q, k, v = qkv[0], qkv[1], qkv[2]
        bias = self.relative_position_bias(group_size, q).unsqueeze(0) if self.position_bias else None
        if mask is not None:
            # one additive term per (group, head), repeated over the batch (B_ is batch x groups, groups
            # minor); adding the 0 / -1e6 mask to the bias before q k^T is exact where the mask is 0,
            # and where it is -1e6 the weight is 0 either way
            nG = mask.shape[0]
            bias = mask.astype(q.dtype).unsqueeze(1) + (0.0 if bias is None else bias)
            bias = bias.unsqueeze(0).expand([B_ // nG, -1, -1, -1, -1]).flatten(0, 1)
        x = attention(q, k, v, self.scale, bias, self.attn_drop).transpose([0, 2, 1, 3]).reshape([B_, N, C])
        return self.proj_drop(self.proj(x))


class CrossFormerBlock(nn.Layer):
    """SDA (``lsda_flag`` 0: contiguous G x G groups) or LDA (1: G x G tokens spaced ``interval`` apart)
    attention, then the MLP, then (CrossFormer++ ACL, ``use_extra_conv``) a depthwise conv and LayerNorm
    that replace the tokens.

    ``dynamic=False`` (classification): the map size is ``input_resolution``; a block whose map is not
    larger than its group becomes one SDA group of ``min(H, W)``, and the padding mask is a buffer.
    ``dynamic=True`` (dense backbone): sizes come with each forward; the fallback group is ``max(H, W)``
    (padding the short side, with a mask), padding is always bottom/right and always masked, as in the
    main det/seg code. Unlike that code, the fallback does not overwrite ``lsda_flag``/``interval``, so a
    block that once saw a small map is not SDA for later, larger inputs.
    """

    def __init__(self, dim, input_resolution, num_heads, group_size=7, interval=8, lsda_flag=0,
                 mlp_ratio=4.0, qkv_bias=True, qk_scale=None, drop=0.0, attn_drop=0.0, drop_path=0.0,
                 act_layer=nn.GELU, norm_layer=LayerNorm, num_patch_size=1,
                 pad_type=0, use_extra_conv=True, use_cpe=False, no_mask=False, adaptive_interval=False, dynamic=False):
        super().__init__()
        norm_layer = make_norm(norm_layer)
        self.dim = dim
        self.input_resolution = input_resolution
        self.num_heads = num_heads
        self.group_size = group_size
        self.interval = interval
        self.lsda_flag = lsda_flag
        self.mlp_ratio = mlp_ratio
        self.num_patch_size = num_patch_size
        self.pad_type = pad_type
        self.use_extra_conv = use_extra_conv
        self.use_cpe = use_cpe
        self.adaptive_interval = adaptive_interval
        self.dynamic = dynamic
        if not dynamic and min(self.input_resolution) <= self.group_size:
            self.lsda_flag = 0
            self.group_size = min(self.input_resolution)

        self.norm1 = norm_layer(dim)
        self.attn = Attention(dim, group_size=None if dynamic else to_2tuple(self.group_size), num_heads=num_heads,
                              qkv_bias=qkv_bias, qk_scale=qk_scale, attn_drop=attn_drop, proj_drop=drop,
                              position_bias=not use_cpe)
        if self.use_cpe:
            # official quirk: the conv sees the NHWC map, so H is its channel axis
            self.cpe = nn.Conv2D(
                input_resolution[0], input_resolution[0], kernel_size=3, padding=1, groups=input_resolution[0]
            )
            self.norm_cpe = norm_layer(dim)
        if adaptive_interval and not dynamic:
            self.interval = int(math.ceil(self.input_resolution[0] / self.group_size))
        if self.use_extra_conv:
            self.ex_kernel = [3, 3]
            self.ex_conv = nn.Conv2D(dim, dim, self.ex_kernel, padding=(self.ex_kernel[0] - 1) // 2, groups=dim)
            self.ex_ln = norm_layer(dim)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = norm_layer(dim)
        self.mlp = Mlp(in_features=dim, hidden_features=int(dim * mlp_ratio), act_layer=act_layer, drop=drop)

        if not dynamic:
            mask = None
            if not no_mask:
                H, W = self.input_resolution
                mask = group_mask(H, W, self._pads(H, W, self.group_size, self.interval, self.lsda_flag, self.pad_type),
                                  self.group_size, self.interval, self.lsda_flag)
            register_constant(self, "attn_mask", None if mask is None else paddle.to_tensor(mask), persistent=False)

    @staticmethod
    def _pads(H, W, group, interval, lsda_flag, pad_type):
        return pad_amounts(H, W, interval * group if lsda_flag == 1 else group, pad_type)

    def _geometry(self, H, W):
        """(group, interval, lsda_flag) the dense backbone uses for an H x W map."""
        if min(H, W) <= self.group_size:
            group, lsda_flag = max(H, W), 0
        else:
            group, lsda_flag = self.group_size, self.lsda_flag
        interval = math.ceil(max(H, W) / group) if self.adaptive_interval else self.interval
        return group, interval, lsda_flag

    def _group(self, x, G, I, lsda_flag):
        B, Hp, Wp, C = x.shape
        if lsda_flag == 0:
            x = x.reshape([B, Hp // G, G, Wp // G, G, C]).transpose([0, 1, 3, 2, 4, 5])
        else:
            x = x.reshape([B, Hp // (G * I), G, I, Wp // (G * I), G, I, C]).transpose([0, 1, 4, 3, 6, 2, 5, 7])
        return x.reshape([-1, G * G, C])

    def _ungroup(self, x, B, Hp, Wp, G, I, lsda_flag):
        C = x.shape[-1]
        if lsda_flag == 0:
            x = x.reshape([B, Hp // G, Wp // G, G, G, C]).transpose([0, 1, 3, 2, 4, 5])
        else:
            x = x.reshape([B, Hp // (G * I), Wp // (G * I), I, I, G, G, C]).transpose([0, 1, 5, 3, 2, 6, 4, 7])
        return x.reshape([B, Hp, Wp, C])

    def forward(self, x, H=None, W=None):
        if self.dynamic:
            G, I, lsda_flag = self._geometry(H, W)
            pads = self._pads(H, W, G, I, lsda_flag, 0)
            mask = group_mask(H, W, pads, G, I, lsda_flag)
            mask = None if mask is None else paddle.to_tensor(mask, place=x.place)
        else:
            H, W = self.input_resolution
            G, I, lsda_flag = self.group_size, self.interval, self.lsda_flag
            pads = self._pads(H, W, G, I, lsda_flag, self.pad_type)
            mask = self.attn_mask
        B, L, C = x.shape
        if L != H * W:
            raise ValueError(
                f"CrossFormerBlock: {L} tokens do not form the {H}x{W} map it was given; check the input size"
            )
        pad_l, pad_r, pad_t, pad_b = pads

        shortcut = x
        x = self.norm1(x).reshape([B, H, W, C])
        if self.use_cpe:
            x = x + self.norm_cpe(self.cpe(x))
        # the full per-axis form (N, H, W, C): its meaning does not depend on the Paddle version
        x = F.pad(x, [0, 0, pad_t, pad_b, pad_l, pad_r, 0, 0])
        Hp, Wp = H + pad_t + pad_b, W + pad_l + pad_r
        x = self._group(x, G, I, lsda_flag)
        x = self.attn(x, mask=mask, group_size=(G, G))
        x = self._ungroup(x, B, Hp, Wp, G, I, lsda_flag)
        x = x[:, pad_t:pad_t + H, pad_l:pad_l + W, :].reshape([B, H * W, C])

        x = shortcut + self.drop_path(x)
        x = x + self.drop_path(self.mlp(self.norm2(x)))
        if self.use_extra_conv:
            x = self.ex_conv(x.reshape([B, H, W, C]).transpose([0, 3, 1, 2]))
            x = self.ex_ln(x.transpose([0, 2, 3, 1]).reshape([B, H * W, C]))
        return x


class PatchMerging(nn.Layer):
    """Cross-scale merging: LayerNorm first, then stride-2 convs of several kernel sizes, concatenated."""

    def __init__(self, input_resolution, dim, norm_layer=LayerNorm, patch_size=[2], num_input_patch_size=1):
        super().__init__()
        self.input_resolution = input_resolution
        self.dim = dim
        self.reductions = nn.LayerList()
        self.patch_size = patch_size
        self.norm = make_norm(norm_layer)(dim)
        for i, ps in enumerate(patch_size):
            out_dim = 2 * dim // 2**i if i == len(patch_size) - 1 else 2 * dim // 2 ** (i + 1)
            self.reductions.append(nn.Conv2D(dim, out_dim, kernel_size=ps, stride=2, padding=(ps - 2) // 2))

    def forward(self, x, H=None, W=None):
        if H is None:
            H, W = self.input_resolution
        B, L, C = x.shape
        if L != H * W or H % 2 or W % 2:
            raise ValueError(
                f"PatchMerging needs an even map: got {L} tokens for {H}x{W}; use inputs whose side is a multiple of 32"
            )
        x = self.norm(x).reshape([B, H, W, C]).transpose([0, 3, 1, 2])
        return paddle.concat([reduction(x).flatten(2).transpose([0, 2, 1]) for reduction in self.reductions], axis=2)


class Stage(nn.Layer):
    """The blocks of one stage (even index SDA, odd LDA; ACL after every third block but the last),
    then the merging. Dense mode returns ``(feature map before merging, merged tokens)``."""

    def __init__(self, dim, input_resolution, depth, num_heads, group_size, interval,
                 mlp_ratio=4.0, qkv_bias=True, qk_scale=None, drop=0.0, attn_drop=0.0,
                 drop_path=0.0, norm_layer=LayerNorm, downsample=None, use_checkpoint=False,
                 patch_size_end=[4], num_patch_size=None, use_cpe=False, pad_type=0,
                 no_mask=False, adaptive_interval=False, use_acl=False, dynamic=False):
        super().__init__()
        self.dim = dim
        self.input_resolution = input_resolution
        self.depth = depth
        self.use_checkpoint = use_checkpoint
        self.dynamic = dynamic
        # the classifier's features_only mode also takes the map before merging
        self.return_map = dynamic
        self.blocks = nn.LayerList()
        for i in range(depth):
            self.blocks.append(
                CrossFormerBlock(
                    dim=dim,
                    input_resolution=input_resolution,
                    num_heads=num_heads,
                    group_size=group_size[i],
                    interval=interval,
                    lsda_flag=i % 2,
                    mlp_ratio=mlp_ratio,
                    qkv_bias=qkv_bias,
                    qk_scale=qk_scale,
                    drop=drop,
                    attn_drop=attn_drop,
                    drop_path=drop_path[i] if isinstance(drop_path, list) else drop_path,
                    norm_layer=norm_layer,
                    num_patch_size=num_patch_size,
                    use_extra_conv=(i + 1) % 3 == 0 and i < depth - 1 and use_acl,
                    use_cpe=use_cpe,
                    pad_type=pad_type,
                    no_mask=no_mask,
                    adaptive_interval=adaptive_interval,
                    dynamic=dynamic,
                )
            )
        if downsample is not None:
            self.downsample = downsample(input_resolution, dim=dim, norm_layer=norm_layer,
                                         patch_size=patch_size_end, num_input_patch_size=num_patch_size)
        else:
            self.downsample = None

    def forward(self, x, H=None, W=None):
        for blk in self.blocks:
            if self.use_checkpoint and self.training:
                x = recompute(blk, x, H, W)
            else:
                x = blk(x, H, W)
        if not self.return_map:
            return x if self.downsample is None else self.downsample(x)
        if H is None:
            H, W = self.input_resolution
        B, _, C = x.shape
        feat = x.reshape([B, H, W, C]).transpose([0, 3, 1, 2])
        if self.downsample is not None:
            x = self.downsample(x, H, W)
        return feat, x


class PatchEmbed(nn.Layer):
    """Cross-scale embedding: stride ``patch_size[0]`` convs with every kernel of ``patch_size``,
    concatenated on channels (E/2, E/4, ... and the last kernel gets the remainder)."""

    def __init__(self, img_size=224, patch_size=[4], in_chans=3, embed_dim=96, norm_layer=None, check_size=True):
        super().__init__()
        img_size = to_2tuple(img_size)
        # the official grid uses img_size[0] twice: the classification model is square
        patches_resolution = [img_size[0] // patch_size[0], img_size[0] // patch_size[0]]
        self.img_size = img_size
        self.patch_size = patch_size
        self.patches_resolution = patches_resolution
        self.num_patches = patches_resolution[0] * patches_resolution[1]
        self.in_chans = in_chans
        self.embed_dim = embed_dim
        self.check_size = check_size
        self.projs = nn.LayerList()
        for i, ps in enumerate(patch_size):
            dim = embed_dim // 2**i if i == len(patch_size) - 1 else embed_dim // 2 ** (i + 1)
            self.projs.append(
                nn.Conv2D(in_chans, dim, kernel_size=ps, stride=patch_size[0], padding=(ps - patch_size[0]) // 2)
            )
        self.norm = make_norm(norm_layer)(embed_dim) if norm_layer is not None else None

    def forward(self, x):
        _, _, H, W = x.shape
        if self.check_size and (H, W) != tuple(self.img_size):
            raise ValueError(
                f"input {H}x{W} does not match img_size {self.img_size[0]}x{self.img_size[1]}; build the model with "
                f"img_size={H}"
            )
        x = paddle.concat([proj(x).flatten(2).transpose([0, 2, 1]) for proj in self.projs], axis=2)
        if self.norm is not None:
            x = self.norm(x)
        return x


class _CrossFormerTrunk(nn.Layer):
    """Embedding and stages shared by the classification model and the dense backbone."""

    def __init__(self, img_size, patch_size, in_chans, embed_dim, depths, num_heads, group_size, crs_interval,
                 mlp_ratio, qkv_bias, qk_scale, drop_rate, attn_drop_rate, drop_path_rate, norm_layer, ape,
                 patch_norm, use_checkpoint, merge_size, use_cpe, group_type, pad_type, no_mask,
                 adaptive_interval, use_acl, dynamic):
        super().__init__()
        self.num_layers = len(depths)
        self.embed_dim = embed_dim
        self.ape = ape
        self.patch_norm = patch_norm
        self.num_features = int(embed_dim * 2 ** (self.num_layers - 1))
        self.mlp_ratio = mlp_ratio
        mlp_ratios = _per_stage(mlp_ratio, self.num_layers)

        self.patch_embed = PatchEmbed(img_size=img_size, patch_size=patch_size, in_chans=in_chans, embed_dim=embed_dim,
                                      norm_layer=norm_layer if self.patch_norm else None, check_size=not dynamic)
        num_patches = self.patch_embed.num_patches
        patches_resolution = self.patch_embed.patches_resolution
        self.patches_resolution = patches_resolution
        if self.ape:
            self.absolute_pos_embed = self.create_parameter(
                [1, num_patches, embed_dim], default_initializer=nn.initializer.TruncatedNormal(std=0.02))
        self.pos_drop = nn.Dropout(p=drop_rate)

        dpr = [float(r) for r in np.linspace(0, drop_path_rate, sum(depths))]
        group_size = compute_group_size(_per_stage(group_size, self.num_layers), depths, patches_resolution, group_type)
        self.layers = nn.LayerList()
        num_patch_sizes = [len(patch_size)] + [len(m) for m in merge_size]
        for i_layer in range(self.num_layers):
            last = i_layer == self.num_layers - 1
            self.layers.append(
                Stage(
                    dim=int(embed_dim * 2**i_layer),
                    input_resolution=(patches_resolution[0] // 2**i_layer, patches_resolution[1] // 2**i_layer),
                    depth=depths[i_layer],
                    num_heads=num_heads[i_layer],
                    group_size=group_size[i_layer],
                    interval=crs_interval[i_layer],
                    mlp_ratio=mlp_ratios[i_layer],
                    qkv_bias=qkv_bias,
                    qk_scale=qk_scale,
                    drop=drop_rate,
                    attn_drop=attn_drop_rate,
                    drop_path=dpr[sum(depths[:i_layer]) : sum(depths[: i_layer + 1])],
                    norm_layer=norm_layer,
                    downsample=None if last else PatchMerging,
                    use_checkpoint=use_checkpoint,
                    patch_size_end=None if last else merge_size[i_layer],
                    num_patch_size=num_patch_sizes[i_layer],
                    use_cpe=use_cpe,
                    pad_type=pad_type,
                    no_mask=no_mask,
                    adaptive_interval=adaptive_interval,
                    use_acl=use_acl,
                    dynamic=dynamic,
                )
            )

    def _feature_info(self, embed_dim, patch_size, out_indices):
        stages = [(embed_dim * 2**i, patch_size[0] * 2**i, f"layers.{i}") for i in range(self.num_layers)]
        self.feature_info, self.out_indices = select_features(stages, out_indices)

    def _init_weights(self, m):
        if isinstance(m, nn.Linear):
            nn.initializer.TruncatedNormal(std=0.02)(m.weight)
            if m.bias is not None:
                nn.initializer.Constant(0.0)(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.initializer.Constant(0.0)(m.bias)
            nn.initializer.Constant(1.0)(m.weight)

    def embed(self, x):
        x = self.patch_embed(x)
        if self.ape:
            x = x + self.absolute_pos_embed
        return self.pos_drop(x)


class CrossFormer(ClassifierMixin, _CrossFormerTrunk):
    """The classification model (main ``models/crossformer.py``), built for one square ``img_size``.

    ``mlp_ratio`` is per stage (a list, as the main configs give it) or one number (as the 2021 configs).
    Unlike the official constructor, unknown keyword arguments raise TypeError (a misspelt one would
    otherwise build a different model silently). ``features_only`` returns the NCHW map of each stage
    before its merging (strides 4, 8, 16, 32) that ``out_indices`` picks, described by ``feature_info``.
    """

    def __init__(self, img_size=224, patch_size=[4], in_chans=3, num_classes=1000,
                 embed_dim=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24],
                 group_size=[7, 7, 7, 7], crs_interval=[8, 4, 2, 1], mlp_ratio=4.0,
                 qkv_bias=True, qk_scale=None,
                 drop_rate=0.0, attn_drop_rate=0.0, drop_path_rate=0.1,
                 norm_layer=LayerNorm, ape=False, patch_norm=True,
                 use_checkpoint=False, merge_size=[[2], [2], [2]], use_cpe=False,
                 group_type="constant", pad_type=0, no_mask=False,
                 adaptive_interval=False, use_acl=False, features_only=False, out_indices=(0, 1, 2, 3)):
        super().__init__(img_size, patch_size, in_chans, embed_dim, depths, num_heads, group_size, crs_interval,
                         mlp_ratio, qkv_bias, qk_scale, drop_rate, attn_drop_rate, drop_path_rate, norm_layer, ape,
                         patch_norm, use_checkpoint, merge_size, use_cpe, group_type, pad_type, no_mask,
                         adaptive_interval, use_acl, dynamic=False)
        self.num_classes = check_num_classes(num_classes)
        self.features_only = features_only
        self._feature_info(embed_dim, patch_size, out_indices)
        for layer in self.layers:
            layer.return_map = features_only
        self.norm = make_norm(norm_layer)(self.num_features)
        self.avgpool = AdaptiveAvgPool1D(1)
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        self.apply(self._init_weights)

    def forward_features(self, x):
        """The last stage's normed tokens (B, N, C), or with ``features_only`` the picked stage maps."""
        x = self.embed(x)
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
        return paddle.flatten(self.avgpool(x.transpose([0, 2, 1])), 1)

    @dense_layout
    def forward(self, x):
        x = self.forward_features(x)
        return x if self.features_only else self.forward_head(x)


class CrossFormerBackbone(_CrossFormerTrunk):
    """The dense-prediction backbone of the main branch (``models/crossformer_backbone_det.py`` class
    ``CrossFormer``, identical to ``_seg.py``): no ``norm``/``head``, any input whose sides are multiples
    of 32, and ``forward`` returns the four NCHW stage maps, each taken before that stage's merging.

    ``img_size`` only sizes ``absolute_pos_embed`` (``ape``), the CPE convs and the non-constant
    ``group_type`` schedules. Differences from the 2021 (v1, branch ``crossformer``) backbone that the
    released v1 detection/segmentation models were trained with: there, LDA samples with stride
    ``crs_interval`` over a window of ``(Hp/I) x (Wp/I)`` tokens (padding to a multiple of I), and a map
    not larger than the group falls back to ``min(H, W)``; main uses G x G groups spaced I apart in
    regions of G*I and falls back to ``max(H, W)``. At 224x224 both agree; at detection sizes they do not.
    ``out_indices`` picks the maps returned (``feature_info`` describes them); unknown keyword arguments
    raise TypeError.
    The official backbone builds the DPB coordinates in float32 only; this one follows the input dtype.
    """

    def __init__(self, img_size=224, patch_size=[4], in_chans=3, num_classes=1000,
                 embed_dim=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24],
                 group_size=[7, 7, 7, 7], crs_interval=[8, 4, 2, 1], mlp_ratio=4.0,
                 qkv_bias=True, qk_scale=None,
                 drop_rate=0.0, attn_drop_rate=0.0, drop_path_rate=0.1,
                 norm_layer=LayerNorm, ape=False, patch_norm=True,
                 use_checkpoint=False, merge_size=[[2], [2], [2]], use_cpe=False,
                 group_type="constant", pad_type=0, no_mask=False,
                 adaptive_interval=False, use_acl=False, init_cfg=None, out_indices=(0, 1, 2, 3)):
        super().__init__(img_size, patch_size, in_chans, embed_dim, depths, num_heads, group_size, crs_interval,
                         mlp_ratio, qkv_bias, qk_scale, drop_rate, attn_drop_rate, drop_path_rate, norm_layer, ape,
                         patch_norm, use_checkpoint, merge_size, use_cpe, group_type, pad_type, no_mask,
                         adaptive_interval, use_acl, dynamic=True)
        self.num_classes = num_classes
        self.init_cfg = init_cfg
        self._feature_info(embed_dim, patch_size, out_indices)
        self.apply(self._init_weights)

    @dense_layout
    def forward(self, x):
        H, W = x.shape[2:]
        x = self.embed(x)
        outs = []
        for i in range(max(self.out_indices) + 1):
            feat, x = self.layers[i](x, H // 4 // 2**i, W // 4 // 2**i)
            if i in self.out_indices:
                outs.append(feat)
        return outs
