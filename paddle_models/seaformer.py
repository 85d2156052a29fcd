"""SeaFormer (Wan et al., ICLR 2023) in PaddlePaddle: the ImageNet classifier of ``seaformer-cls`` and the
segmentation model of ``seaformer-seg`` (SeaFormer backbone + LightHead in an mmseg EncoderDecoder).

Module names, constructor keyword arguments and state-dict keys follow fudan-zvg/SeaFormer, so the
official checkpoints load once the declared layer kinds are converted. Twin of ``torch_models/seaformer.py``.
"""

from __future__ import annotations

import numpy as np
import paddle
from paddle import nn
from paddle.nn import functional as F

from paddle_models.layers import (
    AdaptiveAvgPool2D,
    BatchNorm2D,
    ClassifierMixin,
    DropPath,
    check_num_classes,
    dense_layout,
    select_features,
)

__all__ = [
    "Conv2d_BN",
    "Mlp",
    "InvertedResidual",
    "StackedMV2Block",
    "SqueezeAxialPositionalEmbedding",
    "Sea_Attention",
    "Block",
    "BasicLayer",
    "h_sigmoid",
    "SeaFormer",
    "SeaFormerBackbone",
    "ConvModule",
    "Fusion_block",
    "LightHead",
    "EncoderDecoder",
]

_BN_TYPES = ("BN", "BN2d", "SyncBN")
_ACTIVATIONS = {"ReLU": nn.ReLU, "ReLU6": nn.ReLU6, "GELU": nn.GELU, "Hardswish": nn.Hardswish}


def _make_divisible(value, divisor, min_value=None):
    """Round a channel count to a multiple of ``divisor`` without losing more than 10% (MobileNet rule)."""
    if min_value is None:
        min_value = divisor
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def _activation_class(act):
    """``act_layer`` as a class; text such as ``"nn.ReLU6"`` or ``"torch.nn.ReLU"`` names one of the activations."""
    if isinstance(act, str):
        name = act.rsplit(".", 1)[-1].removesuffix("()")
        if name not in _ACTIVATIONS:
            raise ValueError(f"act_layer {act!r} is not supported; use one of {sorted(_ACTIVATIONS)}")
        return _ACTIVATIONS[name]
    return act


def _build_norm(norm_cfg, num_features):
    """The BatchNorm of an mmcv ``norm_cfg`` (SyncBN computes plain BatchNorm in eval and has the same keys)."""
    cfg = dict(norm_cfg)
    norm_type = cfg.pop("type", None)
    if norm_type not in _BN_TYPES:
        raise ValueError(f"norm_cfg type {norm_type!r} is not supported; SeaFormer releases use one of {_BN_TYPES}")
    cfg.pop("requires_grad", None)
    eps = cfg.pop("eps", 1e-5)
    momentum = cfg.pop("momentum", 0.1)
    if cfg:
        raise ValueError(f"norm_cfg keys {sorted(cfg)} are not supported; only type, requires_grad, eps, momentum")
    # Paddle's momentum weighs the running statistic, torch's the new batch statistic
    return BatchNorm2D(num_features, momentum=1 - momentum, epsilon=eps)


def _build_act(act_cfg):
    if act_cfg is None:
        return None
    cfg = dict(act_cfg)
    act_type = cfg.pop("type", None)
    cfg.pop("inplace", None)
    if act_type not in _ACTIVATIONS or cfg:
        raise ValueError(
            f"act_cfg {act_cfg!r} is not supported; use type one of {sorted(_ACTIVATIONS)} without options"
        )
    return _ACTIVATIONS[act_type]()


# Paddle's interpolate kernels compute the source-coordinate ratio in float32 even for float64 tensors,
# which leaves up to 1.7e-8 (relative) between the frameworks in float64 at sizes like 200x328; the
# resize is therefore written out with PyTorch's sampling positions, computed in float64.
def _resize(x, size, align_corners=False):
    """Linear (``(B, C, L)``) or bilinear (``(B, C, H, W)``) resize of the trailing axes to ``size``."""
    if x.dtype != paddle.float64:
        # in float32 the kernel's float32 ratio is below the data's own rounding, and it is ~10x faster
        # than two gathers on a full-resolution 150-class map
        mode, layout = ("linear", "NCW") if x.ndim == 3 else ("bilinear", "NCHW")
        return F.interpolate(x, size=[int(n) for n in size], mode=mode, align_corners=align_corners, align_mode=0,
                             data_format=layout)
    for axis in reversed(range(2, x.ndim)):
        in_size, out_size = x.shape[axis], int(size[axis - 2])
        dst = np.arange(out_size, dtype=np.float64)
        if align_corners:
            src = dst * ((in_size - 1) / (out_size - 1) if out_size > 1 else 0.0)
        else:
            src = np.maximum((dst + 0.5) * (in_size / out_size) - 0.5, 0.0)
        first = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
        second = np.minimum(first + 1, in_size - 1)
        shape = [1] * x.ndim
        shape[axis] = out_size
        weight = paddle.to_tensor((src - first).reshape(shape), dtype=x.dtype)
        near = paddle.index_select(x, paddle.to_tensor(first), axis=axis)
        far = paddle.index_select(x, paddle.to_tensor(second), axis=axis)
        x = (1 - weight) * near + weight * far
    return x


class Conv2d_BN(nn.Sequential):
    """Bias-free convolution ``c`` followed by BatchNorm ``bn``."""

    def __init__(self, a, b, ks=1, stride=1, pad=0, dilation=1, groups=1, bn_weight_init=1, bias=False,
                 norm_cfg=dict(type="BN", requires_grad=True)):
        super().__init__()
        self.inp_channel = a
        self.out_channel = b
        self.ks = ks
        self.pad = pad
        self.stride = stride
        self.dilation = dilation
        self.groups = groups
        self.add_sublayer("c", nn.Conv2D(a, b, ks, stride, pad, dilation, groups, bias_attr=None if bias else False))
        bn = _build_norm(norm_cfg, b)
        nn.initializer.Constant(bn_weight_init)(bn.weight)
        nn.initializer.Constant(0.0)(bn.bias)
        self.add_sublayer("bn", bn)


class Mlp(nn.Layer):
    """1x1 expand, 3x3 depthwise (with bias, no norm), activation, 1x1 project."""

    def __init__(self, in_features, hidden_features=None, out_features=None, act_layer=nn.ReLU, drop=0.0,
                 norm_cfg=dict(type="BN", requires_grad=True)):
        super().__init__()
        out_features = out_features or in_features
        hidden_features = hidden_features or in_features
        self.fc1 = Conv2d_BN(in_features, hidden_features, norm_cfg=norm_cfg)
        self.dwconv = nn.Conv2D(hidden_features, hidden_features, 3, 1, 1, groups=hidden_features)
        self.act = act_layer()
        self.fc2 = Conv2d_BN(hidden_features, out_features, norm_cfg=norm_cfg)
        self.drop = nn.Dropout(drop)

    def forward(self, x):
        x = self.fc1(x)
        x = self.dwconv(x)
        x = self.act(x)
        x = self.drop(x)
        x = self.fc2(x)
        x = self.drop(x)
        return x


class InvertedResidual(nn.Layer):
    """MobileNetV2 block; with ``expand_ratio == 1`` the pointwise expansion is absent, which shifts the
    ``conv`` indices (the official keys depend on it)."""

    def __init__(self, inp, oup, ks, stride, expand_ratio, activations=None,
                 norm_cfg=dict(type="BN", requires_grad=True)):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"InvertedResidual stride must be 1 or 2, not {stride}")
        self.stride = stride
        self.expand_ratio = expand_ratio
        if activations is None:
            activations = nn.ReLU
        hidden_dim = int(round(inp * expand_ratio))
        self.use_res_connect = stride == 1 and inp == oup
        layers = []
        if expand_ratio != 1:
            layers.append(Conv2d_BN(inp, hidden_dim, ks=1, norm_cfg=norm_cfg))
            layers.append(activations())
        layers.append(Conv2d_BN(hidden_dim, hidden_dim, ks=ks, stride=stride, pad=ks // 2, groups=hidden_dim,
                                norm_cfg=norm_cfg))
        layers.append(activations())
        layers.append(Conv2d_BN(hidden_dim, oup, ks=1, norm_cfg=norm_cfg))
        self.conv = nn.Sequential(*layers)
        self.out_channels = oup
        self._is_cn = stride > 1

    def forward(self, x):
        if self.use_res_connect:
            return x + self.conv(x)
        return self.conv(x)


class StackedMV2Block(nn.Layer):
    """One MobileNetV2 stage ``layer1..layerN`` from ``[kernel, expand, channels, stride]`` rows; the first
    stage also owns the stride-2 stem."""

    def __init__(self, cfgs, stem, inp_channel=16, activation=nn.ReLU,
                 norm_cfg=dict(type="BN", requires_grad=True), width_mult=1.0):
        super().__init__()
        self.stem = stem
        if stem:
            self.stem_block = nn.Sequential(Conv2d_BN(3, inp_channel, 3, 2, 1, norm_cfg=norm_cfg), activation())
        self.cfgs = cfgs
        self.layers = []
        for i, (k, t, c, s) in enumerate(cfgs):
            output_channel = _make_divisible(c * width_mult, 8)
            name = f"layer{i + 1}"
            self.add_sublayer(name, InvertedResidual(inp_channel, output_channel, ks=k, stride=s, expand_ratio=t,
                                                   norm_cfg=norm_cfg, activations=activation))
            inp_channel = output_channel
            self.layers.append(name)

    def forward(self, x):
        if self.stem:
            x = self.stem_block(x)
        for name in self.layers:
            x = getattr(self, name)(x)
        return x


class SqueezeAxialPositionalEmbedding(nn.Layer):
    """A learned 16-long embedding, linearly resampled (align_corners=False) to the squeezed axis length."""

    def __init__(self, dim, shape):
        super().__init__()
        self.pos_embed = self.create_parameter([1, dim, shape], default_initializer=nn.initializer.Normal(0.0, 1.0))

    def forward(self, x):
        length = x.shape[2]
        return x + _resize(self.pos_embed, [length])


class h_sigmoid(nn.Layer):
    """``relu6(x + 3) / 6``, kept literal: the fused hardsigmoid kernels round differently."""

    def __init__(self, inplace=True):
        super().__init__()
        self.relu = nn.ReLU6()

    def forward(self, x):
        return self.relu(x + 3) / 6


class Sea_Attention(nn.Layer):
    """Squeeze-enhanced axial attention: row and column attention on axis means, gated by a
    depthwise "detail enhancement" branch over the concatenated q, k, v.

    ``detail_dim`` is the channel count of that branch: the classification code sizes it
    ``dh + 2 * nh_kd``, the segmentation backbone ``2 * dh`` (equal when ``attn_ratio == 2``).
    """

    def __init__(self, dim, key_dim, num_heads, attn_ratio=2, activation=None,
                 norm_cfg=dict(type="BN", requires_grad=True), detail_dim=None):
        super().__init__()
        self.num_heads = num_heads
        self.scale = key_dim ** -0.5
        self.key_dim = key_dim
        self.nh_kd = nh_kd = key_dim * num_heads
        self.d = int(attn_ratio * key_dim)
        self.dh = int(attn_ratio * key_dim) * num_heads
        self.attn_ratio = attn_ratio
        if detail_dim is None:
            detail_dim = self.dh + 2 * nh_kd

        self.to_q = Conv2d_BN(dim, nh_kd, 1, norm_cfg=norm_cfg)
        self.to_k = Conv2d_BN(dim, nh_kd, 1, norm_cfg=norm_cfg)
        self.to_v = Conv2d_BN(dim, self.dh, 1, norm_cfg=norm_cfg)

        self.proj = nn.Sequential(activation(), Conv2d_BN(self.dh, dim, bn_weight_init=0, norm_cfg=norm_cfg))
        self.proj_encode_row = nn.Sequential(
            activation(), Conv2d_BN(self.dh, self.dh, bn_weight_init=0, norm_cfg=norm_cfg))
        self.pos_emb_rowq = SqueezeAxialPositionalEmbedding(nh_kd, 16)
        self.pos_emb_rowk = SqueezeAxialPositionalEmbedding(nh_kd, 16)
        self.proj_encode_column = nn.Sequential(
            activation(), Conv2d_BN(self.dh, self.dh, bn_weight_init=0, norm_cfg=norm_cfg))
        self.pos_emb_columnq = SqueezeAxialPositionalEmbedding(nh_kd, 16)
        self.pos_emb_columnk = SqueezeAxialPositionalEmbedding(nh_kd, 16)

        self.dwconv = Conv2d_BN(detail_dim, detail_dim, ks=3, stride=1, pad=1, dilation=1, groups=detail_dim,
                                norm_cfg=norm_cfg)
        self.act = activation()
        self.pwconv = Conv2d_BN(detail_dim, dim, ks=1, norm_cfg=norm_cfg)
        self.sigmoid = h_sigmoid()

    def _axial(self, q, k, v, pos_q, pos_k, length):
        """Attention along one squeezed axis; channels split head-major into (heads, per-head)."""
        batch = q.shape[0]
        q = pos_q(q).reshape([batch, self.num_heads, -1, length]).transpose([0, 1, 3, 2])
        k = pos_k(k).reshape([batch, self.num_heads, -1, length])
        v = v.reshape([batch, self.num_heads, -1, length]).transpose([0, 1, 3, 2])
        attn = F.softmax(paddle.matmul(q, k) * self.scale, axis=-1)
        return paddle.matmul(attn, v).transpose([0, 1, 3, 2]).reshape([batch, self.dh, length])

    def forward(self, x):
        batch, _, height, width = x.shape
        q = self.to_q(x)
        k = self.to_k(x)
        v = self.to_v(x)

        detail = self.pwconv(self.act(self.dwconv(paddle.concat([q, k, v], axis=1))))

        row = self._axial(q.mean(-1), k.mean(-1), v.mean(-1), self.pos_emb_rowq, self.pos_emb_rowk, height)
        row = self.proj_encode_row(row.reshape([batch, self.dh, height, 1]))
        column = self._axial(q.mean(-2), k.mean(-2), v.mean(-2), self.pos_emb_columnq, self.pos_emb_columnk, width)
        column = self.proj_encode_column(column.reshape([batch, self.dh, 1, width]))

        gate = self.proj(v + (row + column))
        return self.sigmoid(gate) * detail


class Block(nn.Layer):
    """Residual attention then residual MLP; no normalisation besides the BatchNorms inside."""

    def __init__(self, dim, key_dim, num_heads, mlp_ratio=4.0, attn_ratio=2.0, drop=0.0, drop_path=0.0,
                 act_layer=nn.ReLU, norm_cfg=dict(type="BN2d", requires_grad=True), detail_dim=None):
        super().__init__()
        self.dim = dim
        self.num_heads = num_heads
        self.mlp_ratio = mlp_ratio
        self.attn = Sea_Attention(dim, key_dim=key_dim, num_heads=num_heads, attn_ratio=attn_ratio,
                                  activation=act_layer, norm_cfg=norm_cfg, detail_dim=detail_dim)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.mlp = Mlp(in_features=dim, hidden_features=int(dim * mlp_ratio), act_layer=act_layer, drop=drop,
                       norm_cfg=norm_cfg)

    def forward(self, x1):
        x1 = x1 + self.drop_path(self.attn(x1))
        x1 = x1 + self.drop_path(self.mlp(x1))
        return x1


class BasicLayer(nn.Layer):
    def __init__(self, block_num, embedding_dim, key_dim, num_heads, mlp_ratio=4.0, attn_ratio=2.0, drop=0.0,
                 attn_drop=0.0, drop_path=0.0, norm_cfg=dict(type="BN2d", requires_grad=True), act_layer=None,
                 detail_dim=None):
        super().__init__()
        self.block_num = block_num
        self.transformer_blocks = nn.LayerList()
        for i in range(block_num):
            self.transformer_blocks.append(Block(
                embedding_dim, key_dim=key_dim, num_heads=num_heads, mlp_ratio=mlp_ratio, attn_ratio=attn_ratio,
                drop=drop, drop_path=drop_path[i] if isinstance(drop_path, list) else drop_path,
                norm_cfg=norm_cfg, act_layer=act_layer, detail_dim=detail_dim))

    def forward(self, x):
        for block in self.transformer_blocks:
            x = block(x)
        return x


def _stage_drop_rates(drop_path_rate, depth):
    """Stochastic depth rising linearly from 0 within each transformer stage (as the official code does)."""
    if depth == 1:
        return [0.0]
    return [drop_path_rate * j / (depth - 1) for j in range(depth)]


def _check_stage_lists(cfgs, channels, emb_dims, key_dims, depths, mlp_ratios):
    if len(channels) != len(cfgs) + 1:
        raise ValueError(f"channels needs len(cfgs) + 1 = {len(cfgs) + 1} entries (stem, then one per stage), "
                         f"got {len(channels)}")
    if len(depths) > len(cfgs):
        raise ValueError(f"{len(depths)} transformer stages cannot follow {len(cfgs)} MobileNet stages; "
                         "give at most one depth per entry of cfgs")
    for name, values in (("emb_dims", emb_dims), ("key_dims", key_dims), ("mlp_ratios", mlp_ratios)):
        if len(values) < len(depths):
            raise ValueError(f"{name} needs one entry per transformer stage ({len(depths)}), got {len(values)}")


class _SeaFormerStages(nn.Layer):
    """The stages shared by the classifier and the segmentation backbone: ``smb1..`` MobileNetV2 stages,
    then ``trans1..`` transformer stages after each of the last ``len(depths)`` of them."""

    def _build_stages(self, cfgs, channels, emb_dims, key_dims, depths, num_heads, attn_ratios, mlp_ratios,
                      drop_path_rate, norm_cfg, act_layer, seg_detail):
        _check_stage_lists(cfgs, channels, emb_dims, key_dims, depths, mlp_ratios)
        act_layer = _activation_class(act_layer)
        for i in range(len(cfgs)):
            self.add_sublayer(f"smb{i + 1}", StackedMV2Block(cfgs=cfgs[i], stem=i == 0, inp_channel=channels[i],
                                                           norm_cfg=norm_cfg))
        for i in range(len(depths)):
            dh = int(attn_ratios * key_dims[i]) * num_heads
            self.add_sublayer(f"trans{i + 1}", BasicLayer(
                block_num=depths[i], embedding_dim=emb_dims[i], key_dim=key_dims[i], num_heads=num_heads,
                mlp_ratio=mlp_ratios[i], attn_ratio=attn_ratios, drop=0, attn_drop=0,
                drop_path=_stage_drop_rates(drop_path_rate, depths[i]), norm_cfg=norm_cfg, act_layer=act_layer,
                detail_dim=2 * dh if seg_detail else None))

    def _feature_stages(self, cfgs, emb_dims, depths):
        """(channels, stride, module) of what ``_run_stages(x, taps=(1,))`` returns: the 1/8 map after
        ``smb2``, then each transformer stage's output."""
        strides, stride = [], 2  # the stem is stride 2
        for rows in cfgs:
            for row in rows:
                stride *= row[3]
            strides.append(stride)
        stages = [(_make_divisible(cfgs[1][-1][2], 8), strides[1], "smb2")]
        for j in range(len(depths)):
            stages.append((emb_dims[j], strides[len(cfgs) - len(depths) + j], f"trans{j + 1}"))
        return stages

    def _run_stages(self, x, taps):
        num_smb = len(self.cfgs)
        num_trans = len(self.depths)
        outputs = []
        for i in range(num_smb):
            x = getattr(self, f"smb{i + 1}")(x)
            if i in taps:
                outputs.append(x)
            if num_trans + i >= num_smb:
                x = getattr(self, f"trans{i + num_trans - num_smb + 1}")(x)
                outputs.append(x)
        return x, outputs


class SeaFormer(ClassifierMixin, _SeaFormerStages):
    """ImageNet classifier of ``seaformer-cls``. ``num_classes`` sizes ``linear`` (the official code fixes
    it at 1000, which is the default here). ``features_only`` returns the segmentation backbone's maps
    (after ``smb2`` at 1/8, then each transformer stage) that ``out_indices`` picks, described by
    ``feature_info``."""

    head_name = "linear"

    def __init__(self, cfgs, channels, emb_dims, key_dims, depths=[2, 2], num_heads=4, attn_ratios=2,
                 mlp_ratios=[2, 4], drop_path_rate=0.0, norm_cfg=dict(type="BN", requires_grad=True),
                 act_layer=nn.ReLU6, init_cfg=None, num_classes=1000, features_only=False,
                 out_indices=None):
        super().__init__()
        self.num_classes = check_num_classes(num_classes)
        self.num_features = channels[-1]
        self.features_only = features_only
        stages = self._feature_stages(cfgs, emb_dims, depths)
        # default: every map (their number follows the number of transformer stages)
        picked = range(len(stages)) if out_indices is None else out_indices
        self.feature_info, self.out_indices = select_features(stages, picked)
        self.channels = channels
        self.depths = depths
        self.cfgs = cfgs
        self.norm_cfg = norm_cfg
        self.init_cfg = init_cfg
        self._build_stages(cfgs, channels, emb_dims, key_dims, depths, num_heads, attn_ratios, mlp_ratios,
                           drop_path_rate, norm_cfg, act_layer, seg_detail=False)
        self.linear = nn.Linear(channels[-1], num_classes) if num_classes > 0 else nn.Identity()
        self.avgpool = AdaptiveAvgPool2D((1, 1))

    def forward_features(self, x):
        """The last stage's map (B, C, H, W), or with ``features_only`` the picked maps."""
        if self.features_only:
            _, outputs = self._run_stages(x, taps=(1,))
            return [outputs[i] for i in self.out_indices]
        x, _ = self._run_stages(x, taps=())
        return x

    def pool(self, x):
        return self.avgpool(x).reshape([-1, x.shape[1]])

    @dense_layout
    def forward(self, x):
        x = self.forward_features(x)
        return x if self.features_only else self.forward_head(x)


class SeaFormerBackbone(_SeaFormerStages):
    """The ``SeaFormer`` backbone of ``seaformer-seg``: no classifier; returns the 1/8 feature (after
    ``smb2``) followed by the output of every transformer stage.

    ``init_cfg`` (the ImageNet checkpoint path used for training) is accepted and kept, never loaded:
    porthub loads whole-model checkpoints.
    """

    def __init__(self, cfgs, channels, emb_dims, key_dims, depths=[2, 2], num_heads=8, attn_ratios=2,
                 mlp_ratios=[2, 4], drop_path_rate=0.0,
                 norm_cfg=dict(type="BN", requires_grad=True), act_layer=nn.ReLU6, num_classes=1000,
                 init_cfg=None):
        super().__init__()
        for key_dim in key_dims[:len(depths)]:
            if int(attn_ratios * key_dim) != 2 * key_dim:
                raise ValueError(f"the segmentation SeaFormer only runs with attn_ratios == 2 (its detail branch "
                                 f"takes 2*dh channels from cat(q, k, v)), got {attn_ratios}")
        self.num_classes = num_classes
        self.channels = channels
        self.depths = depths
        self.cfgs = cfgs
        self.norm_cfg = norm_cfg
        self.init_cfg = init_cfg
        self.pretrained = None if init_cfg is None else init_cfg.get("checkpoint")
        self._build_stages(cfgs, channels, emb_dims, key_dims, depths, num_heads, attn_ratios, mlp_ratios,
                           drop_path_rate, norm_cfg, act_layer, seg_detail=True)
        self.feature_info, _ = select_features(self._feature_stages(cfgs, emb_dims, depths), range(len(depths) + 1))

    @dense_layout
    def forward(self, x):
        _, outputs = self._run_stages(x, taps=(1,))
        return outputs


class ConvModule(nn.Layer):
    """mmcv's conv -> norm -> activation unit, reduced to what LightHead configures: children ``conv``,
    ``bn`` (when ``norm_cfg`` is given; the conv then has no bias) and ``activate``."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 bias="auto", conv_cfg=None, norm_cfg=None, act_cfg=dict(type="ReLU"), inplace=True):
        super().__init__()
        if conv_cfg is not None and dict(conv_cfg) != {"type": "Conv2d"} and dict(conv_cfg) != {"type": "Conv"}:
            raise ValueError(f"conv_cfg {conv_cfg!r} is not supported; use None (a plain Conv2d)")
        self.with_norm = norm_cfg is not None
        if bias == "auto":
            bias = not self.with_norm
        self.conv = nn.Conv2D(in_channels, out_channels, kernel_size, stride, padding, dilation, groups,
                              bias_attr=None if bias else False)
        if self.with_norm:
            self.bn = _build_norm(norm_cfg, out_channels)
        self.with_activation = act_cfg is not None
        if self.with_activation:
            self.activate = _build_act(act_cfg)

    def forward(self, x):
        x = self.conv(x)
        if self.with_norm:
            x = self.bn(x)
        if self.with_activation:
            x = self.activate(x)
        return x


class Fusion_block(nn.Layer):
    """Gates the (upsampled) high-level feature onto the detail feature: ``local * up(h_sigmoid(global))``."""

    def __init__(self, inp, oup, embed_dim, norm_cfg=dict(type="BN", requires_grad=True), activations=None):
        super().__init__()
        self.norm_cfg = norm_cfg
        self.local_embedding = ConvModule(inp, embed_dim, kernel_size=1, norm_cfg=norm_cfg, act_cfg=None)
        self.global_act = ConvModule(oup, embed_dim, kernel_size=1, norm_cfg=norm_cfg, act_cfg=None)
        self.act = h_sigmoid()

    def forward(self, x_l, x_g):
        height, width = x_l.shape[2:]
        local_feat = self.local_embedding(x_l)
        gate = _resize(self.act(self.global_act(x_g)), (height, width))
        return local_feat * gate


class LightHead(nn.Layer):
    """The SeaFormer segmentation head (an mmseg BaseDecodeHead with ``multiple_select`` inputs): fuses the
    1/8 feature with each deeper one, then a (depthwise) ``linear_fuse`` ConvModule and ``conv_seg``."""

    def __init__(self, embed_dims, is_dw=False, *, in_channels, channels, num_classes, dropout_ratio=0.1,
                 conv_cfg=None, norm_cfg=None, act_cfg=dict(type="ReLU"), in_index=-1, loss_decode=None,
                 ignore_index=255, sampler=None, align_corners=False, init_cfg=None):
        super().__init__()
        if not isinstance(in_channels, (list, tuple)) or not isinstance(in_index, (list, tuple)):
            raise ValueError("LightHead selects several backbone outputs: in_channels and in_index must be lists")
        if len(in_channels) != len(in_index):
            raise ValueError(f"in_channels ({len(in_channels)}) and in_index ({len(in_index)}) must have equal length")
        if len(in_channels) < len(embed_dims) + 1:
            raise ValueError(f"{len(embed_dims)} fusions need {len(embed_dims) + 1} inputs, "
                             f"in_channels has {len(in_channels)}")
        if conv_cfg is not None:
            raise ValueError(f"conv_cfg {conv_cfg!r} is not supported by LightHead; use None")
        self.input_transform = "multiple_select"
        self.in_channels = list(in_channels)
        self.in_index = list(in_index)
        self.channels = channels
        self.num_classes = num_classes
        self.dropout_ratio = dropout_ratio
        self.conv_cfg = conv_cfg
        self.norm_cfg = norm_cfg
        self.act_cfg = act_cfg
        self.ignore_index = ignore_index
        self.align_corners = align_corners
        self.conv_seg = nn.Conv2D(channels, num_classes, kernel_size=1)
        self.dropout = nn.Dropout2D(dropout_ratio) if dropout_ratio > 0 else None
        self.linear_fuse = ConvModule(channels, channels, kernel_size=1, stride=1, groups=channels if is_dw else 1,
                                      norm_cfg=norm_cfg, act_cfg=act_cfg)
        for i in range(len(embed_dims)):
            self.add_sublayer(f"fuse{i + 1}", Fusion_block(in_channels[0] if i == 0 else embed_dims[i - 1],
                                                         in_channels[i + 1], embed_dim=embed_dims[i],
                                                         norm_cfg=norm_cfg))
        self.embed_dims = embed_dims

    def forward(self, inputs):
        xx = [inputs[i] for i in self.in_index]
        x_detail = xx[0]
        for i in range(len(self.embed_dims)):
            x_detail = getattr(self, f"fuse{i + 1}")(x_detail, xx[i + 1])
        feat = self.linear_fuse(x_detail)
        if self.dropout is not None:
            feat = self.dropout(feat)
        return self.conv_seg(feat)


def _component_kwargs(cfg, expected_type, role):
    kwargs = dict(cfg)
    declared = kwargs.pop("type", expected_type)
    if declared != expected_type:
        raise ValueError(f"{role} type {declared!r} is not part of SeaFormer; use {expected_type!r}")
    return kwargs


class EncoderDecoder(nn.Layer):
    """mmseg's EncoderDecoder with the SeaFormer backbone and LightHead: logits of the head, bilinearly
    resized to the input size. Its keys are the released ``backbone.*`` / ``decode_head.*`` keys."""

    def __init__(self, backbone, decode_head, neck=None, auxiliary_head=None, train_cfg=None, test_cfg=None,
                 pretrained=None, init_cfg=None):
        super().__init__()
        if neck is not None or auxiliary_head is not None:
            raise ValueError("the SeaFormer releases have no neck and no auxiliary head; pass neck=None, "
                             "auxiliary_head=None")
        if test_cfg is not None and dict(test_cfg).get("mode", "whole") != "whole":
            raise ValueError(f"test_cfg {test_cfg!r}: only whole-image inference (mode='whole') is implemented")
        self.backbone = SeaFormerBackbone(**_component_kwargs(backbone, "SeaFormer", "backbone"))
        self.decode_head = LightHead(**_component_kwargs(decode_head, "LightHead", "decode_head"))
        self.align_corners = self.decode_head.align_corners
        self.num_classes = self.decode_head.num_classes

    @dense_layout
    def forward(self, img):
        out = self.decode_head(self.backbone(img))
        return _resize(out, img.shape[2:], self.align_corners)
