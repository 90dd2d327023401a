"""The probe studies (figures 10 to 14) on small sizes."""

from dataclasses import replace as dataclasses_replace

import numpy as np


def test_probe_studies_and_figures(tmp_path):
    """The five probe studies on tiny sizes: tidy tables, the relu limit values, rendered figures."""
    from analysis import probes as studies
    from figures import probes as figures

    small = {"seeds": (0,), "input_dim": 4}
    config = studies.ForwardConfig(activations=("relu", "linear"), sigma_w2s=(2.0,), widths=(16, 32), n=2, length=4)
    forward = studies.forward_table(dataclasses_replace(config, **small), tmp_path, progress=False)
    limit = forward[(forward["kernel"] == "limit") & (forward["activation"] == "relu")]
    np.testing.assert_allclose(limit["norm"], np.sqrt(np.arange(1, 5)), rtol=1e-12)  # ||h_l||^2 -> l
    config = studies.BackwardConfig(activations=("relu",), widths=(16,), product_widths=(16,), n=2, length=4)
    backward = studies.backward_table(dataclasses_replace(config, **small), tmp_path, progress=False)
    assert set(backward["quantity"]) == {"backward", "product"}
    np.testing.assert_allclose(backward.loc[backward["kernel"] == "limit", "value"], 1.0, rtol=1e-12)
    config = studies.PerturbationConfig(widths=(16,), omegas=(0.1, 0.5, 2.0), n=3, length=4, ascent_steps=2)
    perturbation = studies.perturbation_table(dataclasses_replace(config, **small), tmp_path, progress=False)
    assert len(perturbation) == 3 * 3 * 4
    first = perturbation["step"] == 0  # h_1 = phi(A x_1) does not depend on W
    assert np.all(perturbation.loc[first, "hidden_change"] == 0)
    assert np.all(perturbation.loc[~first, "hidden_change"] > 0)
    fits = figures.perturbation_fits(perturbation)
    assert set(fits["measure"]) <= set(figures.PAPER_EXPONENTS) and np.all(np.isfinite(fits["exponent"]))
    config = studies.TrainingProbeConfig(deltas=(0.2, 0.5), width=32, n=3, length=3, steps=20, record_every=10,
                                         kernel_every=10, omegas=(0.1, 1.0))  # fmt: skip
    training = studies.training_probe_table(dataclasses_replace(config, **small), tmp_path, progress=False)
    assert set(training["source"]) == {"GD", "SGD", "random"}
    checkpoints = training[training["grad_sq_norm"].notna()]
    assert np.all(checkpoints["gradient_ratio"] >= 1 - 1e-9)  # ||grad f||^2 = r^T K r >= 2 lambda_min f
    rendered = [figures.forward_figure(forward), figures.backward_figure(backward),
                figures.perturbation_figure(perturbation), figures.gradient_bound_figure(training),
                figures.sign_flip_figure(training)]  # fmt: skip
    for fig in rendered:
        assert all(ax.get_xlabel() and ax.get_ylabel() for ax in fig.axes if ax.has_data())
