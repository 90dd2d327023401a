"""The whole pipeline (training with kernel tracking, true against linearized training and its closed form,
matrix-free eigenvalues, npz files, the CLI) for gated, stacked and bidirectional models on variable-length
sequences; the probes refuse them."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest
import scipy.linalg

import ntk_rnn
from ntk_rnn.apps import cli, probes
from ntk_rnn.network.data import SequenceData, load_npz, save_npz
from ntk_rnn.training.paired import train_paired
from ntk_rnn.training.train import TrainConfig, train


def _draw(cfg, seed):
    """Parameters N(0, init_std^2) as ntk_rnn.init_params draws them, but with numpy: init_params compiles a
    sampler for every new shape."""
    rng = np.random.default_rng(seed)
    return {k: rng.standard_normal(shape) * cfg.init_std[k] for k, shape in cfg.param_shapes.items()}


LENGTHS = np.array([6, 3, 2, 5, 6, 4])


@pytest.fixture(scope="module")
def padded():
    """A bidirectional GRU (standard parameterization, W and B trained) on 6 right-padded sequences."""
    base = ntk_rnn.synthetic_sequences(n=6, length=6, input_dim=3, delta=0.5, key=jax.random.key(0))
    data = SequenceData(base.x, base.y, "padded", LENGTHS)
    cfg = ntk_rnn.RNNConfig(24, 3, 1, cell="gru", bidirectional=True, parameterization="standard", trainable=("W", "B"))
    return cfg, _draw(cfg, 1), data


def test_linearized_training_on_padded_sequences_is_the_closed_form(padded):
    cfg, params, data = padded
    result = train_paired(cfg, params, data, data.take(np.arange(3)), TrainConfig(steps=30, record_every=10,
                          kernel_every=10), key=jax.random.key(2), progress=False)  # fmt: skip
    real_rows = int(sum(n - 1 for n in LENGTHS))  # positions 1..L-1 that each sequence has
    K = ntk_rnn.empirical_ntk(cfg, params, data.x, lengths1=data.lengths)
    assert K.shape == (real_rows, real_rows)
    assert result.history["closed_form_gap_train"].max() < 1e-9
    assert result.history["closed_form_gap_test"].max() < 1e-9
    assert result.history["gap_train"].iloc[-1] > 0  # the true GRU is not its linearization


def test_training_tracks_the_kernel_and_matches_dense_eigenvalues(padded):
    cfg, params, data = padded
    result = train(cfg, params, data, TrainConfig(steps=20, record_every=10, kernel_every=10), key=jax.random.key(3),
                   progress=False)  # fmt: skip
    first = result.history.iloc[0]
    eig = scipy.linalg.eigvalsh(ntk_rnn.empirical_ntk(cfg, params, data.x, lengths1=data.lengths))
    assert first["lambda_min"] == pytest.approx(eig[0], rel=1e-10)
    assert np.isnan(first["pattern_flip_fraction"])  # relu patterns are the one-layer Elman's
    assert result.history["loss"].iloc[-1] < result.history["loss"].iloc[0]
    free = ntk_rnn.ntk_extreme_eigenvalues(cfg, params, data.x, lengths=data.lengths, key=jax.random.key(0))
    assert free.size == eig.size
    assert free.lambda_min == pytest.approx(eig[0], rel=1e-8) and free.lambda_max == pytest.approx(eig[-1], rel=1e-8)


def test_sgd_minibatches_carry_their_lengths():
    base = ntk_rnn.synthetic_sequences(n=6, length=5, input_dim=3, delta=0.5, key=jax.random.key(0))
    data = SequenceData(base.x, base.y, "padded", np.array([5, 2, 3, 5, 1, 4]))
    cfg = ntk_rnn.RNNConfig(16, 3, 1, cell="lstm", parameterization="standard", readout="last")
    params = _draw(cfg, 1)
    full = train(cfg, params, data, TrainConfig(steps=5, record_every=5, lr_scale=0.5), key=jax.random.key(2),
                 progress=False)  # fmt: skip
    one = train(cfg, params, data, TrainConfig(steps=5, record_every=5, lr_scale=0.5, batch_size=6),
                key=jax.random.key(2), progress=False)  # fmt: skip
    np.testing.assert_allclose(one.history["loss"], full.history["loss"], rtol=1e-12)  # a full batch, permuted


def test_npz_keeps_lengths(tmp_path, padded):
    _, _, data = padded
    save_npz(tmp_path / "d.npz", data)
    back = load_npz(tmp_path / "d.npz")
    np.testing.assert_array_equal(np.asarray(back.lengths), LENGTHS)
    with pytest.raises(ValueError, match="lengths"):
        SequenceData(data.x, data.y, "bad", np.array([6, 3, 2, 5, 7, 4]))


def test_cli_kernel_for_a_cell_on_padded_sequences(tmp_path, padded, capsys):
    _, _, data = padded
    save_npz(tmp_path / "d.npz", data)
    argv = ["kernel", "--data", str(tmp_path / "d.npz"), "--cell", "lstm", "--num-layers", "2", "--bidirectional",
            "--width", "16", "--parameterization", "standard"]  # fmt: skip
    assert cli.main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["shape"] == [int(sum(n - 1 for n in LENGTHS))] * 2


@pytest.mark.parametrize("changes", [{"cell": "gru"}, {"num_layers": 2}, {"bidirectional": True}])
def test_probes_refuse_other_models(changes):
    cfg = ntk_rnn.RNNConfig(8, 3, **changes)
    params = _draw(cfg, 0)
    x = np.ones((2, 4, 3))
    with pytest.raises(ValueError, match="one-layer Elman"):
        probes.forward_norms(cfg, params, x)
    with pytest.raises(ValueError, match="one-layer Elman"):
        probes.perturbation_direction(cfg, params, x, "random", 0.1, key=jax.random.key(0))
