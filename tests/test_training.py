"""Training parity (issue 16): the same seeded loss gives the same gradient on every parameter in PyTorch
and Paddle, the same SGD-momentum and AdamW steps, the same losses over twenty SGD steps; dropout and
drop path keep the same semantics; activation checkpointing changes nothing; torch.jit / torch.compile.

Registry-driven: every family is tested on the models of its reference cases (``spec.case_model``,
the official code's own tiny configurations), at the smallest input the family's rule allows from 64
pixels a side up, so a new family or case needs no code here.
"""

from __future__ import annotations

import inspect
import math
import warnings

import numpy as np
import pytest
from conftest import reference_cases

from porthub.gradients import (
    OptimizerConfig,
    build_training_model,
    compare_gradients,
    local_gradients,
    loss_and_gradients,
    optimizer_step,
    random_layers,
    train_losses,
    training_ref,
)
from porthub.registry import FAMILIES, get_spec
from porthub.runtime import model_class
from porthub.spec import PADDLE, TORCH
from porthub.verify import load_case

torch = pytest.importorskip("torch")
paddle = pytest.importorskip("paddle")

TOL = {"float32": 2e-5, "float64": 1e-8}
LOSS_TOL = {"float32": 1e-4, "float64": 1e-9}
LR = 2.0**-7
_SGD = OptimizerConfig(kind="sgd", lr=LR, weight_decay=0.0)


#: where a framework's kernels, not porthub, keep a comparison from the fixed rule (measured; see the
#: reasons): these cases are expected to fail it (strict: a fix upstream turns them into failures to update)
KNOWN_LIMITS = {
    ("shunted", "float32", "grads"): "a ReLU kink, not a kernel: the stem's first BatchNorm output differs by 3.1e-6 "
    "between the float32 frameworks (as much as PyTorch float32 from float64), and one of its 1.6M elements, at "
    "|y| = 8e-8, falls on the other side of zero in Paddle; the next ReLU passes that element's whole gradient in "
    "one framework only: patch_embed1.conv.1 output gradient 1.75e-4, conv.0.weight 4.8e-4 against 2e-5 (PyTorch "
    "float32 is 2.3e-7 from float64, Paddle 4.8e-4); every other layer within 1e-8; float64 agrees",
}

#: where twenty SGD steps at LR are chaotic in float64 (measured on SeaFormer: PyTorch float64 against itself with
#: the inputs moved by one part in 2**53 differs by up to 8.9e-7 after twenty steps, the difference growing about
#: tenfold a step, so Paddle's own rounding reaches 7.9e-6 though the gradients agree to 4.4e-13): the float64
#: comparison runs at a rate where the steps are stable (measured: 3.9e-11 at 2**-12, the loss still falling
#: from 6.93 to 1.72); at 2**-10 the difference is 3.7e-3, at 2**-9 0.077
STABLE_LR = {("seaformer", "float64"): 2.0**-12}

#: where float32 itself cannot hold the gradient to the rule (measured): train-mode BatchNorm over small maps of
#: seeded weights divides by sqrt(var + eps) of near-dead channels, so a rounding-sized difference is amplified
#: on its way back: float32 rounding alone (PyTorch float32 against PyTorch float64) moves those gradients past
#: 2e-5, and a ReLU input of -3e-7 in float64 that one framework's float32 rounds to the other side of the kink
#: (traced at 128 px: one element of 98,304, PyTorch's stayed negative, Paddle's did not) moves the stem's
#: gradients by 0.08. For these the end-to-end test asks what float32 can give: each parameter within the rule,
#: or Paddle's float32 gradient no farther from the float64 gradient than twice PyTorch's float32 one is; the
#: local test holds them to the rule.
ILL_CONDITIONED = {
    ("seaformer", "float32"): "train-mode BatchNorm of near-dead channels (seeded weights, small maps)",
}


def _known(family: str, *what: str):
    reason = KNOWN_LIMITS.get((family, *what))
    return [pytest.mark.xfail(reason=reason, strict=True)] if reason else []


def _cases() -> list:
    """Each reference case's model at its own input size (the official fixture's), batch 2."""
    found = []
    for path in reference_cases():
        case, stem = load_case(path)
        spec = get_spec(case["family"])
        size = tuple(np.load(f"{stem}.input.npy", mmap_mode="r").shape[2:])
        found.append(
            pytest.param(spec.family, spec.case_model(case), size, id=f"{spec.family}-{path.rsplit('/', 1)[1][:-5]}")
        )
    return found


def _with_dtypes(params: list, test: str = "") -> list:
    return [
        pytest.param(
            *p.values,
            dtype,
            id=f"{p.id}-{dtype}",
            marks=_known(p.values[0], dtype) + (_known(p.values[0], dtype, test) if test else []),
        )
        for p in params
        for dtype in ("float64", "float32")
    ]


CASES = _cases()


def _setup(family, ref, size, batch=2, seed=1):
    from porthub.pairs import seeded_state

    spec = get_spec(family)
    x = np.random.default_rng(seed).standard_normal((batch, 3, *size)).astype(np.float32)
    return spec, seeded_state(spec, ref), x


def test_every_family_is_covered():
    assert {p.values[0] for p in CASES} == set(FAMILIES)
    assert {p.values[0] for p in _classifier_cases()} == set(FAMILIES)


# ------------------------------------------------------------------------------------ gradients
@pytest.mark.parametrize("family,ref,size,dtype", _with_dtypes(CASES, "grads"))
def test_gradients_match_on_every_parameter(family, ref, size, dtype):
    spec, state, x = _setup(family, ref, size)
    if (family, dtype) in ILL_CONDITIONED:
        return _ill_conditioned_gradients_as_good_as_float32_allows(spec, ref, state, x, dtype, family)
    report = compare_gradients(spec, ref, state, x, dtype, family)
    model = build_training_model(spec, training_ref(spec, ref), state, TORCH, dtype, family)
    trainable = sum(1 for p in model.parameters() if p.requires_grad)
    summary = report.as_dict()
    assert summary["compared"] == trainable == report.trainable[PADDLE], summary
    assert not report.only_torch and not report.only_paddle
    for c in report.comparisons:
        assert c.max_abs_diff <= TOL[dtype] * c.limit / spec.tolerance(PADDLE).for_dtype(dtype), (
            c.key,
            c.max_abs_diff,
            c.limit,
        )
    assert report.ok, "\n".join(report.lines())
    assert summary["worst"]["parameter"] in {c.key for c in report.comparisons}


def _ill_conditioned_gradients_as_good_as_float32_allows(spec, ref, state, x, dtype, family):
    report = compare_gradients(spec, ref, state, x, dtype, family, float64_reference=True)
    assert len(report.comparisons) == report.trainable[TORCH] == report.trainable[PADDLE]
    assert not report.only_torch and not report.only_paddle
    worse = [
        (c.key, c.max_abs_diff, c.torch_vs_float64, c.paddle_vs_float64)
        for c in report.comparisons
        if not c.ok and c.paddle_vs_float64 > 2 * max(c.torch_vs_float64, c.limit)
    ]
    assert not worse, worse[:5]
    # the losses are a forward quantity: the rule holds for them whatever the conditioning of the gradient
    assert report.loss_ok, report.losses


@pytest.mark.parametrize("family,ref,size,dtype", _with_dtypes(CASES))
def test_local_gradients_match_on_every_parameter(family, ref, size, dtype):
    """Each module run in Paddle on PyTorch's inputs and output gradient (the backward's local
    differences, like the forward report's): every parameter within the output rule in both dtypes,
    the known limits above included, since those are carried by the values, not made by a module."""
    spec, state, x = _setup(family, ref, size)
    local = local_gradients(spec, ref, state, x, dtype, family)
    model = build_training_model(spec, training_ref(spec, ref), state, TORCH, dtype, family)
    trainable = {k for k, p in model.named_parameters() if p.requires_grad}
    assert {c.key for c in local} == trainable
    tol = TOL[dtype] / spec.tolerance(PADDLE).for_dtype(dtype)
    bad = [(c.key, c.max_abs_diff, c.limit) for c in local if c.max_abs_diff > tol * c.limit]
    assert not bad, bad[:5]


def test_local_gradients_name_the_module_of_a_planted_error(monkeypatch):
    """A Paddle module made wrong on purpose (one Linear's output tripled) is the one the local comparison
    reports; nothing else is blamed but modules that hold parameters of their own and run it inside."""
    from porthub import gradients

    family, ref, size = CASES[0].values
    spec, state, x = _setup(family, ref, size)
    real = gradients._paddle_local
    target = {}

    def planted(model, calls, spec_):
        from porthub.runtime import named_modules

        layers = named_modules(model, PADDLE)
        # the Linear whose output gradient is largest (a tiny gradient tripled could stay within the limit)
        linears = [p for p, layer in layers.items() if type(layer).__name__ == "Linear" and p in calls]
        path = max(linears, key=lambda p: max(float(np.abs(g).max()) for gs in calls[p].grads for g in gs))
        target["path"] = path
        forward = layers[path].forward
        layers[path].forward = lambda *a, _f=forward, **k: _f(*a, **k) * 3.0
        return real(model, calls, spec_)

    monkeypatch.setattr(gradients, "_paddle_local", planted)
    local = gradients.local_gradients(spec, ref, state, x, "float64", family)
    failing = {c.key.rpartition(".")[0] for c in local if not c.ok}
    assert target and target["path"] in failing, (target, failing)
    assert all(target["path"] == f or target["path"].startswith(f + ".") or not f for f in failing), failing


def test_gradient_report_names_a_planted_error():
    """A gradient made wrong on purpose (one Paddle weight's gradient scaled) is the one reported."""
    from porthub import gradients

    family, ref, size = CASES[0].values
    spec, state, x = _setup(family, ref, size)
    original = gradients._grad_numpy
    target = {}

    def planted(param, framework):
        grad = original(param, framework)
        if framework == PADDLE and not target and grad.ndim == 2:
            target["shape"] = grad.shape
            return grad * 1.01 + 1e-3
        return grad

    gradients._grad_numpy = planted
    try:
        report = compare_gradients(spec, ref, state, x, "float64", family)
    finally:
        gradients._grad_numpy = original
    planted_key = report.worst(1)[0]
    assert not report.ok and not planted_key.ok and planted_key.ratio > 1e3
    assert planted_key.max_abs_diff >= 1e-3 and len(planted_key.key.split(".")) >= 2
    assert report.as_dict()["worst"]["parameter"] == planted_key.key


def test_segmentation_and_feature_outputs_use_a_linear_functional():
    from porthub.gradients import seeded_objective

    assert seeded_objective({"out": (2, 10)}).kind == "cross_entropy"
    linear = seeded_objective({"out[0]": (2, 8, 4, 4), "out[1]": (2, 16, 2, 2)})
    assert linear.kind == "linear" and set(linear.weights) == {"out[0]", "out[1]"}
    assert seeded_objective({"out": (2, 150, 8, 8)}).kind == "linear"
    again = seeded_objective({"out[0]": (2, 8, 4, 4), "out[1]": (2, 16, 2, 2)})
    assert all(np.array_equal(linear.weights[k], again.weights[k]) for k in linear.weights)


@pytest.mark.parametrize("family,ref,size", CASES)
def test_training_models_have_no_random_layer(family, ref, size):
    spec = get_spec(family)
    # the official defaults (drop_path_rate 0.1 / 0.2) turned on, then off again by training_ref
    params = inspect.signature(model_class(spec, ref.class_name, TORCH).__init__).parameters
    noisy = type(ref)(ref.class_name, {**ref.kwargs, **({"drop_path_rate": 0.3} if "drop_path_rate" in params else {})})
    quiet = training_ref(spec, noisy)
    assert all(quiet.kwargs.get(k, 0.0) == 0.0 for k in ("drop_rate", "attn_drop_rate", "drop_path_rate"))
    from porthub.runtime import build_model

    for framework in (TORCH, PADDLE):
        model = build_model(spec, quiet, framework)
        assert random_layers(model, framework) == []
    # both frameworks build the same random layers from the same rates
    noisy_layers = [
        [layer.lower() for layer in random_layers(build_model(spec, noisy, framework), framework)]
        for framework in (TORCH, PADDLE)
    ]
    assert noisy_layers[0] == noisy_layers[1]


# ------------------------------------------------------------------------------------ optimizers
@pytest.mark.parametrize("family,ref,size", CASES)
def test_one_optimizer_step_gives_the_same_weights(family, ref, size):
    """float64: AdamW's first step is about lr * sign(grad), so float32 rounding of near-zero gradients
    flips whole steps; epsilon = lr bounds how much a gradient difference can move a weight (by at most
    itself), so the comparison measures the optimizers rather than the gradients."""
    dtype = "float64"
    spec, state, x = _setup(family, ref, size)
    for config in (OptimizerConfig(kind="sgd"), OptimizerConfig(kind="adamw", lr=2.0**-8, eps=2.0**-8)):
        after = optimizer_step(spec, ref, state, x, config, dtype, family)
        assert set(after[TORCH]) == set(after[PADDLE])
        moved = 0
        for key, value in after[TORCH].items():
            limit = TOL[dtype] * max(1.0, float(np.abs(value).max()))
            diff = float(np.abs(after[PADDLE][key].astype(np.float64) - value).max())
            assert diff <= limit, (config.kind, key, diff, limit)
            moved += not np.array_equal(value, state[key].astype(value.dtype))
        # every weight decays, so the step moved them all
        assert moved == len(after[TORCH]), config.kind


def test_paddle_adamw_places_epsilon_and_decay_like_pytorch():
    """A large epsilon against tiny gradients shows where it sits: PyTorch divides by sqrt(v_hat) + eps."""
    from porthub.gradients import make_optimizer

    rng = np.random.default_rng(0)
    start, grads = rng.standard_normal(6), [rng.standard_normal(6) * 1e-3 for _ in range(3)]
    config = OptimizerConfig(kind="adamw", lr=0.0625, weight_decay=0.25, eps=2.0**-7, betas=(0.9, 0.999))
    tp = torch.nn.Parameter(torch.tensor(start))
    pp = paddle.create_parameter([6], "float64")
    pp.set_value(start)
    t_opt, p_opt = make_optimizer(TORCH, [tp], config), make_optimizer(PADDLE, [pp], config)
    m = v = np.zeros(6)
    p = start.copy()
    for step, g in enumerate(grads, 1):
        tp.grad = torch.tensor(g)
        t_opt.step()
        (pp * paddle.to_tensor(g)).sum().backward()
        p_opt.step()
        p_opt.clear_grad()
        p = p * (1 - config.lr * config.weight_decay)
        m = config.betas[0] * m + (1 - config.betas[0]) * g
        v = config.betas[1] * v + (1 - config.betas[1]) * g * g
        m_hat, v_hat = m / (1 - config.betas[0] ** step), v / (1 - config.betas[1] ** step)
        p = p - config.lr * m_hat / (np.sqrt(v_hat) + config.eps)
        np.testing.assert_allclose(tp.detach().numpy(), p, rtol=0, atol=1e-15)
        np.testing.assert_allclose(pp.numpy(), p, rtol=0, atol=1e-15)


def _steps_size(spec, ref, size, floor=128):
    """The smallest input the family's rule allows from ``floor`` pixels a side up (at most the case's):
    twenty steps in both dtypes are the slowest tests here."""
    rule = spec.input_rule(ref)
    if rule.fixed_size is not None:
        return tuple(rule.fixed_size)
    return tuple(
        min(full, -(-max(least, floor) // step) * step)
        for full, least, step in zip(size, rule.min_size, rule.multiple_of)
    )


def _problem(size, dtype, batch=2, classes=10, seed=3):
    """A generated 10-class problem: each class a fixed random pattern, each image its class's
    pattern plus noise (the same batch every step, so the loss must fall)."""
    rng = np.random.default_rng(seed)
    patterns = rng.standard_normal((classes, 3, *size))
    labels = rng.permutation(classes)[:batch].astype(np.int64)
    images = patterns[labels] + 0.5 * rng.standard_normal((batch, 3, *size))
    return images.astype(dtype), labels


def _classifier_cases() -> list:
    """The cases whose model class the registry lists for classification variants."""
    found = []
    for param in CASES:
        family, ref, _ = param.values
        tasks = {v.task for v in get_spec(family).variants if v.class_name == ref.class_name}
        if tasks == {"classification"}:
            found.append(param)
    return found


def _torch_losses(spec, ref, state, images, labels, dtype, family) -> np.ndarray:
    """PyTorch's losses over the test's twenty SGD steps on one batch."""
    return np.asarray(train_losses(spec, ref, state, [(images, labels)] * 20, _SGD, dtype, family, (TORCH,))[TORCH])


@pytest.mark.slow
@pytest.mark.parametrize("family,ref,size,dtype", _with_dtypes(_classifier_cases(), "steps"))
def test_twenty_sgd_steps_give_the_same_losses(family, ref, size, dtype):
    spec, state, _ = _setup(family, ref, size)
    batches = [_problem(_steps_size(spec, ref, size), dtype)] * 20
    config = OptimizerConfig(kind="sgd", lr=STABLE_LR.get((family, dtype), LR), weight_decay=0.0)
    losses = train_losses(spec, ref, state, batches, config, dtype, family)
    assert len(losses[TORCH]) == len(losses[PADDLE]) == 20
    if (family, dtype) in ILL_CONDITIONED:
        # float32 training of these is chaotic (measured: one ReLU input of -3e-7 in float64 lands on the other
        # side of the kink in one framework, and twenty steps later PyTorch's own float32 losses are up to 1.8
        # from its float64 ones, and the step where the two trajectories are farthest apart moves with the
        # rounding). What float32 allows is measured: PyTorch float32 on the batch and on it moved by one part in
        # 2**24 (four draws); Paddle's float32 losses are no farther from the float64 ones, over the twenty steps,
        # than twice the farthest of those. The first loss is a forward quantity and holds to the rule.
        images, labels = batches[0]
        exact = _torch_losses(spec, ref, state, images.astype(np.float64), labels, "float64", family)
        rng = np.random.default_rng(0)
        spread = np.abs(np.asarray(losses[TORCH]) - exact).max()
        for _ in range(4):
            moved = (images * (1 + rng.choice([-1.0, 1.0], images.shape) * 2.0**-24)).astype(dtype)
            spread = max(spread, np.abs(_torch_losses(spec, ref, state, moved, labels, dtype, family) - exact).max())
        assert abs(losses[PADDLE][0] - losses[TORCH][0]) <= LOSS_TOL[dtype], (losses[PADDLE][0], losses[TORCH][0])
        farthest = np.abs(np.asarray(losses[PADDLE]) - exact).max()
        assert farthest <= 2 * max(spread, LOSS_TOL[dtype]), (farthest, spread)
        assert losses[PADDLE][-1] < losses[PADDLE][0], losses[PADDLE]
    else:
        for step, (a, b) in enumerate(zip(losses[TORCH], losses[PADDLE])):
            assert abs(a - b) <= LOSS_TOL[dtype], (step, a, b)
    assert all(math.isfinite(v) for v in losses[TORCH])
    # it trains: the loss on the batch falls
    assert losses[TORCH][-1] < losses[TORCH][0], losses[TORCH]


# ------------------------------------------------------------------------------------ dropout, drop path
def _bound(n: int, p: float, sigmas: float = 6.0) -> float:
    return sigmas * math.sqrt(p * (1 - p) / n)


def _moments_ok(values: np.ndarray, p: float, scale: float) -> None:
    """``values`` are draws of ``scale * Bernoulli(1 - p) / (1 - p)``: only 0 and the scaled value,
    the dropped fraction, mean and variance within six standard errors."""
    n = values.size
    kept_value = scale / (1 - p)
    dropped = values == 0
    np.testing.assert_allclose(values[~dropped], kept_value, rtol=1e-6)
    assert abs(dropped.mean() - p) <= _bound(n, p), (dropped.mean(), p)
    mean, var = values.mean() / scale, values.var() / scale**2
    assert abs(mean - 1.0) <= 6 * math.sqrt(p / (1 - p) / n), mean
    # the variance of a two-point variable: p / (1 - p); its estimate's standard error from the fourth moment
    want = p / (1 - p)
    mu4 = p * 1.0 + (1 - p) * (p / (1 - p)) ** 4
    # (about the sample mean, which lowers it by (mean - 1)^2; at p = 0.5 the squared deviation is constant)
    assert abs(var - want) <= 6 * math.sqrt(max(mu4 - want**2, 0.0) / n) + (mean - 1.0) ** 2 + 1e-12, (var, want)


@pytest.mark.parametrize("p", [0.1, 0.5])
@pytest.mark.parametrize("framework", [TORCH, PADDLE])
def test_dropout_scales_kept_values_by_one_over_keep(framework, p):
    n = 200_000
    if framework == TORCH:
        torch.manual_seed(0)
        layer = torch.nn.Dropout(p).train()
        values = layer(torch.ones(n, dtype=torch.float64)).numpy()
        assert np.array_equal(layer.eval()(torch.ones(4, dtype=torch.float64)).numpy(), np.ones(4))
    else:
        paddle.seed(0)
        layer = paddle.nn.Dropout(p)
        layer.train()
        values = layer(paddle.ones([n], dtype="float64")).numpy()
        layer.eval()
        assert np.array_equal(layer(paddle.ones([4], dtype="float64")).numpy(), np.ones(4))
    _moments_ok(values, p, 1.0)


@pytest.mark.parametrize("p", [0.1, 0.5])
@pytest.mark.parametrize("framework", [TORCH, PADDLE])
def test_attention_dropout_drops_attention_weights(framework, p):
    """The shared attention (fused in PyTorch, written out in Paddle) drops single attention weights
    and scales the rest: with uniform attention over an identity ``v`` the output is the weights."""
    batch, heads, tokens = 64, 4, 32
    q = np.zeros((batch, heads, tokens, 8))
    v = np.broadcast_to(np.eye(tokens), (batch, heads, tokens, tokens)).copy()
    if framework == TORCH:
        from torch_models.layers import attention

        torch.manual_seed(0)
        drop = torch.nn.Dropout(p).train()
        out = attention(torch.tensor(q), torch.tensor(q), torch.tensor(v), 1.0, None, drop).numpy()
    else:
        from paddle_models.layers import attention

        paddle.seed(0)
        drop = paddle.nn.Dropout(p)
        drop.train()
        out = attention(paddle.to_tensor(q), paddle.to_tensor(q), paddle.to_tensor(v), 1.0, None, drop).numpy()
    _moments_ok(out.ravel(), p, 1.0 / tokens)


@pytest.mark.parametrize("p", [0.1, 0.5])
@pytest.mark.parametrize("framework", [TORCH, PADDLE])
def test_drop_path_drops_whole_samples(framework, p):
    n, shape = 40_000, (3, 5)
    if framework == TORCH:
        from torch_models.layers import DropPath

        torch.manual_seed(0)
        layer = DropPath(p).train()
        values = layer(torch.ones((n, *shape), dtype=torch.float64)).numpy()
        assert np.array_equal(layer.eval()(torch.ones((2, *shape), dtype=torch.float64)).numpy(), np.ones((2, *shape)))
    else:
        from paddle_models.layers import DropPath

        paddle.seed(0)
        layer = DropPath(p)
        layer.train()
        values = layer(paddle.ones([n, *shape], dtype="float64")).numpy()
        layer.eval()
        assert np.array_equal(layer(paddle.ones([2, *shape], dtype="float64")).numpy(), np.ones((2, *shape)))
    per_sample = values.reshape(n, -1)
    # one mask value per sample: every element of a sample is dropped or kept together
    assert np.array_equal(per_sample.min(axis=1), per_sample.max(axis=1))
    _moments_ok(per_sample[:, 0], p, 1.0)


# ------------------------------------------------------------------------------------ checkpointing
def _checkpointed_cases() -> list:
    found = []
    for param in CASES:
        family, ref, _ = param.values
        cls = model_class(get_spec(family), ref.class_name, TORCH)
        if "use_checkpoint" in inspect.signature(cls.__init__).parameters:
            found.append(pytest.param(*param.values, id=param.id, marks=_known(family, "checkpoint")))
    return found


def _block_calls(model, framework, x, dtype, spec):
    """How often each module whose class name ends in 'Block' was called in one forward and backward
    (pre-hooks: PyTorch's checkpoint stops a recomputation once it has what the backward needs, before
    the block returns)."""
    from porthub.runtime import named_modules

    calls: dict[str, int] = {}
    handles = []
    for path, module in named_modules(model, framework).items():
        if type(module).__name__.endswith("Block"):

            def hook(_m, _i, _path=path):
                calls[_path] = calls.get(_path, 0) + 1

            handles.append(module.register_forward_pre_hook(hook))
    try:
        _, grads, _ = loss_and_gradients(model, x, framework, dtype, spec)
    finally:
        for handle in handles:
            handle.remove()
    return calls, grads


@pytest.mark.parametrize("family,ref,size", _checkpointed_cases())
def test_use_checkpoint_recomputes_and_gives_the_same_gradients(family, ref, size):
    spec, state, x = _setup(family, ref, size)
    dtype = "float64"
    grads = {}
    for framework in (TORCH, PADDLE):
        for flag in (False, True):
            model = build_training_model(
                spec, training_ref(spec, ref, use_checkpoint=flag), state, framework, dtype, family
            )
            calls, grads[framework, flag] = _block_calls(model, framework, x, dtype, spec)
            assert calls, f"{family}: no block modules to watch"
            # checkpointed blocks run again in the backward pass; plain ones once
            assert set(calls.values()) == ({2} if flag else {1}), (framework, flag, calls)
    for framework in (TORCH, PADDLE):
        for key, grad in grads[framework, False].items():
            np.testing.assert_allclose(
                grads[framework, True][key], grad, rtol=0, atol=1e-12, err_msg=f"{framework} {key}"
            )


# ------------------------------------------------------------------------------------ torch.jit, torch.compile
def _smallest_torch_model():
    """The smallest case's model made by porthub.create_model (a registered variant of the same class,
    the case's constructor arguments as overrides)."""
    import porthub

    family, ref, size = min((p.values for p in CASES), key=lambda v: v[2][0] * v[2][1])
    variant = next(v for v in get_spec(family).variants if v.class_name == ref.class_name)
    return porthub.create_model(variant.name, **dict(ref.kwargs)), size


def test_torch_jit_trace_gives_no_warning_from_porthub():
    model, size = _smallest_torch_model()
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((1, 3, *size)).astype(np.float32))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        traced = torch.jit.trace(model, x)
    ours = [w for w in caught if "/porthub/" in w.filename.replace("\\", "/")]
    assert ours == [], [f"{w.filename}:{w.lineno}: {w.message}" for w in ours]
    with torch.no_grad():
        np.testing.assert_allclose(traced(x).numpy(), model(x).numpy(), rtol=0, atol=1e-5)


def test_torch_jit_script_fails_with_porthubs_message():
    from porthub.errors import PorthubError

    model, _ = _smallest_torch_model()
    with pytest.raises(PorthubError) as info:
        torch.jit.script(model)
    message = str(info.value)
    assert "\n" not in message and "torch.jit.trace" in message, message


@pytest.mark.slow
def test_torch_compile_runs_the_smallest_model():
    model, size = _smallest_torch_model()
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((1, 3, *size)).astype(np.float32))
    compiled = torch.compile(model)
    with torch.no_grad():
        np.testing.assert_allclose(compiled(x).numpy(), model(x).numpy(), rtol=0, atol=1e-4)
