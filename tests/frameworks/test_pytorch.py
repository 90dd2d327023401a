"""from_torch and to_torch against torch itself: trained torch.nn.RNN, GRU and LSTM modules give the same outputs
in ntk_rnn.apply, and the same empirical NTK as torch.func over every parameter of the module and its head."""

import subprocess
import sys

import jax
import numpy as np
import pytest

import ntk_rnn
from ntk_rnn.network.cells import FLAX_GRU

torch = pytest.importorskip("torch")
nn = torch.nn
from torch.func import functional_call, jacrev  # noqa: E402
from torch.nn.utils.parametrizations import weight_norm  # noqa: E402
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence  # noqa: E402

F64 = torch.float64


class Net(nn.Module):
    """rnn and head on x (n, L, d_x), whatever rnn.batch_first; lengths (n,) pack the batch. readout "last":
    head(the top layer's h_n, directions concatenated), "all": head(output) at every step (0 at padded steps),
    "mean": head(mean of the outputs over the real steps)."""

    def __init__(self, rnn: nn.Module, head: nn.Module | None, readout: str):
        super().__init__()
        self.rnn, self.head, self.readout = rnn, head if head is not None else nn.Identity(), readout

    def forward(self, x, lengths=None):
        n, steps = x.shape[:2]
        first = self.rnn.batch_first
        inputs = x if first else x.transpose(0, 1)
        if lengths is not None:
            inputs = pack_padded_sequence(inputs, lengths, batch_first=first, enforce_sorted=False)
        out, state = self.rnn(inputs)
        h_n = state[0] if isinstance(state, tuple) else state
        if lengths is not None:
            out = pad_packed_sequence(out, batch_first=first, total_length=steps)[0]
        out = out if first else out.transpose(0, 1)  # (n, L, directions * m), 0 at padded steps
        if self.readout == "last":
            directions = 2 if self.rnn.bidirectional else 1
            return self.head(h_n[-directions:].transpose(0, 1).reshape(n, -1))
        lengths = torch.full((n,), steps) if lengths is None else lengths
        if self.readout == "mean":
            return self.head(out.sum(1) / lengths[:, None].to(out.dtype))
        real = torch.arange(steps)[None, :] < lengths[:, None]
        return self.head(out) * real[..., None]


def trained(rnn, head, readout, x, lengths, steps=3, lr=0.1):
    """Net(rnn, head) in float64 after a few SGD steps on random targets, so that no weight is at its init."""
    net = Net(rnn, head, readout).double()
    optimizer = torch.optim.SGD(net.parameters(), lr=lr)
    target = torch.randn_like(net(x, lengths))
    for _ in range(steps):
        optimizer.zero_grad()
        ((net(x, lengths) - target) ** 2).mean().backward()
        optimizer.step()
    return net


def torch_ntk(net, x, lengths):
    """J J^T over every parameter of net by torch.func (functional_call + jacrev), rows (sample, position, unit)
    at the real positions. torch.func cannot differentiate a packed sequence, so each sequence runs alone,
    cut to its length: what packing computes."""
    params = {k: v.detach() for k, v in net.named_parameters()}
    rows = []
    for i, length in enumerate(lengths.tolist()):
        xi = x[i : i + 1, :length]
        jac = jacrev(lambda p, xi=xi: functional_call(net, p, (xi,)).reshape(-1))(params)
        rows.append(torch.cat([j.reshape(j.shape[0], -1) for j in jac.values()], dim=1))
    J = torch.cat(rows)
    assert J.shape[1] == sum(p.numel() for p in net.parameters())
    return (J @ J.T).numpy()


def relative(a, b):
    return float(np.abs(np.asarray(a) - np.asarray(b)).max() / np.abs(np.asarray(b)).max())


def inputs(n, steps, d_x, lengths, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, steps, d_x, generator=generator, dtype=F64), torch.tensor(lengths)


def check_against_torch(net, x, lengths, *, readouts=None):
    """from_torch(net) gives torch's outputs in apply (for each readout) and torch.func's NTK at the last
    readout; returns (cfg, params). Lengths all L are passed as None (no packing, ntk_rnn's fast paths)."""
    packed = lengths if lengths.min() < x.shape[1] else None
    ours = None if packed is None else lengths.numpy()
    for readout in readouts or (net.readout,):
        net.readout = readout
        cfg, params = ntk_rnn.from_torch(net.rnn, None if isinstance(net.head, nn.Identity) else net.head,
                                         readout=readout)  # fmt: skip
        assert all(v.dtype == np.float64 for v in params.values())
        expected = net(x, packed).detach().numpy()
        out = ntk_rnn.apply(cfg, params, x.numpy(), ours)
        np.testing.assert_allclose(out, expected, rtol=1e-11, atol=1e-12)
    positions = list(range(x.shape[1])) if cfg.readout == "all" else None
    K = ntk_rnn.empirical_ntk(cfg, params, x.numpy(), positions=positions, lengths1=ours)
    assert relative(K, torch_ntk(net, x, lengths)) < 1e-10
    return cfg, params


def check_round_trip(net, x, lengths):
    """to_torch(from_torch(rnn, head)) has rnn's and head's parameters and computes net's outputs."""
    head = None if isinstance(net.head, nn.Identity) else net.head
    rnn, new_head = ntk_rnn.to_torch(*ntk_rnn.from_torch(net.rnn, head, readout=net.readout),
                                     batch_first=net.rnn.batch_first)  # fmt: skip
    ours = dict(rnn.named_parameters())
    for name, value in net.rnn.named_parameters():
        assert torch.equal(ours[name], value), name
    copy = Net(rnn, new_head if head is not None else None, net.readout)
    torch.testing.assert_close(copy(x, lengths), net(x, lengths), rtol=1e-13, atol=1e-13)


# ----------------------------------------------------------------------------- the modules, trained


def test_bidirectional_two_layer_lstm_with_a_linear_head_on_its_final_states():
    torch.manual_seed(0)
    x, lengths = inputs(3, 6, 8, [6, 2, 4])
    rnn = nn.LSTM(8, 64, num_layers=2, bidirectional=True)  # batch_first=False: torch reads (L, n, d_x)
    net = trained(rnn, nn.Linear(128, 3), "last", x, lengths)
    cfg, params = check_against_torch(net, x, lengths)
    assert (cfg.cell, cfg.num_layers, cfg.bidirectional, cfg.stacking) == ("lstm", 2, True, "concat")
    assert cfg.trainable == ("W", "A", "b", "bh", "B", "bo") and params["A_l1_reverse"].shape == (256, 128)
    assert sum(v.size for v in params.values()) == sum(p.numel() for p in net.parameters())
    check_round_trip(net, x, lengths)


def test_two_layer_gru_with_both_biases_and_every_readout():
    torch.manual_seed(1)
    x, lengths = inputs(3, 6, 4, [3, 6, 5], seed=1)
    net = trained(nn.GRU(4, 12, num_layers=2, batch_first=True), nn.Linear(12, 2), "last", x, lengths)
    for j in (0, 1):  # b_hn sits inside the reset product: PyTorch's GRU, not Flax's
        assert getattr(net.rnn, f"bias_hh_l{j}")[24:].abs().min() > 0
    cfg, _ = check_against_torch(net, x, lengths, readouts=("all", "mean", "last"))
    assert cfg.hidden_bias and cfg.output_bias and cfg.stacking == "separate"
    check_round_trip(net, x, lengths)


def test_relu_rnn_without_biases_reading_out_every_step():
    torch.manual_seed(2)
    x, lengths = inputs(3, 6, 4, [6, 6, 6], seed=2)
    rnn = nn.RNN(4, 16, nonlinearity="relu", bias=False, batch_first=True)
    net = trained(rnn, nn.Linear(16, 2, bias=False), "all", x, lengths, lr=0.05)
    cfg, params = check_against_torch(net, x, lengths)
    assert cfg.is_elman and cfg.activation == "relu" and set(params) == {"W", "A", "B"}
    check_round_trip(net, x, lengths)


def test_bidirectional_tanh_rnn_without_head_reading_out_every_step_of_packed_sequences():
    torch.manual_seed(3)
    x, lengths = inputs(3, 6, 4, [2, 6, 4], seed=3)
    rnn = nn.RNN(4, 8, num_layers=2, bidirectional=True)
    net = trained(rnn, None, "all", x, lengths)
    cfg, params = check_against_torch(net, x, lengths)
    assert cfg.output_dim == 16 and cfg.trainable == ("W", "A", "b", "bh")  # the identity head is not trained
    np.testing.assert_array_equal(params["B_reverse"], np.eye(16)[:, 8:])
    check_round_trip(net, x, lengths)


def test_float32_and_eval_mode_dropout_are_read_as_float64():
    rnn = nn.LSTM(3, 5, num_layers=2, dropout=0.5).eval()
    head = nn.Linear(5, 1)
    _, params = ntk_rnn.from_torch(rnn, head)
    assert params["W_l1"].dtype == np.float64
    np.testing.assert_array_equal(params["W_l1"], rnn.weight_hh_l1.detach().double().numpy())
    np.testing.assert_array_equal(params["bo"], head.bias.detach().double().numpy())


# ----------------------------------------------------------------------------- to_torch of ntk_rnn's models


@pytest.mark.parametrize(
    "fields",
    [
        {"cell": "gru", "parameterization": "ntk", "sigma_b2": 0.5, "hidden_bias": True, "output_bias": True},
        {"cell": FLAX_GRU, "parameterization": "ntk", "sigma_b2": 0.5, "hidden_bias": True},
        {"cell": "lstm", "sigma_b2": 0.5, "num_layers": 2, "bidirectional": True, "stacking": "concat"},
    ],
    ids=["gru-ntk", "flax-gru", "lstm-b-without-bh"],
)
def test_to_torch_folds_the_multipliers_and_fills_missing_hidden_biases(fields):
    cfg = ntk_rnn.RNNConfig(width=8, input_dim=4, output_dim=2, readout="last", **fields)
    params = ntk_rnn.init_params(cfg, key=jax.random.key(0))
    if cfg.output_bias:
        params["bo"] = params["bo"] + 0.3
    rnn, head = ntk_rnn.to_torch(cfg, params)
    x, lengths = inputs(3, 6, 4, [6, 3, 5])
    expected = ntk_rnn.apply(cfg, params, x.numpy(), lengths.numpy())
    np.testing.assert_allclose(Net(rnn, head, "last")(x, lengths).detach().numpy(), expected, rtol=1e-11, atol=1e-12)


# ----------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("make", "error", "words"),
    [
        (lambda: (nn.LSTM(3, 6, proj_size=2), None), ValueError, "proj_size"),
        (lambda: (nn.GRU(3, 6, num_layers=2, dropout=0.1), None), ValueError, "dropout"),
        (lambda: (nn.GRU(3, 6, bidirectional=True), nn.Linear(6, 2)), ValueError, r"Linear\(12, d\)"),
        (lambda: (nn.GRU(3, 6), nn.Sequential(nn.Linear(6, 2))), TypeError, "head must be a torch.nn.Linear"),
        (lambda: (nn.Linear(3, 6), None), TypeError, "rnn must be a torch.nn.RNN, .* got .*Linear"),
        (lambda: (nn.GRUCell(3, 6), None), TypeError, "rnn must be .* got .*GRUCell"),
        (lambda: (nn.GRU(3, 6), weight_norm(nn.Linear(6, 2))), ValueError, "head must have the plain parameters"),
    ],
    ids=["proj_size", "dropout-training", "head-shape", "head-type", "linear", "cell", "weight-norm"],
)
def test_from_torch_refuses_what_the_model_cannot_be(make, error, words):
    rnn, head = make()
    with pytest.raises(error, match=words):
        ntk_rnn.from_torch(rnn, head)


def test_from_torch_refuses_an_unknown_readout_and_to_torch_what_torch_lacks():
    with pytest.raises(ValueError, match="readout must be one of"):
        ntk_rnn.from_torch(nn.RNN(3, 4), readout="first")
    separate = ntk_rnn.RNNConfig(width=4, input_dim=3, cell="gru", num_layers=2, bidirectional=True)
    with pytest.raises(ValueError, match="stacking='separate'"):
        ntk_rnn.to_torch(separate, ntk_rnn.init_params(separate, key=jax.random.key(0)))
    erf = ntk_rnn.RNNConfig(width=4, input_dim=3, activation="erf")
    with pytest.raises(ValueError, match="activation='erf'"):
        ntk_rnn.to_torch(erf, ntk_rnn.init_params(erf, key=jax.random.key(0)))


def test_importing_ntk_rnn_does_not_import_torch():
    code = "import sys, ntk_rnn; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
