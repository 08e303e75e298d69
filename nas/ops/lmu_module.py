"""Torch-only module classes behind the LMUFormer ops (export inlines them with `inspect.getsource`).

Follows LMUFormer (Liu et al., ICLR 2024) and its official code (zeyuliu1037/LMUFormer, `src/blocks/lmu_cell.py`,
which builds on pytorch-lmu's `LMUFFT`). Sequences are (batch, channels, tokens); the token axis is the LMU's time
axis and, in the spiking variant, the SNN time axis too. Every class here needs only torch, nn, F and math.
"""
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


class SigmoidSpike(torch.autograd.Function):
    """Heaviside spike (x >= 0) forward; the derivative of sigmoid(alpha * x) backward (spikingjelly's
    `surrogate.Sigmoid`, alpha 4)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, alpha: float) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.alpha = alpha
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        (x,) = ctx.saved_tensors
        sg = torch.sigmoid(ctx.alpha * x)
        return grad * ctx.alpha * sg * (1.0 - sg), None


class MultiStepLIF(nn.Module):
    """Leaky integrate-and-fire neurons over the last (token) axis, as spikingjelly 0.0.0.0.14's
    `MultiStepLIFNode(tau=2, detach_reset=True)`: decay_input charge v += (x - v) / tau from v = 0, a spike where
    v >= v_threshold, hard reset to 0 with the spike detached from the graph, sigmoid surrogate gradient (alpha 4).
    Plain PyTorch instead of the official CuPy kernel; the membrane state lives only inside one call (the official
    `reset_net` after every batch), or is passed explicitly to `step`."""

    def __init__(self, v_threshold: float = 1.0, tau: float = 2.0, alpha: float = 4.0) -> None:
        super().__init__()
        self.v_threshold = v_threshold
        self.tau = tau
        self.alpha = alpha

    def step(self, x: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One time step: input (batch, channels) and membrane potential -> (spikes, new potential)."""
        v = v + (x - v) / self.tau
        if torch.is_grad_enabled() and v.requires_grad:
            spike = SigmoidSpike.apply(v - self.v_threshold, self.alpha)
        else:
            spike = (v >= self.v_threshold).to(v.dtype)
        return spike, v * (1.0 - spike.detach())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = torch.zeros_like(x[..., 0])
        spikes = []
        for t in range(x.shape[-1]):
            spike, v = self.step(x[..., t], v)
            spikes.append(spike)
        return torch.stack(spikes, dim=-1)


class LMUCell(nn.Module):
    """Legendre Memory Unit cell (Voelker et al. 2019) in LMUFormer's parallel (FFT) form, with a recurrent `step`.

    u_t = f_u(W_u x_t + b) is a scalar; the memory m_t = Abar m_{t-1} + Bbar u_t, with (Abar, Bbar) the
    zero-order-hold discretisation (dt = 1) of the Legendre state space of order `memory_size` over window `theta`
    (computed here in float64 by the matrix exponential of [[A, B], [0, 0]], as scipy's `cont2discrete` does);
    h_t = f_h(W_h [m_t; x_t] + b). Training runs the memory as a causal convolution of u with the impulse response
    H[:, t] = Abar^t Bbar through rfft / irfft at 2N (while exporting to ONNX, as the same convolution written as a
    product with the Toeplitz matrix of H, since the TorchScript ONNX exporter has no FFT).

    Non-spiking: f_u = f_h = ReLU. Spiking (`SpikingLMUFFTCell`): u, m and h each pass BatchNorm1d then LIF
    (threshold 1.0); with `norm=False` (the psMNIST notebook's `SpikingLMUFFT`) u and h pass LIF without BatchNorm
    and m is not spiked. Abar, Bbar and H are non-persistent buffers, recomputed at construction (the official code
    stores them in the state dict). `seq_len` is the longest sequence the cell takes (the official SCv2 cell
    hard-codes 128).
    """

    A: torch.Tensor
    B: torch.Tensor
    H: torch.Tensor

    def __init__(self, input_size: int, hidden_size: int, memory_size: int, theta: float, seq_len: int,
                 spiking: bool = False, norm: bool = True) -> None:
        super().__init__()
        self.memory_size = memory_size
        self.spiking = spiking
        self.norm = spiking and norm
        self.W_u = nn.Linear(input_size, 1)
        self.W_h = nn.Linear(memory_size + input_size, hidden_size)
        if spiking:
            self.lif = MultiStepLIF(1.0)
        if self.norm:
            self.bn_u = nn.BatchNorm1d(1)
            self.bn_m = nn.BatchNorm1d(memory_size)
            self.bn_h = nn.BatchNorm1d(hidden_size)
        abar, bbar = self.discretised(memory_size, theta)
        impulse = [bbar]
        for _ in range(seq_len - 1):
            impulse.append(abar @ impulse[-1])
        self.register_buffer("A", abar.float(), persistent=False)
        self.register_buffer("B", bbar.float(), persistent=False)
        self.register_buffer("H", torch.stack(impulse, dim=-1).float(), persistent=False)

    @staticmethod
    def discretised(order: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Zero-order-hold (dt = 1) Legendre matrices (Abar (d, d), Bbar (d,)) in float64, on the CPU."""
        q = torch.arange(order, dtype=torch.float64, device="cpu")
        r = (2 * q + 1) / theta
        i, j = q[:, None], q[None, :]
        a = r[:, None] * torch.where(i < j, -1.0, (-1.0) ** (i - j + 1))
        b = r * (-1.0) ** q
        augmented = torch.zeros(order + 1, order + 1, dtype=torch.float64, device="cpu")
        augmented[:order, :order] = a
        augmented[:order, order] = b
        expm = torch.linalg.matrix_exp(augmented)
        return expm[:order, :order].contiguous(), expm[:order, order].contiguous()

    def _memory(self, u: torch.Tensor) -> torch.Tensor:
        """m (batch, memory, L) = causal convolution of u (batch, L) with H."""
        n = u.shape[-1]
        h = self.H[:, :n]
        if torch.onnx.is_in_onnx_export():
            lag = torch.arange(n, device=u.device)
            lag = lag[None, :] - lag[:, None]  # (s, t): t - s
            toeplitz = h[:, lag.clamp(min=0)] * (lag >= 0).to(h.dtype)
            return torch.einsum("bs,dst->bdt", u, toeplitz)
        spectrum = torch.fft.rfft(u, n=2 * n, dim=-1).unsqueeze(1) * torch.fft.rfft(h, n=2 * n, dim=-1)
        return torch.fft.irfft(spectrum, n=2 * n, dim=-1)[..., :n]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (batch, input, L) -> h (batch, hidden, L)."""
        tokens = x.transpose(1, 2)
        u = self.W_u(tokens).transpose(1, 2)  # (batch, 1, L)
        if not self.spiking:
            u = F.relu(u)
        else:
            u = self.lif(self.bn_u(u) if self.norm else u)
        m = self._memory(u[:, 0])
        if self.norm:
            m = self.lif(self.bn_m(m))
        h = self.W_h(torch.cat([m.transpose(1, 2), tokens], dim=-1)).transpose(1, 2)
        if not self.spiking:
            return F.relu(h)
        return self.lif(self.bn_h(h) if self.norm else h)

    def initial_state(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The zero state for a batch like `x` (batch, input): memory, then (spiking) the u, m, h potentials."""
        batch = x.shape[0]
        state = [x.new_zeros(batch, self.memory_size)]
        if self.spiking:
            state += [x.new_zeros(batch, 1), x.new_zeros(batch, self.memory_size),
                      x.new_zeros(batch, self.W_h.out_features)]
        return state

    def _norm(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """BatchNorm `name` on one time step with running statistics (streaming has no batch statistics); the
        identity without `norm`."""
        if not self.norm:
            return x
        bn = getattr(self, name)
        return F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)

    def step(self, x: torch.Tensor, state: list[torch.Tensor] | None = None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Recurrent form, one token: x_t (batch, input) -> (h_t (batch, hidden), new state); constant memory.
        The spiking step uses BatchNorm's running statistics, so it reproduces `forward` in eval mode."""
        state = self.initial_state(x) if state is None else state
        u = self.W_u(x)
        if not self.spiking:
            m = state[0] @ self.A.T + F.relu(u) * self.B
            return F.relu(self.W_h(torch.cat([m, x], dim=-1))), [m]
        u, vu = self.lif.step(self._norm("bn_u", u), state[1])
        m = state[0] @ self.A.T + u * self.B
        spikes, vm = self.lif.step(self._norm("bn_m", m), state[2]) if self.norm else (m, state[2])
        h, vh = self.lif.step(self._norm("bn_h", self.W_h(torch.cat([spikes, x], dim=-1))), state[3])
        return h, [m, vu, vm, vh]

    def extra_repr(self) -> str:
        return f"memory_size={self.memory_size}, spiking={self.spiking}, norm={self.norm}"


class StreamingSequenceNet(nn.Module):
    """A sequence network run one token at a time with constant memory: the recurrent form of a built LMUFormer.

    `layers` are the trained network's modules (shared, not copied); `plan` lists its layers in topological order
    as (name, kind, inputs) with kind one of: "frame" (a module applied to one (batch, C, 1) token: eval
    BatchNorm, activation, 1x1 conv), "conv" (a stride-1 "same" Conv1d of kernel k: it keeps the last k input
    tokens and emits token t once token t + k // 2 has arrived, so each such conv delays the stream by k // 2
    tokens; the end of the stream feeds its zero right padding), "lif" (`MultiStepLIF.step`), "lmu"
    (`LMUCell.step`), "add" (tokens of both inputs paired by position) and "head" (per-token Linear and the running
    mean over the tokens so far: the official "all_seq" test mode). `step` returns the head's running means for
    the positions completed by one input token (none while the convs wait for look-ahead), `finish` those left at
    the end; the last one equals the parallel model's output. Inference only: BatchNorm uses running statistics.
    """

    def __init__(self, layers: dict[str, nn.Module], plan: list[tuple[str, str, tuple[str, ...]]],
                 output: str) -> None:
        super().__init__()
        self.layers = nn.ModuleDict(layers)
        self.plan = plan
        self.output = output
        self.consumers: dict[str, list[tuple[str, int]]] = {"input": []}
        for name, _, inputs in plan:
            self.consumers[name] = []
            for slot, src in enumerate(inputs):
                self.consumers[src].append((name, slot))
        self.reset()

    def reset(self) -> None:
        """Forget the stream: empty queues, zero states."""
        self.queues: dict[tuple[str, int], list[torch.Tensor]] = {
            (name, slot): [] for name, _, inputs in self.plan for slot in range(len(inputs))}
        self.states: dict[str, Any] = {}
        self.outputs: list[torch.Tensor] = []

    def _emit(self, name: str, frame: torch.Tensor) -> None:
        for consumer in self.consumers[name]:
            self.queues[consumer].append(frame)
        if name == self.output:
            self.outputs.append(frame)

    def _conv(self, name: str, frame: torch.Tensor) -> None:
        conv: Any = self.layers[name]
        window = self.states.setdefault(name, [torch.zeros_like(frame)] * (conv.kernel_size[0] // 2))
        window.append(frame)
        if len(window) == conv.kernel_size[0]:
            self._emit(name, F.conv1d(torch.cat(window, dim=-1), conv.weight, conv.bias, groups=conv.groups))
            window.pop(0)

    def _take(self, name: str, kind: str, frames: list[torch.Tensor]) -> None:
        module: Any = self.layers[name] if name in self.layers else None
        if kind == "add":
            self._emit(name, frames[0] + frames[1])
        elif kind == "frame":
            self._emit(name, module(frames[0]))
        elif kind == "conv":
            self._conv(name, frames[0])
        elif kind == "lif":
            spike, v = module.step(frames[0][..., 0], self.states.get(name, torch.zeros_like(frames[0][..., 0])))
            self.states[name] = v
            self._emit(name, spike[..., None])
        elif kind == "lmu":
            h, self.states[name] = module.step(frames[0][..., 0], self.states.get(name))
            self._emit(name, h[..., None])
        else:  # head: running mean of the per-token logits
            total, count = self.states.get(name, (0.0, 0))
            total = module(frames[0][..., 0]) + total
            self.states[name] = (total, count + 1)
            self._emit(name, total / (count + 1))

    def _run(self, end: bool) -> list[torch.Tensor]:
        for name, kind, inputs in self.plan:
            queues = [self.queues[(name, slot)] for slot in range(len(inputs))]
            while all(queues):
                self._take(name, kind, [q.pop(0) for q in queues])
            if end and kind == "conv" and name in self.states:
                conv: Any = self.layers[name]
                for _ in range(conv.kernel_size[0] // 2):
                    self._conv(name, torch.zeros_like(self.states[name][-1]))
        out, self.outputs = self.outputs, []
        return out

    def step(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Feed one token (batch, C); the head's running means for the positions this completes."""
        self._emit("input", x[..., None])
        return self._run(end=False)

    def finish(self) -> list[torch.Tensor]:
        """End the stream: the running means for the positions still waiting on look-ahead."""
        return self._run(end=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Stream a whole (batch, C, L) sequence token by token; the final prediction (batch, classes)."""
        self.reset()
        for t in range(x.shape[-1]):
            self.step(x[..., t])
        return self.finish()[-1]
