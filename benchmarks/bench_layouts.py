"""PyTorch's layouts against ntk_rnn's own, and ntk_rnn against torch.func on the same trained module (CPU).

Part 1: the structured kernel of a two-layer bidirectional GRU and LSTM with separate stacks, with PyTorch's
concat stacking, and with both of PyTorch's biases and a head bias (best of 3 after a warm-up call).
Part 2: one nn.LSTM(8, m, num_layers=2, bidirectional=True) with an nn.Linear(2 m, 3) head on its final
states: the NTK over all its parameters by torch.func (jacrev of the batch's outputs, then J J^T) and by from_torch +
empirical_ntk, and their largest difference. n=32, L=16, d_x=8, float64.

    python benchmarks/bench_layouts.py [--width 128]
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np

import ntk_rnn


def best_of(fn, repeats: int = 3) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return min(times)


def layouts(x: np.ndarray, width: int) -> None:
    print(f"{'cell':<5} {'layout':<34} {'seconds':>8}")
    biases = dict(sigma_b2=0.5, hidden_bias=True, output_bias=True, trainable=("W", "A", "b", "bh", "B", "bo"))
    for cell in ("gru", "lstm"):
        for label, fields in [
            ("separate stacks", {}),
            ("concat (PyTorch's)", dict(stacking="concat")),
            ("concat, both biases and a head bias", dict(stacking="concat", **biases)),
        ]:
            fields = {"trainable": ("W", "A", "B"), **fields}
            shape = dict(width=width, input_dim=8, output_dim=3, cell=cell, num_layers=2, bidirectional=True)
            cfg = ntk_rnn.RNNConfig(**shape, readout="last", parameterization="standard", **fields)
            params = ntk_rnn.init_params(cfg, key=jax.random.key(0))
            seconds = best_of(lambda cfg=cfg, params=params: ntk_rnn.empirical_ntk(cfg, params, x))
            print(f"{cell:<5} {label:<34} {seconds:>8.3f}")


def against_torch(x: np.ndarray, width: int) -> None:
    import torch
    from torch.func import functional_call, jacrev

    torch.manual_seed(0)
    rnn = torch.nn.LSTM(8, width, num_layers=2, bidirectional=True, batch_first=True).double()
    head = torch.nn.Linear(2 * width, 3).double()
    params = {**{f"rnn.{k}": v.detach() for k, v in rnn.named_parameters()},
              **{f"head.{k}": v.detach() for k, v in head.named_parameters()}}  # fmt: skip
    model = torch.nn.ModuleDict({"rnn": rnn, "head": head})

    xt = torch.from_numpy(x)

    def outputs(p):  # (n * 3,): the head on [h_forward; h_reverse] of the top layer
        rnn_params = {k[4:]: v for k, v in p.items() if k.startswith("rnn.")}
        _, (h, _) = functional_call(model["rnn"], rnn_params, (xt,))
        last = torch.cat([h[-2], h[-1]], dim=1)
        return functional_call(model["head"], {k[5:]: v for k, v in p.items() if k.startswith("head.")}, (last,))

    def torch_ntk():
        jac = jacrev(lambda p: outputs(p).reshape(-1))(params)
        J = torch.cat([j.reshape(x.shape[0] * 3, -1) for j in jac.values()], dim=1)
        return J @ J.T

    cfg, ours = ntk_rnn.from_torch(rnn, head, readout="last")
    seconds_torch = best_of(torch_ntk)
    seconds_ours = best_of(lambda: ntk_rnn.empirical_ntk(cfg, ours, x))
    K_torch, K_ours = torch_ntk().numpy(), ntk_rnn.empirical_ntk(cfg, ours, x)
    error = np.abs(K_torch - K_ours).max() / np.abs(K_torch).max()
    print(f"\ntrained-module NTK, LSTM m={width} x 2 layers x 2 directions + Linear head, all parameters:")
    print(f"  torch.func {seconds_torch:.3f} s, from_torch + empirical_ntk {seconds_ours:.3f} s "
          f"({seconds_torch / seconds_ours:.1f}x); largest relative difference {error:.1e}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=128)
    width = parser.parse_args().width
    x = np.random.default_rng(0).normal(size=(32, 16, 8)) / np.sqrt(8)
    layouts(x, width)
    against_torch(x, width)


if __name__ == "__main__":
    main()
