"""Blocks shared by the Paddle families. Twin of ``torch_models/layers.py``."""

from __future__ import annotations

import functools
import os
from typing import Callable

import numpy as np
import paddle
import paddle.nn.functional as F
from paddle import nn

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


class LayerNorm(nn.LayerNorm):
    """Paddle's ``nn.LayerNorm`` (the same parameters and state-dict keys), computed with plain ops
    where Paddle 3.3.1's fused kernel is wrong or imprecise:

    * a frozen weight (``stop_gradient``) with an input that needs a gradient: the fused backward then
      gives an input gradient off by O(1) in both dtypes (measured: max|diff| 7.4 against PyTorch on
      a [4, 8, 16] input with a standard-normal weight; a trainable weight agrees to 1e-6), which is
      what a user who freezes the norms, or a later part of the network, meets;
    * float64: the fused kernel is accurate to ~1e-14 relative (1.4e-11 on inputs of mean 5 and std
      0.1), PyTorch's and the plain ops below to ~1e-15; summed over the tokens of a full-size
      model's backward, that put float64 gradients 1e-8 apart.

    float32 with a trainable weight (training and inference alike) keeps the fused kernel."""

    def forward(self, x):
        frozen = self.weight is not None and self.weight.stop_gradient and not x.stop_gradient
        if x.dtype != paddle.float64 and not frozen:
            return super().forward(x)
        axes = list(range(x.ndim - len(self._normalized_shape), x.ndim))
        centred = x - x.mean(axis=axes, keepdim=True)
        if x.dtype == paddle.float64:
            # the mean again, of the centred values: Paddle's reduction loses ~1e-15 of |mean|, which
            # is 5e-14 of the normalised values where |mean| is 50 standard deviations
            centred = centred - centred.mean(axis=axes, keepdim=True)
        y = centred * paddle.rsqrt((centred * centred).mean(axis=axes, keepdim=True) + self._epsilon)
        if self.weight is not None:
            y = y * self.weight
        if self.bias is not None:
            y = y + self.bias
        return y


class BatchNorm2D(nn.BatchNorm2D):
    """Paddle's ``nn.BatchNorm2D`` (the same parameters, buffers and keys); float64 training computes
    the batch statistics with plain ops. Paddle 3.3.1's fused float64 kernel is accurate to ~3e-14
    relative on 2x32x28x28 inputs and ~4e-13 on 2x32x2x2 (PyTorch's and the plain ops: ~4e-16), and the
    small late maps of SeaFormer amplify that in the backward. The running statistics are updated as
    Paddle's kernel does: the biased batch variance, the momentum held in float32. float32, eval mode
    and ``use_global_stats`` keep the fused kernel."""

    def forward(self, x):
        if (
            x.dtype != paddle.float64
            or not self.training
            or self._use_global_stats
            or self._data_format != "NCHW"
            or not paddle.in_dynamic_mode()
        ):
            return super().forward(x)
        axes = [0, 2, 3]
        centred = x - x.mean(axis=axes, keepdim=True)
        # the mean again, of the centred values (see LayerNorm)
        centred = centred - centred.mean(axis=axes, keepdim=True)
        var = (centred * centred).mean(axis=axes, keepdim=True)
        y = centred * paddle.rsqrt(var + self._epsilon)
        if self.weight is not None:
            y = y * self.weight.reshape([1, -1, 1, 1])
        if self.bias is not None:
            y = y + self.bias.reshape([1, -1, 1, 1])
        momentum = float(np.float32(self._momentum))
        with paddle.no_grad():
            mean = (x - centred).mean(axis=axes).detach()
            paddle.assign(self._mean * momentum + mean * (1.0 - momentum), output=self._mean)
            paddle.assign(self._variance * momentum + var.reshape([-1]).detach() * (1.0 - momentum),
                          output=self._variance)
        return y


def _global_mean(output_size, x, axes):
    """Paddle 3.3.1's adaptive average pooling to one value scales the float64 gradient by 1/n in
    float32 (measured: 9.7e-10 off over 7x7 inputs, 1.2e-9 over 49 tokens, 0 where n is a power of
    two), so float64 global pooling is a mean; float32 keeps the pooling kernel."""
    if x.dtype == paddle.float64 and all(n == 1 for n in to_2tuple(output_size)):
        return x.mean(axis=axes, keepdim=True)
    return None


class AdaptiveAvgPool1D(nn.AdaptiveAvgPool1D):
    """``nn.AdaptiveAvgPool1D`` with an exact float64 gradient for global pooling (see ``_global_mean``)."""

    def forward(self, x):
        out = _global_mean(self.output_size, x, [-1])
        return super().forward(x) if out is None else out


class AdaptiveAvgPool2D(nn.AdaptiveAvgPool2D):
    """``nn.AdaptiveAvgPool2D`` with an exact float64 gradient for global pooling (see ``_global_mean``)."""

    def forward(self, x):
        out = _global_mean(self._output_size, x, [-2, -1])
        return super().forward(x) if out is None else out


def make_norm(norm_layer, default_eps: float = 1e-5) -> Callable[[int], nn.Layer]:
    """A factory ``dim -> LayerNorm`` from a class, a partial, or their text form; Paddle's own
    ``nn.LayerNorm`` becomes porthub's :class:`LayerNorm` (same keys, see there why)."""
    if norm_layer is nn.LayerNorm:
        return LayerNorm
    if isinstance(norm_layer, functools.partial) and norm_layer.func is nn.LayerNorm:
        return functools.partial(LayerNorm, *norm_layer.args, **norm_layer.keywords)
    if callable(norm_layer) and not isinstance(norm_layer, str):
        return norm_layer
    spec = parse_norm_layer(norm_layer, default_eps)
    return lambda dim: LayerNorm(dim, epsilon=spec.eps)


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
