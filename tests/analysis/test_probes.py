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
    config = studies.BackwardConfig(activations=("relu",), widths=(16,), product_widths=(16, 24), n=2, length=4,
                                    product_length=7)  # fmt: skip
    backward = studies.backward_table(dataclasses_replace(config, **small), tmp_path, progress=False)
    assert set(backward["quantity"]) == {"backward", "product"}
    np.testing.assert_allclose(backward.loc[backward["kernel"] == "limit", "value"], 1.0, rtol=1e-12)
    products = backward[backward["quantity"] == "product"]
    assert studies.product_distances(7) == (0, 1, 2, 4)
    assert list(products.loc[products["width"] == 24, "distance"]) == [0, 1, 2, 4]
    product_fits = figures.product_fits(backward)
    assert list(product_fits["width"]) == [16, 24] and np.all(np.isfinite(product_fits["exponent"]))
    assert set(figures.backward_fits(backward)["quantity"]) == {"backward / sqrt(m/d) at the largest l - a",
                                                                "product: exponent in l - a + 1"}  # fmt: skip
    # n = 2, L = 4 throughout (and the widths above): the studies share their compiled programs
    config = studies.PerturbationConfig(widths=(16, 24), omegas=(0.1, 0.5, 2.0), n=2, length=4, ascent_steps=2)
    perturbation = studies.perturbation_table(dataclasses_replace(config, **small), tmp_path, progress=False)
    assert len(perturbation) == 4 * 2 * 3  # (kind, width, omega) with one seed
    assert np.all(perturbation["hidden_change"] > 0) and np.all(perturbation["first_order"] > 0)
    assert np.all(perturbation["backward_change_max"] >= perturbation["backward_change_mean"])
    fits = figures.perturbation_fits(perturbation)
    assert set(fits["measure"]) == set(figures.PAPER_EXPONENTS) and set(fits["kind"]) == set(studies.probes.KINDS)
    assert np.all(np.isfinite(fits.loc[fits["measure"] == "hidden_change", ["a (omega)", "b (m)"]]))
    slices = figures.perturbation_slice_fits(perturbation)
    assert set(slices["against"]) == {"omega", "m"}
    config = studies.TrainingProbeConfig(deltas=(0.2, 0.5), width=32, n=2, length=4, steps=20, record_every=10,
                                         kernel_every=10, omegas=(0.1, 1.0))  # fmt: skip
    training = studies.training_probe_table(dataclasses_replace(config, **small), tmp_path, progress=False)
    assert set(training["source"]) == {"GD", "SGD", "random"}
    checkpoints = training[training["grad_sq_norm"].notna()]
    assert np.all(checkpoints["gradient_ratio"] >= 1 - 1e-9)  # ||grad f||^2 = r^T K r >= 2 lambda_min f
    rendered = [figures.forward_figure(forward), figures.backward_figure(backward),
                figures.perturbation_figure(perturbation), figures.perturbation_width_figure(perturbation),
                figures.gradient_bound_figure(training),
                figures.sign_flip_figure(training)]  # fmt: skip
    for fig in rendered:
        assert all(ax.get_xlabel() and ax.get_ylabel() for ax in fig.axes if ax.has_data())
