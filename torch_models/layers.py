"""Blocks shared by the PyTorch families. Twin of ``paddle_models/layers.py``."""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from porthub.normspec import parse_norm_layer

__all__ = [
    "DropPath", "Identity", "Mlp", "attention", "dense_layout", "make_norm", "to_2tuple", "register_constant",
    "FeatureInfo", "select_features", "check_num_classes", "reject_unknown", "ClassifierMixin",
    "LayerNorm", "BatchNorm2D", "AdaptiveAvgPool1D", "AdaptiveAvgPool2D",
]

Identity = nn.Identity


def to_2tuple(value):
    if isinstance(value, (tuple, list)):
        return tuple(value)
    return (value, value)


def dense_layout(forward):
    """Twin of Paddle's decorator, which turns Paddle's slow strided copies off around a model's
    forward. PyTorch's kernels read transposed views in place, so ``forward`` is returned as it is."""
    return forward


# Twins of the Paddle classes that work around Paddle 3.3.1's kernels (see paddle_models/layers.py).
# PyTorch's own kernels are exact to float64 rounding here (measured against a long-double reference:
# LayerNorm and train-mode BatchNorm gradients ~4e-16 relative, global average pooling exact), so
# the twins are PyTorch's modules unchanged; the PyTorch models use ``nn.*`` directly.
class LayerNorm(nn.LayerNorm):
    """``nn.LayerNorm`` itself (twin of Paddle's float64 / frozen-weight workaround)."""

    def forward(self, x):
        return super().forward(x)


class BatchNorm2D(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` itself (twin of Paddle's float64 training workaround)."""

    def forward(self, x):
        return super().forward(x)


def _global_mean(output_size, x, axes):
    """Twin of Paddle's float64 global-pooling workaround: PyTorch's pooling gradient is exact."""
    return None


class AdaptiveAvgPool1D(nn.AdaptiveAvgPool1d):
    """``nn.AdaptiveAvgPool1d`` itself (see ``_global_mean``)."""

    def forward(self, x):
        out = _global_mean(self.output_size, x, [-1])
        return super().forward(x) if out is None else out


class AdaptiveAvgPool2D(nn.AdaptiveAvgPool2d):
    """``nn.AdaptiveAvgPool2d`` itself (see ``_global_mean``)."""

    def forward(self, x):
        out = _global_mean(self.output_size, x, [-2, -1])
        return super().forward(x) if out is None else out


def make_norm(norm_layer, default_eps: float = 1e-5) -> Callable[[int], nn.Module]:
    """A factory ``dim -> LayerNorm`` from a class, a partial, or their text form."""
    if callable(norm_layer) and not isinstance(norm_layer, str):
        return norm_layer
    spec = parse_norm_layer(norm_layer, default_eps)
    return lambda dim: nn.LayerNorm(dim, eps=spec.eps)


def attention(q, k, v, scale, bias=None, attn_drop=None):
    """``softmax(q k^T * scale + bias) v`` over the last two axes (4-D: batch, heads, tokens, head_dim).

    Fused (``scaled_dot_product_attention``): the attention matrix is never written out. On CPU that
    measured up to 2x faster than the written-out official formula with many windows (batch 8) and
    about even for one image; the two differ only by rounding (float64: about 1e-15). ``bias``
    broadcasts against (batch, heads, Nq, Nk); ``attn_drop`` (an ``nn.Dropout``) acts on the attention
    weights while training.
    """
    drop = attn_drop.p if attn_drop is not None and attn_drop.training else 0.0
    return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=drop, scale=scale)


class DropPath(nn.Module):
    """Stochastic depth: drops whole residual branches per sample while training; identity in eval."""

    def __init__(self, drop_prob: float = 0.0):
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x):
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep = 1.0 - self.drop_prob
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep


def register_constant(module: nn.Module, name: str, value, persistent: bool = True) -> None:
    """Register a buffer (an index table, a mask) under ``name``; persistent ones are in the state dict."""
    tensor = value if isinstance(value, torch.Tensor) or value is None else torch.as_tensor(value)
    module.register_buffer(name, tensor, persistent=persistent)


class Mlp(nn.Module):
    """The transformer feed-forward block (timm's ``Mlp``): fc1, activation, fc2, with dropout."""

    def __init__(self, in_features, hidden_features=None, out_features=None, act_layer=nn.GELU, drop=0.0):
        super().__init__()
        out_features = out_features or in_features
        hidden_features = hidden_features or in_features
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = act_layer()
        self.fc2 = nn.Linear(hidden_features, out_features)
        self.drop = nn.Dropout(drop)

    def forward(self, x):
        x = self.drop(self.act(self.fc1(x)))
        return self.drop(self.fc2(x))


class FeatureInfo(list):
    """What a ``features_only`` model returns, in output order: one ``{"num_chs", "reduction", "module"}``
    dict per map (channels, stride against the input, the module whose output it is)."""

    def channels(self):
        return [info["num_chs"] for info in self]

    def reduction(self):
        return [info["reduction"] for info in self]

    def module_name(self):
        return [info["module"] for info in self]


def select_features(stages, out_indices):
    """The :class:`FeatureInfo` of the stage outputs ``out_indices`` picks (negative indices count from the
    end, as in timm) and those indices made non-negative; ``stages`` lists ``(num_chs, reduction, module)``
    for every output the architecture has."""
    count = len(stages)
    picked = []
    for index in out_indices:
        if not isinstance(index, int) or not -count <= index < count:
            raise ValueError(f"out_indices must be integers in [-{count}, {count}) (this model has {count} "
                             f"feature maps), not {tuple(out_indices)}")
        picked.append(index % count)
    if not picked or len(set(picked)) != len(picked):
        raise ValueError(f"out_indices must name at least one map and none twice, not {tuple(out_indices)}")
    info = FeatureInfo({"num_chs": int(stages[i][0]), "reduction": int(stages[i][1]), "module": stages[i][2]}
                       for i in picked)
    return info, tuple(picked)


def check_num_classes(num_classes):
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 0:
        raise ValueError(f"num_classes must be a non-negative integer (0: no classifier), not {num_classes!r}")
    return num_classes


def reject_unknown(owner, kwargs):
    """Fail on keyword arguments no constructor takes, as Python does (a misspelt ``num_clases=10`` must not
    build a 1000-class model)."""
    if kwargs:
        raise TypeError(f"{owner}.__init__() got unexpected keyword argument(s) {', '.join(map(repr, sorted(kwargs)))}")


class ClassifierMixin:
    """timm's classifier API for a model whose classifier is the ``nn.Linear`` attribute ``head_name`` on
    ``num_features`` pooled features; the model defines ``forward_features`` and ``pool``."""

    head_name = "head"

    def get_classifier(self):
        return getattr(self, self.head_name)

    def reset_classifier(self, num_classes):
        """A new, freshly initialised classifier for ``num_classes`` (0: none, ``forward`` gives the pooled
        features), in the dtype and on the device of the model's parameters."""
        self.num_classes = check_num_classes(num_classes)
        head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        like = next(iter(self.parameters()), None)
        if like is not None:
            head = head.to(device=like.device, dtype=like.dtype)
        setattr(self, self.head_name, head)

    def forward_head(self, x, pre_logits=False):
        x = self.pool(x)
        return x if pre_logits else self.get_classifier()(x)
