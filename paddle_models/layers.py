"""Blocks shared by the Paddle families. Twin of ``torch_models/layers.py``."""

from __future__ import annotations

import functools
import os
from typing import Callable

import paddle
import paddle.nn.functional as F
from paddle import nn

from porthub.normspec import parse_norm_layer

__all__ = [
    "DropPath", "Identity", "Mlp", "attention", "dense_layout", "make_norm", "to_2tuple", "register_constant",
    "FeatureInfo", "select_features", "check_num_classes", "reject_unknown", "ClassifierMixin",
]

Identity = nn.Identity


def to_2tuple(value):
    if isinstance(value, (tuple, list)):
        return tuple(value)
    return (value, value)


# Paddle 3's stride kernels make transpose a view and copy it element by element when a reshape,
# concat or matmul needs it contiguous: on CPU that copy is ~100x slower than the dense transpose
# kernel (9.4 ms against 0.07 ms for one window partition of a 56x56x288 map), and it was half
# of Focal's forward. The user's own FLAGS_use_stride_kernel, if set, is left alone.
_DENSE_LAYOUT = "FLAGS_use_stride_kernel" not in os.environ


def dense_layout(forward):
    """Run ``forward`` with Paddle's stride kernels off (transposes and slices copied densely, as in
    Paddle 2), restoring the previous setting afterwards. The flag is process-wide: Paddle models of
    porthub called from several threads at once share it.

    The wrapper takes ``(self, x)`` by name, like every decorated forward: ``paddle.jit.to_static``
    reads the argument list with ``inspect.getfullargspec``, which ignores ``functools.wraps``, and
    refuses a ``(*args, **kwargs)`` wrapper. While a static graph is traced the flag is not touched
    (it only concerns eager kernels), and the AST translator reads the source of ``forward`` itself
    (``inspect.getsource`` follows ``__wrapped__``)."""
    if not _DENSE_LAYOUT:
        return forward

    @functools.wraps(forward)
    def wrapper(self, x):
        if not paddle.in_dynamic_mode():
            return forward(self, x)
        previous = paddle.get_flags("FLAGS_use_stride_kernel")["FLAGS_use_stride_kernel"]
        paddle.set_flags({"FLAGS_use_stride_kernel": False})
        try:
            return forward(self, x)
        finally:
            paddle.set_flags({"FLAGS_use_stride_kernel": previous})

    return wrapper


def make_norm(norm_layer, default_eps: float = 1e-5) -> Callable[[int], nn.Layer]:
    """A factory ``dim -> LayerNorm`` from a class, a partial, or their text form."""
    if callable(norm_layer) and not isinstance(norm_layer, str):
        return norm_layer
    spec = parse_norm_layer(norm_layer, default_eps)
    return lambda dim: nn.LayerNorm(dim, epsilon=spec.eps)


def attention(q, k, v, scale, bias=None, attn_drop=None):
    """``softmax(q k^T * scale + bias) v`` over the last two axes, written out: Paddle's fused attention
    has no CPU kernel. ``bias`` broadcasts against the attention matrix; ``attn_drop`` (an
    ``nn.Dropout``) acts on the attention weights."""
    attn = paddle.matmul(q, k, transpose_y=True) * scale
    if bias is not None:
        attn = attn + bias
    attn = F.softmax(attn, axis=-1)
    if attn_drop is not None:
        # functional, like PyTorch's fused call: neither framework runs the module, so per-layer
        # reports see the same module calls in both
        attn = F.dropout(attn, p=attn_drop.p, training=attn_drop.training)
    return paddle.matmul(attn, v)


class DropPath(nn.Layer):
    """Stochastic depth: drops whole residual branches per sample while training; identity in eval."""

    def __init__(self, drop_prob: float = 0.0):
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x):
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep = 1.0 - self.drop_prob
        mask = paddle.bernoulli(paddle.full([x.shape[0]] + [1] * (x.ndim - 1), keep, dtype=x.dtype))
        return x * mask / keep


def register_constant(module: nn.Layer, name: str, value, persistent: bool = True) -> None:
    """Register a buffer (an index table, a mask) under ``name``; persistent ones are in the state dict."""
    tensor = value if isinstance(value, paddle.Tensor) or value is None else paddle.to_tensor(value)
    module.register_buffer(name, tensor, persistable=persistent)


class Mlp(nn.Layer):
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
        features), in the dtype of the model's parameters."""
        self.num_classes = check_num_classes(num_classes)
        head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        like = next(iter(self.parameters()), None)
        if like is not None:
            head = head.to(dtype=like.dtype)
        setattr(self, self.head_name, head)

    def forward_head(self, x, pre_logits=False):
        x = self.pool(x)
        return x if pre_logits else self.get_classifier()(x)
