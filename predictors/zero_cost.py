"""Zero-cost proxies: scores of an untrained network from one minibatch (Abdelfattah et al. 2021,
"Zero-Cost Proxies for Lightweight NAS"; Mellor et al. 2021, "Neural Architecture Search without Training").

Each proxy takes a built model (`space.build(arch, input_shape, num_classes)`) and a minibatch, works on
a deep copy (the model is left untouched) and returns one float, larger meaning "predicted better":

- ``grad_norm``: sum over conv / linear layers of the L2 norm of the loss gradient of the weight.
- ``snip``: sum over conv / linear weights of |w * dL/dw| (SNIP's connection sensitivity, Lee et al. 2019).
- ``fisher``: per conv / linear output channel k, 0.5 * mean over the batch of (sum over positions of
  activation * gradient)^2 (Theis et al. 2018), summed over channels and layers; as in the reference code,
  a channel's value counts once per weight of that channel (it is broadcast to the channel's weights).
- ``synflow``: with batch norm removed (replaced by identities), all parameters made absolute and
  double precision, R = sum of the network's output on an all-ones input; the score is the sum over
  conv / linear weights of |w * dR/dw| (Tanaka et al. 2020). The model runs in eval mode (no dropout).
- ``naswot``: log |det K| where K[i, j] counts the rectified units on which samples i and j agree (both
  active or both inactive), summed over the activation layers (Mellor et al., second version).
- ``jacov``: -sum(log(v + 1e-5) + 1 / (v + 1e-5)) over the eigenvalues v of the correlation matrix of
  the per-sample input gradients of the summed output (Mellor et al., first version).
- ``params``: the number of parameters. ``flops``: multiply-adds of one sample, torch's own count (the
  quantity NAS-Bench-201 calls "flops").

Loss-based proxies use cross-entropy on the batch's labels, with the network in training mode (batch
statistics), as the reference implementation (NASLib's `pruners.measures`) does.
Deviation: ``naswot`` reads every rectifier-like activation module (ReLU, ReLU6, Hardswish, SiLU, GELU,
LeakyReLU; a unit is "active" when its input is positive), not only ReLUs, so spaces built with other
activations get a score; on ReLU networks it is Mellor et al.'s definition. A proxy that is not finite
(e.g. ``jacov`` on a network whose gradient is constant) is reported as NaN; `ZeroCostPredictor` ranks
NaN last.
"""
from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from nas.registry import register_predictor
from nas.space import Architecture, NASError, SearchSpace, one_of
from predictors.base import Predictor, single_thread

WEIGHTED = (nn.Conv2d, nn.Linear, nn.Conv1d)
WeightedLayer = nn.Conv2d | nn.Linear | nn.Conv1d  # the layers the proxies score
RECTIFIERS = (nn.ReLU, nn.ReLU6, nn.Hardswish, nn.SiLU, nn.GELU, nn.LeakyReLU)


def _layers(model: nn.Module) -> list[WeightedLayer]:
    return [m for m in model.modules() if isinstance(m, WEIGHTED)]


def _no_inplace(model: nn.Module) -> None:
    """In-place activations would overwrite tensors that hooks read."""
    for m in model.modules():
        if hasattr(m, "inplace"):
            m.inplace = False  # type: ignore[assignment]  # torch types Module.__setattr__ for tensors and modules


def _loss_backward(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> None:
    model.train()
    model.zero_grad()
    out = model(inputs)
    nn.functional.cross_entropy(out.reshape(len(inputs), -1), targets).backward()


def grad_norm(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> float:
    net = copy.deepcopy(model)
    _loss_backward(net, inputs, targets)
    return float(sum(float(m.weight.grad.norm()) for m in _layers(net) if m.weight.grad is not None))


def snip(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> float:
    net = copy.deepcopy(model)
    _loss_backward(net, inputs, targets)
    return float(sum(float((m.weight.detach() * m.weight.grad).abs().sum()) for m in _layers(net)
                     if m.weight.grad is not None))


def fisher(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> float:
    net = copy.deepcopy(model)
    _no_inplace(net)
    totals: dict[WeightedLayer, torch.Tensor] = {}

    def forward_hook(module: WeightedLayer, args: tuple, out: torch.Tensor) -> None:
        act = out.detach()

        def grad_hook(grad: torch.Tensor) -> None:
            g_nk = (act * grad).sum(dim=tuple(range(2, act.dim()))) if act.dim() > 2 else act * grad
            del_k = 0.5 * g_nk.pow(2).mean(0)
            totals[module] = totals.get(module, 0) + del_k

        out.register_hook(grad_hook)

    handles = [m.register_forward_hook(forward_hook) for m in _layers(net)]
    try:
        _loss_backward(net, inputs, targets)
    finally:
        for h in handles:
            h.remove()
    score = 0.0
    for m, del_k in totals.items():
        per_channel = m.weight[0].numel()  # a channel's value is broadcast to its weights, then summed
        score += float(del_k.abs().sum()) * per_channel
    return score


def _drop_batchnorm(model: nn.Module) -> None:
    for name, child in list(model.named_children()):
        if isinstance(child, nn.modules.batchnorm._BatchNorm):
            setattr(model, name, nn.Identity())
        else:
            _drop_batchnorm(child)


def synflow(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> float:
    net = copy.deepcopy(model).double()
    _drop_batchnorm(net)
    with torch.no_grad():
        for p in net.state_dict().values():
            if p.is_floating_point():
                p.abs_()
    net.eval()
    net.zero_grad()
    out = net(torch.ones((1, *inputs.shape[1:]), dtype=torch.float64))
    out.sum().backward()
    return float(sum(float((m.weight.detach() * m.weight.grad).abs().sum()) for m in _layers(net)
                     if m.weight.grad is not None))


def naswot(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> float:
    net = copy.deepcopy(model)
    _no_inplace(net)
    n = len(inputs)
    kernel = torch.zeros(n, n, dtype=torch.float64)

    def hook(module: nn.Module, args: tuple, out: torch.Tensor) -> None:
        nonlocal kernel
        code = (args[0].reshape(n, -1) > 0).double()
        kernel = kernel + code @ code.T + (1 - code) @ (1 - code).T

    handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, RECTIFIERS)]
    try:
        net.train()
        with torch.no_grad():
            net(inputs)
    finally:
        for h in handles:
            h.remove()
    if not handles:
        return float("nan")
    sign, logdet = torch.linalg.slogdet(kernel)
    return float(logdet) if sign != 0 else float("nan")


def jacov(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> float:
    net = copy.deepcopy(model)
    _no_inplace(net)
    net.train()
    x = inputs.clone().requires_grad_(True)
    out = net(x)
    out.backward(torch.ones_like(out))
    assert x.grad is not None, "the network's output does not depend on its input"
    jac = x.grad.reshape(len(x), -1).numpy().astype(np.float64)
    with np.errstate(all="ignore"):
        corr = np.corrcoef(jac)
    if not np.all(np.isfinite(corr)):
        return float("nan")
    v = np.linalg.eigvalsh(corr)
    k = 1e-5
    with np.errstate(all="ignore"):
        return float(-np.sum(np.log(v + k) + 1.0 / (v + k)))


def params(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> float:
    return float(sum(p.numel() for p in model.parameters()))


def flops(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> float:
    from nas.build import count_macs

    return float(count_macs(model, tuple(inputs.shape[1:])))


PROXIES: dict[str, Callable[[nn.Module, torch.Tensor, torch.Tensor], float]] = {
    "synflow": synflow, "naswot": naswot, "jacov": jacov, "snip": snip, "grad_norm": grad_norm,
    "fisher": fisher, "params": params, "flops": flops}


def score(name: str, model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> float:
    """One proxy's value (NaN when not finite)."""
    if name not in PROXIES:
        raise NASError(f"unknown zero-cost proxy {name!r}; accepted: {one_of(list(PROXIES))}")
    with single_thread():
        value = PROXIES[name](model, inputs, targets)
    return value if np.isfinite(value) else float("nan")


def proxy_batch(input_shape: Sequence[int], num_classes: int, batch_size: int = 64, source: str = "digits",
                seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A minibatch for the proxies, without downloads.

    ``digits``: scikit-learn's bundled 8x8 digits, resized (bilinear) to the input's spatial size,
    repeated over its channels, standardized; labels modulo `num_classes`. ``synthetic``: standard
    normal tensors of the input shape with uniform random labels.
    """
    g = torch.Generator().manual_seed(seed)
    if source == "synthetic":
        x = torch.randn((batch_size, *input_shape), generator=g)
        return x, torch.randint(0, num_classes, (batch_size,), generator=g)
    if source != "digits":
        raise NASError(f"unknown proxy batch source {source!r}; accepted: 'digits', 'synthetic'")
    from sklearn.datasets import load_digits

    digits = load_digits()
    idx = torch.randperm(len(digits.target), generator=g)[:batch_size]
    x = torch.tensor(digits.images, dtype=torch.float32)[idx][:, None]
    if len(input_shape) == 3:
        x = nn.functional.interpolate(x, size=tuple(input_shape[1:]), mode="bilinear", align_corners=False)
        x = x.repeat(1, input_shape[0], 1, 1)
    else:  # sequences: the flattened image, padded or cut to the length
        flat = x.reshape(len(x), 1, -1)
        x = nn.functional.interpolate(flat, size=input_shape[-1], mode="linear").repeat(1, input_shape[0], 1)
    x = (x - x.mean()) / x.std()
    y = torch.tensor(digits.target, dtype=torch.long)[idx] % num_classes
    return x, y


@register_predictor("zero_cost")
class ZeroCostPredictor(Predictor):
    """A zero-cost proxy as a predictor: builds each architecture (seeded) and scores it on one minibatch.

    `fit` learns nothing (the proxy needs no training data); predictions are proxy values, comparable
    only by rank. NaN values are ranked below every finite one.
    """

    name = "zero_cost"

    def __init__(self, proxy: str = "synflow", batch_size: int = 64, source: str = "digits", seed: int = 0,
                 input_shape: Sequence[int] | None = None, num_classes: int | None = None) -> None:
        if proxy not in PROXIES:
            raise NASError(f"unknown zero-cost proxy {proxy!r}; accepted: {one_of(list(PROXIES))}")
        self.proxy, self.batch_size, self.source, self.seed = proxy, batch_size, source, seed
        self.input_shape, self.num_classes = input_shape, num_classes

    def fit(self, space: SearchSpace, archs: Sequence[Mapping],
            targets: Sequence[float] | np.ndarray) -> ZeroCostPredictor:
        return self

    def scores(self, space: SearchSpace, archs: Sequence[Mapping]) -> np.ndarray:
        """Raw proxy values (NaN where not finite)."""
        shape = tuple(self.input_shape or space.default_input)
        classes = self.num_classes or space.default_classes
        batches: dict[tuple[int, ...], tuple[torch.Tensor, torch.Tensor]] = {}
        out = []
        for arch in archs:
            arch = Architecture(arch)
            arch_shape = tuple(space.input_shape_for(arch, shape))
            if arch_shape not in batches:
                batches[arch_shape] = proxy_batch(arch_shape, classes, self.batch_size, self.source, self.seed)
            with torch.random.fork_rng():
                torch.manual_seed(self.seed)
                model = space.build(arch, arch_shape, classes)
            out.append(score(self.proxy, model, *batches[arch_shape]))
        return np.asarray(out, dtype=np.float64)

    def predict(self, space: SearchSpace, archs: Sequence[Mapping]) -> np.ndarray:
        values = self.scores(space, archs)
        finite = values[np.isfinite(values)]
        floor = (finite.min() - 1.0 - abs(finite.min())) if len(finite) else 0.0
        return np.where(np.isfinite(values), values, floor)
