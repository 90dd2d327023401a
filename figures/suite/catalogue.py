"""The catalogue of the main job: every study with its quick and full configs, and every figure with its
caption, in the order the report shows them. Adding a study or figure is one call here:

    add_study("my_study", my_table, quick=MyConfig(widths=(64, 256)), full=MyConfig(widths=(64, ..., 4096)),
              title="...")
    add_figure("fig15_my_figure", "my_study", my_figure, caption="... Tested: ...", title="...", fits=my_fits)

where my_table(config, cache_dir=..., progress=...) returns a pandas table (analysis/ has the studies),
my_figure(table) a matplotlib Figure and my_fits(table) its fitted numbers (figures/ has both)."""

from __future__ import annotations

import numpy as np

from analysis.cells import (
    QUICK_MODELS,
    CellConditioningConfig,
    CellLazyConfig,
    CellSpreadConfig,
    cell_conditioning_table,
    cell_lazy_table,
    cell_spread_table,
)
from analysis.classification import ClassificationConfig, classification_table
from analysis.eigenvalues import (
    ConditioningConfig,
    ConvergenceConfig,
    SeparationConfig,
    conditioning_table,
    convergence_table,
    separation_table,
)
from analysis.kernel_spectrum import SpectrumConfig, spectrum_table
from analysis.linearization import LinearizationConfig, linearization_table, trajectory_table
from analysis.probes import (
    BackwardConfig,
    ForwardConfig,
    PerturbationConfig,
    TrainingProbeConfig,
    backward_table,
    forward_table,
    perturbation_table,
    training_probe_table,
)
from analysis.width import (
    FluctuationConfig,
    RateConfig,
    RequirementConfig,
    fluctuation_table,
    rate_table,
    requirement_table,
)
from analysis.width_training import WidthTrainingConfig, training_table
from figures.cells import (
    cell_conditioning_figure,
    cell_conditioning_fits,
    cell_lazy_figure,
    cell_lazy_fits,
    cell_spread_figure,
    cell_spread_fits,
)
from figures.classification import (
    ACCURACY_CAPTION,
    AGREEMENT_CAPTION,
    accuracy_figure,
    accuracy_fits,
    agreement_figure,
    agreement_fits,
)
from figures.eigenvalues import (
    conditioning_figure,
    conditioning_numbers,
    convergence_figure,
    convergence_fits,
    separation_figure,
    separation_numbers,
)
from figures.linearization import gap_figure, gap_fits, loss_comparison_figure, trajectory_figure, trajectory_numbers
from figures.probes import (
    backward_figure,
    backward_fits,
    forward_figure,
    forward_numbers,
    gradient_bound_figure,
    gradient_bound_numbers,
    perturbation_figure,
    perturbation_fits,
    perturbation_slice_fits,
    perturbation_width_figure,
    sign_flip_figure,
    sign_flip_numbers,
)
from figures.spectrum import lambda_min_numbers, spectrum_figure
from figures.suite.registry import add_figure, add_study
from figures.training import loss_curves_figure, loss_rate_numbers, movement_figure, movement_fits
from figures.width import (
    fluctuation_figure,
    fluctuation_fits,
    rate_figure,
    rate_fits,
    requirement_figure,
    requirement_fits,
)

WIDTHS_QUICK, SEEDS_QUICK = (64, 128, 256, 512, 1024), (0, 1, 2)
TRAINING_WIDTHS_QUICK = WIDTHS_QUICK[:-1]  # a training run at m = 1024 costs as much as the four below it on 2 cores
WIDTHS_FULL, SEEDS_FULL = (64, 128, 256, 512, 1024, 2048, 4096), (0, 1, 2, 3, 4)

add_study("kernel_spectrum", spectrum_table, title="The spectrum of K_0 against width (synthetic and digits data)",
          quick=SpectrumConfig(widths=(*WIDTHS_QUICK, 2048), seeds=SEEDS_QUICK),
          full=SpectrumConfig(widths=(*WIDTHS_FULL, 8192), seeds=SEEDS_FULL))  # fmt: skip
add_figure("fig1_kernel_spectrum", "kernel_spectrum", spectrum_figure, fits=lambda_min_numbers,
           title="The spectrum of K₀ and λ_min(K₀)/m against width",
           caption="""Left: every eigenvalue of the empirical kernel K₀/m at initialization (synthetic data, band =
    range over seeds), one curve per width m, and the infinite-width limit's (dashed). Middle: the
    smallest eigenvalue λ_min(K₀)/m against m for the synthetic data (first tokens δ = 0.5 apart) and
    for digits 3 vs 8 (first tokens only about 0.05–0.08 apart), the limit as dashed lines. Right: the
    fraction of the squared label norm in the limit kernel's eigendirections up to each eigenvalue, for
    the data's labels and for the same labels permuted. The paper's convergence proof rests on a
    gradient lower bound at initialization, ‖∇f‖² ≥ Ω(δm/poly(n, L))·f, that is λ_min(K₀) of order δm
    for δ-separated data. Tested: λ_min is positive at every width, K₀/m levels off at its limit as m
    grows (slope against width near 0 in the table), and the less separated digits data have a much
    smaller λ_min.""")  # fmt: skip
add_study("width_training", training_table, title="Full-batch GD at several widths with the kernel tracked",
          quick=WidthTrainingConfig(widths=TRAINING_WIDTHS_QUICK, seeds=SEEDS_QUICK),
          full=WidthTrainingConfig(widths=WIDTHS_FULL, seeds=SEEDS_FULL))  # fmt: skip
add_figure("fig2_gd_loss_curves", "width_training", loss_curves_figure, fits=loss_rate_numbers,
           title="GD loss curves across widths",
           caption="""Training loss of full-batch GD at η = 1/λ_max(K₀) against the step, median over seeds, one
    curve per width. The dashed lines have the slope of the slowest linearized mode,
    2 log(1 − η λ_min(K₀)). Tested: the paper's main theorem, that GD on a wide RNN converges to zero
    loss at a linear rate (a straight line on the log axis) set by λ_min of the kernel. The fitted
    slopes are steeper than the dashed ones because faster modes still contribute: the λ_min rate is a
    bound that the runs beat (ratio fitted/predicted ≥ 1 in the table).""")  # fmt: skip
add_figure("fig3_movement_vs_width", "width_training", movement_figure, fits=movement_fits,
           title="Kernel drift and weight movement against width",
           caption="""The relative kernel drift ‖K_T − K₀‖_F/‖K₀‖_F and the weight movement ‖W_T − W₀‖_F at the
    end of training against width, log-log, all seeds as points, with fitted power laws and 95%
    intervals. Tested: the paper's over-parameterization argument, that training stays in a ball of
    radius ω/√m around initialization where the network is nearly linear, so both shrink like a power
    of m (docs/theory.md §5 expects −1/2).""")  # fmt: skip
add_study("linearization", linearization_table, title="The true against the linearized network, trained side by side",
          quick=LinearizationConfig(widths=TRAINING_WIDTHS_QUICK, seeds=SEEDS_QUICK),
          full=LinearizationConfig(widths=WIDTHS_FULL, seeds=SEEDS_FULL))  # fmt: skip
add_figure("fig4_true_vs_linearized_loss", "linearization", loss_comparison_figure,
           title="True against linearized training",
           caption="""Training loss of the true RNN (solid) and of its first-order Taylor expansion around
    initialization trained with the same GD (dashed), for the smallest, a middle and the largest
    width, medians over seeds, one panel per dataset. Tested: the paper's semi-smoothness result, that
    near initialization the first-order term describes f, so a wide RNN trains like its linearization:
    the curves part at small m and coincide as m grows.""")  # fmt: skip
add_figure("fig5_linearization_gap_vs_width", "linearization", gap_figure, fits=gap_fits,
           title="The gap between the true and the linearized network against width",
           caption="""End-of-training distance ‖f_true − f_lin‖ between the true and linearized outputs on train
    and test sequences, the kernel drift and the weight movement against width, log-log, seeds as
    points, per dataset, with fitted slopes and 95% intervals. Tested: the size of the paper's Taylor
    remainder, smaller than the first-order term by a power of the perturbation radius; docs/theory.md §5
    expects every quantity to fall like m^(−1/2).""")  # fmt: skip
add_study("trajectories", trajectory_table, title="Outputs in function space: true, linearized and closed form",
          quick=LinearizationConfig(widths=(64, 1024), seeds=(0,), datasets=("synthetic",), trace_points=1),
          full=LinearizationConfig(widths=(64, 1024, 4096), seeds=(0,), datasets=("synthetic",),
                                   trace_points=1))  # fmt: skip
add_figure("fig6_function_space_trajectories", "trajectories", trajectory_figure, fits=trajectory_numbers,
           title="Trajectories in function space",
           caption="""One train and one test output during training at each traced width: the true network, the
    trained linearized model and the closed form f_t = y + (I − ηK₀)^t (f₀ − y) (test points through
    K(x, X)). Tested: that training in the kernel regime is the linear dynamics of K₀. The closed form
    lies on the linearized curve (the table gives the largest difference); the true network leaves it
    at small width and follows it at large width.""")  # fmt: skip
add_study("separation", separation_table,
          title="lambda_min against the separation delta, the length L and the sample count n",
          quick=SeparationConfig(lengths=(2, 4, 8, 16), deltas=(0.025, 0.05, 0.1, 0.2, 0.4), ns=(4, 8, 16, 32),
                                 seeds=(0, 1), width=512),
          full=SeparationConfig(lengths=(2, 4, 8, 16, 32), deltas=(0.0125, 0.025, 0.05, 0.1, 0.2, 0.4),
                                ns=(4, 8, 16, 32, 64), seeds=(0, 1, 2), width=4096))  # fmt: skip
add_figure("fig7_lambda_min_heatmaps", "separation", separation_figure, fits=separation_numbers,
           title="λ_min against the separation δ, the length L and the sample count n",
           caption="""log₁₀ λ_min(K)/m, mean over seeds, for synthetic sequences whose first tokens are exactly δ
    apart and whose later tokens are shared (the case the paper's bound is built on), over (L, δ) and
    over (n, L), and for n digits read as their first L rows, over (n, L); the empirical kernel at
    finite width on the left, the infinite-width limit on the right. Tested: the
    paper's claim that the width and the number of steps needed are polynomial in n, L and 1/δ,
    through λ_min: it should fall polynomially, not exponentially, in δ, n and L. The table gives the
    log-log slope of λ_min against δ at each L.""")  # fmt: skip
add_study("convergence", convergence_table,
          title="The empirical kernel against its infinite-width limit, per activation",
          quick=ConvergenceConfig(widths=(*WIDTHS_QUICK, 2048), seeds=SEEDS_QUICK),
          full=ConvergenceConfig(widths=(*WIDTHS_FULL, 8192), seeds=SEEDS_FULL))  # fmt: skip
add_figure("fig8_limit_convergence", "convergence", convergence_figure, fits=convergence_fits,
           title="The empirical kernel converges to its infinite-width limit",
           caption="""Relative Frobenius distance between the empirical kernel K/m and the exact infinite-width
    kernel against width, log-log, per activation (relu and linear in the paper's parameterization,
    erf and tanh in the standard one, σ_w² = 1), seeds as points, with fitted slopes. Tested: the
    concentration of the kernel at random initialization that the paper's analysis relies on (and
    Tensor Programs II makes exact for weight-tied RNNs): the error should fall like m^(−1/2).""")  # fmt: skip
add_study("conditioning", conditioning_table, title="Conditioning of the kernel against L per activation",
          quick=ConditioningConfig(lengths=(2, 4, 8, 16, 32), seeds=(0, 1), width=512),
          full=ConditioningConfig(lengths=(2, 4, 8, 16, 32, 64), seeds=(0, 1, 2), width=4096))  # fmt: skip
add_figure("fig9_conditioning_vs_length", "conditioning", conditioning_figure, fits=conditioning_numbers,
           title="Conditioning against L per activation",
           caption="""Condition number λ_max/λ_min of the kernel against the sequence length L at the paper's
    variances (σ_w² = σ_u² = 2), per activation: the limit as lines, the empirical kernel at finite
    width dotted, one panel per parameterization, medians over seeds (the table: the limit's). Tested:
    the paper's forward and backward stability of ReLU RNNs (no exponential growth in L), which keeps
    every bound polynomial in L: relu's condition number grows polynomially with L, while the linear
    RNN's kernel is ill-conditioned from the start and becomes singular.""")  # fmt: skip
add_study("forward_stability", forward_table, title="Forward stability: hidden-state norms against the step",
          quick=ForwardConfig(widths=(64, 256, 1024, 4096), seeds=SEEDS_QUICK, length=32),
          full=ForwardConfig(widths=(64, 256, 1024, 4096, 16384), seeds=SEEDS_FULL, length=64))  # fmt: skip
add_figure("fig10_forward_stability", "forward_stability", forward_figure, fits=forward_numbers,
           title="Forward stability: ‖h_l‖ against the step",
           caption="""The norm of the hidden state ‖h_l‖ at initialization against the step l (the paper's data,
    unit tokens), per activation (columns) at the paper's variance σ_w² = 2 (top) and at σ_w² = 1
    (bottom): the median over seeds per width with the range over seeds as a band, and the exact
    infinite-width value (dashed; in the paper's 1/m scaling tanh and erf act as linear maps with gain
    φ'(0)). Tested: the paper's forward stability, that a ReLU RNN's hidden states neither explode nor
    vanish (‖h_l‖ ≤ poly(L)): relu's limit is ‖h_l‖² = l at σ_w² = 2, a polynomial, and the finite widths
    reach it as m grows, with a wide spread over seeds at small m; the linear RNN grows like 2^(l/2), and
    tanh and erf follow it until their coordinates reach O(1), where they saturate at a level that grows
    like √m. The table gives ‖h_L‖ at the last step.""")  # fmt: skip
add_study("backward_stability", backward_table,
          title="Backward stability: backward-product norms against the distance l - a",
          quick=BackwardConfig(widths=(256, 1024, 4096), product_widths=(256, 1024), product_length=66,
                               seeds=SEEDS_QUICK, length=16),
          full=BackwardConfig(widths=(256, 1024, 4096, 8192), product_widths=(256, 1024, 4096), product_length=130,
                              seeds=SEEDS_FULL, length=32))  # fmt: skip
add_figure("fig11_backward_stability", "backward_stability", backward_figure, fits=backward_fits,
           title="Backward stability: ‖B D_l W ⋯ D_a W‖₂ against l − a",
           caption="""The spectral norm of the backward products ‖B D_l W ⋯ D_a W‖₂ divided by √(m/d) against the
    distance l − a (mean over sequences and l), per activation and width, with the exact infinite-width
    value (dashed), at σ_w² = 2; last panel: the relu intermediate-layer products ‖D_l W ⋯ D_a W‖₂ (a = 2) on
    one sequence against the number of factors l − a + 1 up to 64 (128 in the full profile), log-log, per
    width, computed matrix-free by Lanczos (never forming the m × m product), with the fitted growth
    exponent and 95% interval in the legend. Tested: the paper's backward stability,
    ‖B D_l W ⋯ D_a W‖ ≤ O(√(m/d)) poly(L): for relu the normalized norm is a flat line at 1 in the limit and
    stays near 1 at every width, while a linear RNN's grows like 2^((l−a+1)/2) at every width, and tanh and
    erf follow it as far as their saturation allows; and Lemma B.11's bound ‖D_l W ⋯ D_a W‖₂ ≤ O(L³)
    against Remark 4.1's conjecture O(1) (grey guides, exponents 3 and 0). In the quick profile the relu
    products rise from about 2.3 (one factor) to a peak of 6 to 8 near 17 factors and then fall (2.8 and 4.7
    at 65 factors for m = 256 and 1024); the power-law exponents, 0.02 [−0.27, 0.31] and 0.15 [−0.08, 0.37],
    exclude the bound's 3 and contain the conjecture's 0. But the fall looks like a finite-width effect: a single
    run at m = 4096 grew monotonically, 2.4, 3.3, 5.0, 8.8, 13.0, 15.7 at 1, 2, 5, 17, 65, 129 factors
    (exponent about 0.4), of the order of the largest singular value of a product of k independent square
    Gaussian matrices at infinite width, √((k+1)^(k+1)/k^k) ≈ √(e(k+1)) (exponent 1/2; our comparison, not
    the paper's). So in the paper's regime m ≫ poly(L) the data point to growth like √L: far inside Lemma
    B.11's O(L³), and against an m-independent O(1) over L; the full profile (m = 4096, 128 factors)
    decides. One sequence and one seed per width; the lemma bounds the worst case over inputs. The table
    gives the backward values at the largest distance, and per width the product exponent, the value at
    the most factors and the peak.""")  # fmt: skip
add_study("perturbation", perturbation_table,
          title="Perturbations of size omega: sign flips, hidden states, backward products, first-order error",
          quick=PerturbationConfig(widths=(128, 256, 512, 1024), seeds=(0, 1), ascent_steps=5),
          full=PerturbationConfig(widths=(256, 512, 1024, 2048, 4096), seeds=(0, 1, 2), adversarial_max_width=1024,
                                  omegas=tuple(float(w) for w in np.logspace(-1.5, 0.5, 7)),
                                  ascent_steps=10))  # fmt: skip
PERTURBATION_CAPTION = """W → W + Δ with ‖Δ‖₂ = ω/√m at initialization (relu paper model, the paper's data), for four
    directions: random Gaussian, the gradient (descent) direction, adversarial (projected ascent on the
    output change) and flip (the rank-one Δ = u hᵀ/‖h‖ that pushes the smallest-margin pre-activations of
    one sample and step across zero, chosen by its actual flip count). Measures, over samples i and steps
    l ≥ 2: the largest sign-flip count max ‖D'_{i,l} − D_{i,l}‖₀ and the mean flip fraction, the largest
    hidden-state change, the mean and largest change of the backward products ‖R' − R‖₂/‖B‖₂
    (R = B D_l W ⋯ D_a W), and the first-order Taylor error of the outputs relative to the first-order
    term. Tested: Lemma C.2 (‖D'‖₀ ≤ O(ω^(2/3) m^(2/3)) per sample and step; hidden change O(ω)/√m), Lemma
    C.9 (backward change O(ω^(1/3) m^(1/3) log m), i.e. ω^(1/3) m^(−1/6) relative to ‖B‖ ~ √m) and
    Theorem 4 (semi-smoothness: the Taylor error's first term O(ω^(1/3) m^(1/3)) max‖loss‖ ‖W'‖₂ against a
    first-order term of order ‖∇f‖‖W'‖ ~ √m ‖W'‖₂ gives a ratio ω^(1/3) m^(−1/6); this is our reading, on the
    outputs F rather than on f, and the theorem's second-order term O(n m)‖W'‖₂² adds a ratio of order ω).
    The paper's laws are upper bounds: in m a measured exponent at or below the paper's agrees and one above
    it would, at large m, contradict; in ω (ω ≤ 1) one at or above the paper's agrees. A random direction is
    expected to flip about ω √m units per step (exponents (1, 1/2), docs/theory.md §6), the flip direction
    about (ω m)^(2/3): it is the direction that can show whether Lemma C.2 is tight. What the quick
    profile (m ≤ 1024, adversarial m ≤ 512; the full one goes to 4096 and 1024) shows: the flip
    direction flips the most units, but its count grows like ω^0.49 m^0.57, below (2/3, 2/3) in both
    (the one-step estimate (ωm)^(2/3) holds at small ω and falls short at large ω, where Δ also moves
    the earlier steps): the lemma holds, its tightness is not shown at these widths (one run at m = 4096,
    ω = 1 flipped 167 units against 65 at 1024, a local exponent 0.68 in m: the full profile decides);
    random directions follow the
    heuristic (flip fraction ~ ω^0.97 m^−0.41). Hidden changes follow ω¹ m^(−1/2) for the random,
    gradient and adversarial directions (the lemma's exponents); the flip direction's decays more slowly
    in m (about −0.35), which these widths cannot tell from a constant factor. The largest backward
    change follows ω^(0.27–0.33) m^(−0.27–−0.37), at or below the paper's ω^(1/3) m^(−1/6) in m; the
    mean backward change grows faster in ω (about 0.6, which agrees for ω ≤ 1) and, for the flip
    direction, hardly falls with m (−0.04 ± 0.1), so Lemma C.9's m^(−1/6) is not visible in the mean at
    these widths. The first-order error's exponents in ω are ≥ 1/3 for every direction; in m they are
    below −1/6 except for the flip direction, whose interval contains both 0 and −1/6 (cannot decide).
    Zeros (no flips at small ω) are left out of every fit, which biases the smallest-ω points up; flip
    counts are small integers there. The full profile (m up to 4096) is where these exponents firm up."""
add_figure("fig12_perturbation", "perturbation", perturbation_figure, fits=perturbation_fits,
           title="Perturbations of size ω at initialization, against ω",
           caption=PERTURBATION_CAPTION + """
    Here: each measure against ω at each direction's largest width, fitted exponents in ω in the legends,
    the paper's as grey dotted guides. The table gives, per (measure, direction), the joint law
    y ~ ω^a m^b fitted over every width, seed and ω, with 95% intervals, beside the paper's (a, b).""")  # fmt: skip
add_study("training_probes", training_probe_table, title="The gradient lower bound and sign flips along GD and SGD",
          quick=TrainingProbeConfig(width=256, seeds=(0, 1), steps=300, kernel_every=20),
          full=TrainingProbeConfig(width=2048, seeds=(0, 1, 2), steps=1000, kernel_every=50))  # fmt: skip
add_figure("fig13_gradient_bound", "training_probes", gradient_bound_figure, fits=gradient_bound_numbers,
           title="The gradient lower bound along GD and SGD",
           caption="""Along full-batch GD (left) and SGD with one sample per step (right) on sequences whose first
    tokens are exactly δ apart (later tokens shared), ‖∇f(W_t)‖²_F/(f(W_t) m) (solid) beside
    2λ_min(K_t)/m (dashed), which bounds it from below since ‖∇f‖² = rᵀK r ≥ 2λ_min f; medians over seeds.
    Tested: the paper's gradient lower bound ‖∇f(W)‖² ≥ Ω(δ m/poly(n, d, L)) f(W) near initialization,
    the engine of its linear convergence: the ratio stays above the bound along the runs, and both fall
    with the separation δ. The table gives λ_min(K₀)/m, the smallest ratio seen and how far the loss
    fell.""")  # fmt: skip
add_figure("fig14_sign_flips_in_training", "training_probes", sign_flip_figure, fits=sign_flip_numbers,
           title="ReLU sign flips during training",
           caption="""The fraction of ReLU activation patterns (steps l ≥ 2) that changed since initialization
    along the same GD and SGD runs, against the step (left) and against the distance travelled
    ω_t = √m‖W_t − W₀‖₂ (right), beside the fraction that a random perturbation of the initial W of the
    same ω flips (black). Tested: the paper's sign-flip counting, which bounds the flips of any
    perturbation of radius ω by O(ω^(2/3) m): training stays in the small-ω region where few signs flip.
    The table compares the flips at the end of training with a random perturbation of the same ω.""")  # fmt: skip
CELL_WIDTHS_QUICK = (64, 128, 256)
add_study("cell_conditioning", cell_conditioning_table, title="Conditioning of K_0 against L for every cell",
          quick=CellConditioningConfig(models=QUICK_MODELS, seeds=SEEDS_QUICK, lengths=(2, 3, 4, 6, 8), width=128),
          full=CellConditioningConfig(seeds=SEEDS_FULL, lengths=(2, 3, 4, 6, 8, 12, 16, 24, 32),
                                      width=2048))  # fmt: skip
add_figure("fig15_cell_conditioning", "cell_conditioning", cell_conditioning_figure, fits=cell_conditioning_fits,
           title="λ_min(K₀)/m and the condition number against L for every cell",
           caption="""λ_min(K₀)/m (left) and λ_max/λ_min (right) of the empirical kernel at initialization against
    the sequence length L, log-log, per model: the paper's relu Elman RNN (its parameterization), a tanh
    Elman RNN, a GRU and an LSTM (PyTorch's equations, the standard parameterization, K/m the normalized
    kernel), and two stacked relu Elman layers; points are seeds, the kernel of the first L steps of
    the same sequences. Dashed: the limit Θ (ntk_rnn.limit_ntk; for the GRU and LSTM a Monte Carlo estimate,
    docs/theory.md §15, whose λ_min moves by 1–2% between draws), median over seeds. Tested: that the
    paper's polynomial-in-L conditioning, on which its convergence proof rests, is not special to the relu
    Elman RNN, and belongs to the limit, not the finite width. The table gives per model the log-log slope
    in L and the rate per step of log λ with 95% intervals, for K₀/m and Θ (*_limit).""")  # fmt: skip
add_study("cell_lazy", cell_lazy_table, title="The lazy regime for every cell: kernel drift and the linearization gap",
          quick=CellLazyConfig(models=("gru", "lstm"), widths=(64, 256), seeds=(0, 1), steps=50),
          full=CellLazyConfig(models=(*QUICK_MODELS, "elman-relu-2layer"), widths=WIDTHS_FULL, seeds=SEEDS_FULL,
                              steps=200))  # fmt: skip
add_figure("fig16_cell_lazy_regime", "cell_lazy", cell_lazy_figure, fits=cell_lazy_fits,
           title="The lazy regime for every cell",
           caption="""After full-batch GD at η = c/λ_max(K₀) for a fixed number of steps (the same training time
    in the kernel's units at every width), the relative kernel drift ‖K_T − K₀‖_F/‖K₀‖_F and the gap
    between the true network and its linearization trained side by side, relative to how far the
    outputs moved, ‖f_true − f_lin‖/‖f_true − f₀‖, on train and test sequences, against width, log-log,
    per model, seeds as points, with fitted slopes and 95% intervals. Tested: does the lazy regime hold
    for GRU and LSTM, and at what rate? In the lazy regime every quantity falls like m^(−1/2), as it does
    for the Elman RNN (docs/theory.md §5); a slope near 0 would mean the gated cells leave the kernel
    regime.""")  # fmt: skip
add_study("cell_spread", cell_spread_table,
          title="Concentration of K_0/m: the spread between seeds and the distance to the limit",
          quick=CellSpreadConfig(models=("elman-relu", "gru", "lstm"), widths=CELL_WIDTHS_QUICK, seeds=SEEDS_QUICK),
          full=CellSpreadConfig(models=(*QUICK_MODELS, "elman-relu-2layer"), widths=WIDTHS_FULL,
                                seeds=SEEDS_FULL, limit_samples=2**22, limit_replicates=32))  # fmt: skip
add_figure("fig17_cell_spread", "cell_spread", cell_spread_figure, fits=cell_spread_fits,
           title="K₀/m concentrates for every cell: the spread between seeds and the distance to the limit",
           caption="""Left: the relative Frobenius distance between the kernels K₀/m of two initializations on the
    same sequences, ‖K_s/m − K_s'/m‖_F / mean ‖K/m‖_F, against width, log-log, per model, seed pairs as
    points, with fitted slopes and 95% intervals. Right: the distance ‖K_s/m − Θ‖_F/‖Θ‖_F to the limit Θ
    (ntk_rnn.limit_ntk; exact for Elman, a Monte Carlo estimate for the GRU and LSTM, docs/theory.md §15,
    whose relative standard error is drawn dotted: a distance near it would be the estimate's noise), seeds
    as points, with fits, beside the spread/√2 (hollow), which it equals when K/m is Θ plus independent noise.
    Tested: that every cell's kernel converges to its limit at the rate m^(−1/2), and that the limit-free
    spread tracks that distance. The table gives per model each quantity's rate, its smallest value and the
    limit's relative standard error.""")  # fmt: skip

add_study("width_fluctuations", fluctuation_table,
          title="Finite-width fluctuations of K_0/m over the width m and the length L",
          quick=FluctuationConfig(widths=WIDTHS_QUICK, lengths=(2, 4, 8, 16), seeds=(0, 1, 2, 3, 4), ns=(8,)),
          full=FluctuationConfig(widths=WIDTHS_FULL, lengths=(2, 4, 8, 16, 32), seeds=tuple(range(8)), ns=(4, 8, 16),
                                 deltas=(0.25, 0.5)))  # fmt: skip
add_figure("fig18_width_fluctuations", "width_fluctuations", fluctuation_figure, fits=fluctuation_fits,
           title="How far K₀/m is from its limit, over (m, L)",
           caption="""Left: the median over seeds of ‖K₀/m − Θ‖_F/‖Θ‖_F, the empirical kernel of the relu paper
    model against its infinite-width limit Θ on the same n = 8 sequences, over the width m and the
    length L (the kernel of the first L steps of the same sequences). Middle: the medians against L/m,
    with bars from the 10% to the 90% quantile over seeds, law A fitted per L (dotted) and law B (black).
    Right: the same for the spread between two seeds' kernels. The distances are heavy-tailed at large
    L/m (single seeds far above the median), so medians are fitted, not means. Tested: the width the
    paper needs grows with L (m ≥ C ϱ^C, ϱ ∝ nL/δ, C unstated) — how fast does the kernel's error grow
    with L at fixed m? Two laws compete on log d: (A) d = C L^a m^(−b), which depends on L/m only if
    a = b (the table's a_plus_e_m, the exponent of m at fixed L/m, is then 0), and (B) the feed-forward
    ReLU result of Hanin and Nica (2019), d² ∝ exp(cL/m) − 1. The table gives a, b, c with 95%
    intervals, each law's residual sum of squares and AIC, and marks the lower AIC. At the quick sizes
    A wins and a > b: the error grows faster in L than it falls in m, so L/m alone does not set it,
    and B's c is undetermined (cL/m stays small, where B is the power law a = b = 1/2).""")  # fmt: skip
add_study("width_requirement", requirement_table,
          title="The width requirement m* by bisection over widths, against L, n and delta",
          quick=RequirementConfig(lengths=(2, 4, 8), ns=(4, 8), deltas=(0.25, 0.5), train_lengths=(2, 3, 4, 6),
                                  train_ns=(4,), train_deltas=(0.5,), seeds=tuple(range(10)), cap=512, train_cap=256,
                                  per_octave=2),
          full=RequirementConfig(lengths=(2, 4, 8, 16), ns=(4, 8, 16), deltas=(0.125, 0.25, 0.5),
                                 train_lengths=(2, 4, 8), train_ns=(4,), train_deltas=(0.25, 0.5),
                                 seeds=tuple(range(20)), cap=2048, train_cap=512, per_octave=4,
                                 max_steps=3000))  # fmt: skip
add_figure("fig19_width_requirement", "width_requirement", requirement_figure, fits=requirement_fits,
           title="The smallest width of the kernel regime, m*, against L, n and δ",
           caption="""The smallest width m* (bisection on the grid m = 2^(k/q) up to a cap, the cap checked first;
    open triangles: the cap failed, m* > cap) at which (left, "spectrum") λ_min(K₀)/m lies within a
    factor 2 of the limit's λ_min(Θ) for at least 90% of the seeds, and (right, "training") GD at
    η = 1/λ_max(K₀) brings the true network to 10⁻³ of its initial loss within the step cap, at a step T
    where it is within 10% of the linearized model at T (‖f_true − f_lin‖ ≤ 0.1 ‖f_true − f₀‖), for at
    least 90% of the seeds; grey guides: m* ∝ L and ∝ L² through the shortest L's median; data
    with first tokens exactly δ apart and shared later tokens. The
    widths of one seed are nested blocks of one draw, so the criterion varies smoothly with m; the
    bisection assumes it is monotone in m, which at these seed counts holds only roughly (m* moves by a
    grid step or two between configurations). Tested: the paper's width requirement m ≥ poly(n, L, 1/δ):
    its degree is unstated, and its proofs use ϱ^C with a large C (e.g. ‖W_t − W₀‖_F ≤ ϱ^50/√m). The
    table gives the fitted m* ~ L^a n^b δ^(−c) over the uncensored points with 95% intervals, and per row
    the fraction of seeds passing at the cap and (training) the fraction whose true GD needs more than the
    step cap, a censoring by steps rather than by width. At the quick sizes the exponents are small
    (δ's the clearest, about 1), nowhere near a large power; the intervals of a and b include 0, so the
    data cannot decide the L and n dependence. The training m* grows with L (11 at L = 2, 32 at L = 3
    and 4) and at L = 6 is censored by steps, not width: at the cap 2 of the 10 seeds need more than the
    2000-step cap, so three points cannot fit a law.""")  # fmt: skip
add_study("width_rate", rate_table, title="GD steps to 1e-3 of the initial loss against delta and n, two step sizes",
          quick=RateConfig(deltas=(0.1, 0.2, 0.4), ns=(4, 8, 16), seeds=(0, 1, 2), width=256, train_max_steps=800),
          full=RateConfig(deltas=(0.05, 0.1, 0.2, 0.4), ns=(4, 8, 16, 32), seeds=(0, 1, 2, 3, 4), width=1024,
                          train_max_steps=2000))  # fmt: skip
add_figure("fig20_width_rate", "width_rate", rate_figure, fits=rate_fits,
           title="GD steps to reach ε against the separation δ and the sample count n",
           caption="""The number of full-batch GD steps T after which the linearized model's loss is 10⁻³ of its
    initial value (from K₀'s eigendecomposition, exact for the linearized dynamics), against the
    separation δ of the first tokens (later tokens shared), log-log, per n, seeds as points, medians as
    lines, at one width past m*; left: η = 1/λ_max(K₀); right: the paper's η = κδ/m (Thm 1's δ/(ρ⁴⁴m)
    with ρ⁴⁴ absorbed into κ, chosen as 1/max over the grid of δλ_max(Θ) so the least stable point has
    ηλ_max ≈ 1). Stars: the true network trained T steps at η = 1/λ_max; the table gives its loss ratio
    and its gap to the linearized outputs. Tested: Thm 1's T ~ ρ^59 δ^(−2) log(1/ε), whose δ-dependence
    the paper calls tightened. The table fits T ~ δ^(−p) n^q with 95% intervals beside the paper's p = 2.
    With η = 1/λ_max, T follows the condition number and p is below 2; with η ∝ δ/m the step itself
    shrinks like δ, so p is about one more, above 2 at the quick sizes: λ_min(K₀)/m falls faster than δ
    here (Thm 3's gradient bound has λ_min ≳ δm/ρ¹⁴), at a fixed width that for the smallest δ may be
    below the paper's requirement. The true network, trained the linearized T steps, ends at a loss a few
    times 10⁻³ of the initial one and within about 5% of the linearized outputs: the closed-form T is the
    true network's up to a small factor at these points.""")  # fmt: skip
add_figure("fig21_lemmas_vs_width", "perturbation", perturbation_width_figure, fits=perturbation_slice_fits,
           title="The perturbation lemmas against the width m at fixed ω",
           caption=PERTURBATION_CAPTION + """
    Here: each measure against the width m at the ω of the grid closest to 1, per direction, fitted
    exponents in m in the legends, the paper's as grey dotted guides. The table gives the one-variable
    exponents: in ω at the largest width and in m at that ω, with 95% intervals.""")  # fmt: skip
add_study("classification", classification_table,
          title="UCR/UEA time series: RNN kernels, linearized and trained RNNs, published baselines",
          quick=ClassificationConfig(datasets=("ItalyPowerDemand", "GunPoint", "BasicMotions", "JapaneseVowels"),
                                     finite_datasets=("ItalyPowerDemand",), widths=(16, 64, 128), steps=500,
                                     sigma_w2s=(0.5, 1.0)),
          full=ClassificationConfig(finite_datasets=("ArrowHead", "BasicMotions", "GunPoint", "ItalyPowerDemand",
                                                     "JapaneseVowels"), widths=(32, 128, 512), seeds=(0, 1, 2),
                                    steps=2000))  # fmt: skip
add_figure("fig22_classification_accuracy", "classification", accuracy_figure, fits=accuracy_fits,
           title="Test accuracy on UCR/UEA datasets beside the published baselines",
           caption=ACCURACY_CAPTION)  # fmt: skip
add_figure("fig23_classification_agreement", "classification", agreement_figure, fits=agreement_fits,
           title="The trained RNN against its linearization on real sequences, against width",
           caption=AGREEMENT_CAPTION)  # fmt: skip
