"""Shunted Transformer (Ren et al., CVPR 2022), PaddlePaddle. Twin of ``torch_models/shunted.py``.

Official code: OliverRensu/Shunted-Transformer ``SSA.py``. Class and attribute names follow it so that
the released state dicts load with ``strict=True``. Written from the porting notes and a reading of the
official forward; the shunted attention is restated in a single helper per key/value scale.
"""

from __future__ import annotations

import paddle
from paddle import nn

from .layers import (
    BatchNorm2D,
    ClassifierMixin,
    DropPath,
    LayerNorm,
    attention,
    check_num_classes,
    dense_layout,
    make_norm,
    select_features,
    to_2tuple,
)

__all__ = [
    "Mlp",
    "DWConv",
    "Attention",
    "Block",
    "OverlapPatchEmbed",
    "Head",
    "ShuntedTransformer",
    "shunted_t",
    "shunted_s",
    "shunted_b",
]

# (kernel = stride of sr1, kernel = stride of sr2) per sr_ratio; the official code builds no other pair.
SR_KERNELS = {8: (8, 4), 4: (4, 2), 2: (2, 1)}

# The official Head, OverlapPatchEmbed and in-attention norms are plain nn.LayerNorm (eps 1e-5), unlike
# the blocks and stage norms, which use the norm_layer argument (eps 1e-6 in every released variant).
DEFAULT_LN_EPS = 1e-5


class DWConv(nn.Layer):
    def __init__(self, dim=768):
        super().__init__()
        self.dwconv = nn.Conv2D(dim, dim, 3, 1, 1, groups=dim)

    def forward(self, x, H, W):
        B, N, C = x.shape
        x = x.transpose([0, 2, 1]).reshape([B, C, H, W])
        x = self.dwconv(x)
        return x.flatten(start_axis=2).transpose([0, 2, 1])


class Mlp(nn.Layer):
    def __init__(self, in_features, hidden_features=None, out_features=None, act_layer=nn.GELU, drop=0.0):
        super().__init__()
        out_features = out_features or in_features
        hidden_features = hidden_features or in_features
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.dwconv = DWConv(hidden_features)
        self.act = act_layer()
        self.fc2 = nn.Linear(hidden_features, out_features)
        self.drop = nn.Dropout(drop)

    def forward(self, x, H, W):
        x = self.fc1(x)
        # the depthwise conv is a residual inside the MLP, added before the activation
        x = self.act(x + self.dwconv(x, H, W))
        x = self.drop(x)
        x = self.fc2(x)
        return self.drop(x)


class Attention(nn.Layer):
    """Shunted self-attention.

    ``sr_ratio > 1``: half of the heads attend to keys/values from a coarse token reduction (``sr1``),
    the other half to a finer one (``sr2``); each half's values get a depthwise-conv enhancement before
    ``attn @ v``. ``sr_ratio == 1``: plain multi-head attention whose depthwise-conv term is added to the
    attention output instead.
    """

    def __init__(self, dim, num_heads=8, qkv_bias=False, qk_scale=None, attn_drop=0.0, proj_drop=0.0, sr_ratio=1):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"Attention: dim {dim} must be divisible by num_heads {num_heads}")
        if sr_ratio > 1 and sr_ratio not in SR_KERNELS:
            raise ValueError(
                f"Attention: sr_ratio must be 1 or one of {sorted(SR_KERNELS)} (the official code builds no other), "
                f"not {sr_ratio}"
            )
        if sr_ratio > 1 and num_heads % 2:
            raise ValueError(
                "Attention: num_heads must be even when sr_ratio > 1 (heads are split between two scales), not "
                f"{num_heads}"
            )
        self.dim = dim
        self.num_heads = num_heads
        head_dim = dim // num_heads
        self.scale = qk_scale or head_dim**-0.5

        self.q = nn.Linear(dim, dim, bias_attr=None if qkv_bias else False)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

        self.sr_ratio = sr_ratio
        if sr_ratio > 1:
            coarse, fine = SR_KERNELS[sr_ratio]
            self.act = nn.GELU()
            self.sr1 = nn.Conv2D(dim, dim, kernel_size=coarse, stride=coarse)
            self.norm1 = LayerNorm(dim, epsilon=DEFAULT_LN_EPS)
            self.sr2 = nn.Conv2D(dim, dim, kernel_size=fine, stride=fine)
            self.norm2 = LayerNorm(dim, epsilon=DEFAULT_LN_EPS)
            # each of k and v covers half of the heads, so kv1/kv2 map dim -> dim, not 2*dim
            self.kv1 = nn.Linear(dim, dim, bias_attr=None if qkv_bias else False)
            self.kv2 = nn.Linear(dim, dim, bias_attr=None if qkv_bias else False)
            self.local_conv1 = nn.Conv2D(dim // 2, dim // 2, kernel_size=3, padding=1, stride=1, groups=dim // 2)
            self.local_conv2 = nn.Conv2D(dim // 2, dim // 2, kernel_size=3, padding=1, stride=1, groups=dim // 2)
        else:
            self.kv = nn.Linear(dim, dim * 2, bias_attr=None if qkv_bias else False)
            self.local_conv = nn.Conv2D(dim, dim, kernel_size=3, padding=1, stride=1, groups=dim)

    def _attend(self, q, image, sr, norm, kv_proj, local_conv):
        """Half of the heads (``q``: B, heads/2, N, d) against one reduced scale of ``image`` (B, C, H, W)."""
        B, C = image.shape[0], image.shape[1]
        N = q.shape[2]
        heads, head_dim = self.num_heads // 2, C // self.num_heads
        reduced = sr(image)
        h, w = reduced.shape[2], reduced.shape[3]
        tokens = self.act(norm(reduced.flatten(start_axis=2).transpose([0, 2, 1])))
        kv = kv_proj(tokens).reshape([B, h * w, 2, heads, head_dim]).transpose([2, 0, 3, 1, 4])
        k, v = kv[0], kv[1]
        # channels of the value image are head-major (head, head_dim)
        v_image = v.transpose([0, 1, 3, 2]).reshape([B, heads * head_dim, h, w])
        v = v + local_conv(v_image).reshape([B, heads, head_dim, h * w]).transpose([0, 1, 3, 2])
        return (
            attention(q, k, v, self.scale, None, self.attn_drop)
            .transpose([0, 2, 1, 3])
            .reshape([B, N, heads * head_dim])
        )

    def forward(self, x, H, W):
        B, N, C = x.shape
        q = self.q(x).reshape([B, N, self.num_heads, C // self.num_heads]).transpose([0, 2, 1, 3])
        if self.sr_ratio > 1:
            half = self.num_heads // 2
            image = x.transpose([0, 2, 1]).reshape([B, C, H, W])
            x1 = self._attend(q[:, :half], image, self.sr1, self.norm1, self.kv1, self.local_conv1)
            x2 = self._attend(q[:, half:], image, self.sr2, self.norm2, self.kv2, self.local_conv2)
            x = paddle.concat([x1, x2], axis=-1)
        else:
            kv = self.kv(x).reshape([B, N, 2, self.num_heads, C // self.num_heads]).transpose([2, 0, 3, 1, 4])
            k, v = kv[0], kv[1]
            v_image = v.transpose([0, 1, 3, 2]).reshape([B, C, H, W])
            x = attention(q, k, v, self.scale, None, self.attn_drop).transpose([0, 2, 1, 3]).reshape([B, N, C])
            x = x + self.local_conv(v_image).flatten(start_axis=2).transpose([0, 2, 1])
        x = self.proj(x)
        return self.proj_drop(x)


class Block(nn.Layer):
    def __init__(
        self,
        dim,
        num_heads,
        mlp_ratio=4.0,
        qkv_bias=False,
        qk_scale=None,
        drop=0.0,
        attn_drop=0.0,
        drop_path=0.0,
        act_layer=nn.GELU,
        norm_layer=LayerNorm,
        sr_ratio=1,
    ):
        super().__init__()
        norm_layer = make_norm(norm_layer)
        self.norm1 = norm_layer(dim)
        self.attn = Attention(
            dim,
            num_heads=num_heads,
            qkv_bias=qkv_bias,
            qk_scale=qk_scale,
            attn_drop=attn_drop,
            proj_drop=drop,
            sr_ratio=sr_ratio,
        )
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = norm_layer(dim)
        self.mlp = Mlp(in_features=dim, hidden_features=int(dim * mlp_ratio), act_layer=act_layer, drop=drop)

    def forward(self, x, H, W):
        x = x + self.drop_path(self.attn(self.norm1(x), H, W))
        x = x + self.drop_path(self.mlp(self.norm2(x), H, W))
        return x


class OverlapPatchEmbed(nn.Layer):
    """Stages 2-4: a strided conv with padding ``patch_size // 2``, then LayerNorm (eps 1e-5)."""

    def __init__(self, img_size=224, patch_size=7, stride=4, in_chans=3, embed_dim=768):
        super().__init__()
        img_size = to_2tuple(img_size)
        patch_size = to_2tuple(patch_size)
        self.img_size = img_size
        self.patch_size = patch_size
        # kept for attribute parity with the official module; forward does not depend on them
        self.H, self.W = img_size[0] // patch_size[0], img_size[1] // patch_size[1]
        self.num_patches = self.H * self.W
        self.proj = nn.Conv2D(
            in_chans, embed_dim, kernel_size=patch_size, stride=stride, padding=(patch_size[0] // 2, patch_size[1] // 2)
        )
        self.norm = LayerNorm(embed_dim, epsilon=DEFAULT_LN_EPS)

    def forward(self, x):
        x = self.proj(x)
        H, W = x.shape[2], x.shape[3]
        x = x.flatten(start_axis=2).transpose([0, 2, 1])
        return self.norm(x), H, W


class Head(nn.Layer):
    """Stage-1 stem: conv7x7/2 + BN + ReLU, ``num`` x (conv3x3 + BN + ReLU), conv2x2/2, LayerNorm.

    The official stem is fixed at 3 input and 64 output channels whatever ``in_chans``/``embed_dims[0]`` say.
    """

    def __init__(self, num):
        super().__init__()
        stem = [nn.Conv2D(3, 64, 7, 2, padding=3, bias_attr=False), BatchNorm2D(64), nn.ReLU()]
        for _ in range(num):
            stem += [nn.Conv2D(64, 64, 3, 1, padding=1, bias_attr=False), BatchNorm2D(64), nn.ReLU()]
        stem.append(nn.Conv2D(64, 64, kernel_size=2, stride=2))
        self.conv = nn.Sequential(*stem)
        self.norm = LayerNorm(64, epsilon=DEFAULT_LN_EPS)

    def forward(self, x):
        x = self.conv(x)
        H, W = x.shape[2], x.shape[3]
        x = x.flatten(start_axis=2).transpose([0, 2, 1])
        return self.norm(x), H, W


class ShuntedTransformer(ClassifierMixin, nn.Layer):
    """The official classifier; ``features_only`` returns the NCHW map after each stage's norm (strides
    4, 8, 16, 32) that ``out_indices`` picks, described by ``feature_info``."""

    def __init__(
        self,
        img_size=224,
        patch_size=16,
        in_chans=3,
        num_classes=1000,
        embed_dims=(64, 128, 256, 512),
        num_heads=(1, 2, 4, 8),
        mlp_ratios=(4, 4, 4, 4),
        qkv_bias=False,
        qk_scale=None,
        drop_rate=0.0,
        attn_drop_rate=0.0,
        drop_path_rate=0.0,
        norm_layer=LayerNorm,
        depths=(3, 4, 6, 3),
        sr_ratios=(8, 4, 2, 1),
        num_stages=4,
        num_conv=0,
        features_only=False,
        out_indices=(0, 1, 2, 3),
    ):
        super().__init__()
        if embed_dims[0] != 64:
            raise ValueError(
                "ShuntedTransformer: embed_dims[0] must be 64 (the official stem always outputs 64 channels), not "
                f"{embed_dims[0]}"
            )
        self.num_classes = check_num_classes(num_classes)
        self.depths = depths
        self.num_stages = num_stages
        self.num_features = embed_dims[3]
        self.features_only = features_only
        stages = [(embed_dims[i], 4 * 2**i, f"norm{i + 1}") for i in range(num_stages)]
        self.feature_info, self.out_indices = select_features(stages, out_indices)
        norm_layer = make_norm(norm_layer)

        total = sum(depths)
        dpr = [drop_path_rate * j / (total - 1) if total > 1 else 0.0 for j in range(total)]
        cur = 0
        for i in range(num_stages):
            if i == 0:
                patch_embed = Head(num_conv)
            else:
                patch_embed = OverlapPatchEmbed(
                    img_size=img_size // (2 ** (i + 1)),
                    patch_size=3,
                    stride=2,
                    in_chans=embed_dims[i - 1],
                    embed_dim=embed_dims[i],
                )
            block = nn.LayerList(
                [
                    Block(
                        dim=embed_dims[i],
                        num_heads=num_heads[i],
                        mlp_ratio=mlp_ratios[i],
                        qkv_bias=qkv_bias,
                        qk_scale=qk_scale,
                        drop=drop_rate,
                        attn_drop=attn_drop_rate,
                        drop_path=dpr[cur + j],
                        norm_layer=norm_layer,
                        sr_ratio=sr_ratios[i],
                    )
                    for j in range(depths[i])
                ]
            )
            norm = norm_layer(embed_dims[i])
            cur += depths[i]
            setattr(self, f"patch_embed{i + 1}", patch_embed)
            setattr(self, f"block{i + 1}", block)
            setattr(self, f"norm{i + 1}", norm)

        # the official head reads embed_dims[3] whatever num_stages is
        self.head = nn.Linear(embed_dims[3], num_classes) if num_classes > 0 else nn.Identity()

    def forward_features(self, x):
        """The last stage's normed tokens (B, N, C), or with ``features_only`` the picked stage maps."""
        B = x.shape[0]
        maps = []
        last = max(self.out_indices) if self.features_only else self.num_stages - 1
        for i in range(last + 1):
            patch_embed = getattr(self, f"patch_embed{i + 1}")
            block = getattr(self, f"block{i + 1}")
            norm = getattr(self, f"norm{i + 1}")
            x, H, W = patch_embed(x)
            for blk in block:
                x = blk(x, H, W)
            x = norm(x)
            if i != self.num_stages - 1 or self.features_only:
                x = x.reshape([B, H, W, -1]).transpose([0, 3, 1, 2])
            if self.features_only and i in self.out_indices:
                maps.append(x)
        return maps if self.features_only else x

    def pool(self, x):
        return x.mean(axis=1)

    @dense_layout
    def forward(self, x):
        x = self.forward_features(x)
        return x if self.features_only else self.forward_head(x)


_VARIANT_KWARGS = dict(
    patch_size=4,
    embed_dims=[64, 128, 256, 512],
    num_heads=[2, 4, 8, 16],
    mlp_ratios=[8, 8, 4, 4],
    qkv_bias=True,
    norm_layer="functools.partial(torch.nn.LayerNorm, eps=1e-6)",
    sr_ratios=[8, 4, 2, 1],
)


def shunted_t(**kwargs):
    return ShuntedTransformer(**{**_VARIANT_KWARGS, "depths": [1, 2, 4, 1], "num_conv": 0, **kwargs})


def shunted_s(**kwargs):
    return ShuntedTransformer(**{**_VARIANT_KWARGS, "depths": [2, 4, 12, 1], "num_conv": 1, **kwargs})


def shunted_b(**kwargs):
    return ShuntedTransformer(**{**_VARIANT_KWARGS, "depths": [3, 4, 24, 2], "num_conv": 2, **kwargs})
