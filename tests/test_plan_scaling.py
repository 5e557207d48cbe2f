"""Scaling laws against published figures (Hoffmann 2022, Besiroglu 2024, Kaplan 2020, Sardana 2024,
Touvron 2023), the Huber/L-BFGS fitter and the early-curve extrapolation.

Tolerances, and why they differ by source:
- Hoffmann Table 3 is *Approach 1* (envelope of training curves).  The parametric *Approach 3* law
  with the constants printed in the paper has N_opt ∝ C^0.45 instead of C^0.50 and puts the optimum at
  fewer parameters: 0.77x the table's N at 1.9e19 FLOPs falling to 0.42x at 9.9e24 (the 10B row comes
  out at 5.7B params on 362B tokens).  Besiroglu et al. 2024 traced this to the published fit; their
  refit agrees with Approach 1 to within ~11% on every row.  So rows are checked at 15% against the
  Besiroglu law and only within a factor ~2.5 (same direction, smaller N) against Approach 3.
"""

import json

import numpy as np
import pytest

from scaling.plan import beyond_compute_optimal, cheapest_pick_at_loss, make_plan
from scaling.laws import (CHINCHILLA_MODEL, GOPHER_MODEL, HOFFMANN_TABLE3, PRESETS, ChinchillaLaw, KaplanLaw,
                           compute_for_params, compute_optimal_numeric, extrapolate, fit_law, load_law)

CHIN, BESI = PRESETS["chinchilla"], PRESETS["besiroglu"]


def test_table3_rows_are_approach1_with_about_20_tokens_per_parameter():
    for N, D, C in HOFFMANN_TABLE3:
        assert 6 * N * D == pytest.approx(C, rel=0.05)  # 67B row: 6.03e23 vs 5.76e23 (N rounded)
        assert 19.5 <= D / N <= 23.0
    assert CHINCHILLA_MODEL[1] / CHINCHILLA_MODEL[0] == pytest.approx(20.0)


@pytest.mark.parametrize("law", [CHIN, BESI], ids=["chinchilla", "besiroglu"])
def test_analytic_compute_optimum_matches_numerical_minimum(law):
    for C in (1e18, 1.23e22, 1e25):
        N, D = law.compute_optimal(C)
        n_num, d_num = compute_optimal_numeric(law, C)
        assert 6 * N * D == pytest.approx(C, rel=1e-12)
        assert n_num == pytest.approx(N, rel=1e-4) and d_num == pytest.approx(D, rel=1e-4)
        # Any other split of the same compute is worse.
        for f in (0.5, 2.0):
            assert law.loss(N * f, D / f) > law.loss(N, D)


def test_besiroglu_refit_reproduces_table3_and_20_tokens_per_param():
    for N, D, C in HOFFMANN_TABLE3:
        n, d = BESI.compute_optimal(C)
        assert n == pytest.approx(N, rel=0.15), (C, n, N)
        assert d == pytest.approx(D, rel=0.15), (C, d, D)
        assert 15 <= d / n <= 25
    n10, d10 = BESI.compute_optimal(1.23e22)  # the 10B <-> 205B <-> 1.23e22 row
    assert n10 == pytest.approx(10e9, rel=0.03) and d10 == pytest.approx(205.1e9, rel=0.03)


def test_chinchilla_approach3_exponents_and_its_gap_to_table3():
    # Hoffmann Table 2: Approach 3 gives a = 0.46, b = 0.54 (we hold the rounded constants).
    assert CHIN.a == pytest.approx(0.46, abs=0.01) and CHIN.b == pytest.approx(0.54, abs=0.01)
    assert BESI.a == pytest.approx(0.51, abs=0.01)
    ratios = []
    for N, D, C in HOFFMANN_TABLE3:
        n, d = CHIN.compute_optimal(C)
        ratios.append(n / N)
        assert 1 / 2.5 < n / N < 1.0  # smaller models, as the paper's Figure 1 shows for Approach 3
        assert d > D
    assert ratios == sorted(ratios, reverse=True)  # the gap widens with compute (0.45 < 0.50)
    n10, d10 = CHIN.compute_optimal(1.23e22)
    assert 5e9 < n10 < 6.5e9 and 3.2e11 < d10 < 4.0e11


def test_gopher_should_have_been_four_times_smaller_on_four_times_more_data():
    c_gopher = 6 * GOPHER_MODEL[0] * GOPHER_MODEL[1]
    c_chin = 6 * CHINCHILLA_MODEL[0] * CHINCHILLA_MODEL[1]
    assert c_chin == pytest.approx(c_gopher, rel=0.2)  # "the same compute budget"
    n, d = BESI.compute_optimal(c_gopher)
    assert 3.0 < GOPHER_MODEL[0] / n < 5.0 and 3.0 < d / GOPHER_MODEL[1] < 5.0
    n3, _ = CHIN.compute_optimal(c_gopher)
    assert GOPHER_MODEL[0] / n3 > 4.0  # Approach 3 says even smaller
    for law in (CHIN, BESI):
        assert law.loss(*CHINCHILLA_MODEL) < law.loss(*GOPHER_MODEL)


@pytest.mark.parametrize("law", [CHIN, BESI], ids=["chinchilla", "besiroglu"])
def test_sardana_inference_aware_pick_is_smaller_longer_trained_and_cheaper(law):
    target = law.loss(*law.compute_optimal(1e23))
    base = cheapest_pick_at_loss(law, target, 0.0)
    n_opt, _ = law.compute_optimal(base.train_flops)  # numeric at-loss optimum == analytic frontier
    assert base.N == pytest.approx(n_opt, rel=1e-4)
    previous_n = base.N
    for inference in (1e11, 1e12, 1e13, 1e14):
        plan = make_plan(law, target_loss=target, inference_tokens=inference)
        opt, aware = plan.compute_optimal, plan.inference_aware
        assert opt.loss == pytest.approx(target, abs=1e-9) and aware.loss == pytest.approx(target, abs=1e-9)
        assert aware.N < opt.N and aware.D > opt.D
        assert aware.train_flops >= opt.train_flops
        assert aware.total_flops < opt.total_flops and plan.saving > 0
        assert aware.N < previous_n  # more inference -> smaller model
        previous_n = aware.N
    tiny = make_plan(law, target_loss=target, inference_tokens=1.0)
    assert tiny.inference_aware.N == pytest.approx(tiny.compute_optimal.N, rel=1e-3)


def test_llama_7b_is_trained_far_beyond_its_compute_optimal_tokens():
    multiples = {}
    for name, law in (("besiroglu", BESI), ("chinchilla", CHIN)):
        d_opt, multiple = beyond_compute_optimal(law, 6.7e9, 1e12)
        assert law.compute_optimal(compute_for_params(law, 6.7e9))[0] == pytest.approx(6.7e9, rel=1e-6)
        assert law.loss(6.7e9, 1e12) < law.loss(6.7e9, d_opt)  # it keeps improving after the optimum
        multiples[name] = multiple
    approach1 = 1e12 / (20 * 6.7e9)
    print(f"\nLLaMA-7B's 1T tokens = {approach1:.1f}x Approach-1 (20 tok/param), "
          f"{multiples['besiroglu']:.1f}x Besiroglu, {multiples['chinchilla']:.1f}x Chinchilla-Approach-3 "
          f"compute-optimal tokens for 6.7B params")
    assert 5.0 < multiples["besiroglu"] < 9.0
    assert 1.5 < multiples["chinchilla"] < 3.0


def test_kaplan_law_shapes():
    k = KaplanLaw()
    assert k.loss_n(8.8e13) == pytest.approx(1.0) and k.loss_d(5.4e13) == pytest.approx(1.0)
    assert k.loss(1e9, 1e30) == pytest.approx(float(k.loss_n(1e9)), rel=1e-6)  # data-unlimited limit
    assert k.loss(1e30, 1e10) == pytest.approx(float(k.loss_d(1e10)), rel=1e-6)
    n1, _ = k.compute_optimal(1e21)
    n2, _ = k.compute_optimal(1e22)
    assert n2 / n1 == pytest.approx(10**0.73)
    assert BESI.compute_optimal(1e22)[0] / BESI.compute_optimal(1e21)[0] < n2 / n1  # Chinchilla: ~C^0.5
    D = k.tokens_for_loss(1e9, 3.0)
    assert k.loss(1e9, D) == pytest.approx(3.0)


def _synthetic_runs(law, noise, seed=1):
    NN, DD = np.meshgrid(np.logspace(7, 10, 6), np.logspace(9, 12, 6))
    NN, DD = NN.ravel(), DD.ravel()
    L = law.loss(NN, DD) * np.exp(np.random.default_rng(seed).normal(0.0, noise, NN.size))
    return NN, DD, L


def test_fit_recovers_known_constants_exactly_without_noise():
    fit = fit_law(*_synthetic_runs(BESI, 0.0))
    assert fit.at_bounds == []
    for key in ("E", "A", "B", "alpha", "beta"):
        assert getattr(fit.law, key) == pytest.approx(getattr(BESI, key), rel=1e-4), key


def test_fit_with_noise_recovers_constants_inside_bootstrap_intervals(tmp_path):
    truth = ChinchillaLaw(E=1.9, A=300.0, B=1500.0, alpha=0.32, beta=0.34)
    fit = fit_law(*_synthetic_runs(truth, 0.002), bootstrap=40, seed=0)
    assert fit.law.alpha == pytest.approx(truth.alpha, rel=0.04)
    assert fit.law.beta == pytest.approx(truth.beta, rel=0.04)
    assert fit.law.E == pytest.approx(truth.E, rel=0.01)
    assert fit.n_bootstrap == 40
    for key in ("E", "alpha", "beta"):
        lo, hi = fit.ci[key]
        assert lo < getattr(fit.law, key) < hi
        assert lo < getattr(truth, key) < hi, (key, lo, hi)
    # Round trip through the JSON that sweep.py writes and `--law fitted:PATH` reads.
    path = tmp_path / "scaling.json"
    path.write_text(json.dumps(fit.to_dict()))
    loaded = load_law(f"fitted:{path}")
    assert loaded.alpha == fit.law.alpha and loaded.B == fit.law.B


def test_fit_and_law_loading_reject_bad_input(tmp_path):
    with pytest.raises(ValueError, match="at least 5"):
        fit_law([1e7, 1e8], [1e9, 1e9], [3.0, 2.9])
    with pytest.raises(ValueError, match="finite and positive"):
        fit_law([1e7] * 5, [1e9] * 5, [3.0, 2.9, float("nan"), 2.0, 2.1])
    bad = tmp_path / "bad.json"
    bad.write_text('{"E": 1.0}')
    with pytest.raises(ValueError, match="lacks constants"):
        load_law(f"fitted:{bad}")
    with pytest.raises(ValueError, match="unknown law"):
        load_law("gpt5")


def test_extrapolation_from_the_first_30_percent_of_a_power_law_curve():
    steps = np.arange(10, 2001, 10, dtype=float)
    clean = 2.0 + 6.0 * steps**-0.45
    exact = extrapolate(steps, clean, fraction=0.3)
    assert exact.predicted == pytest.approx(clean[-1], rel=1e-5)
    assert exact.fit_until_step <= 0.3 * 2000 + 10
    noisy = clean * np.exp(np.random.default_rng(0).normal(0.0, 0.003, steps.size))
    est = extrapolate(steps, noisy, fraction=0.3)
    assert est.relative_error < 0.01
    assert abs(est.predicted - clean[-1]) / clean[-1] < 0.01
    assert est.loss_at(steps[-1]) == pytest.approx(est.predicted)
    # A fit on the head alone, extrapolated naively as a constant, would be far off: the law matters.
    assert abs(noisy[: len(steps) * 3 // 10].min() - clean[-1]) / clean[-1] > 0.03
    with pytest.raises(ValueError, match="at least 4 points"):
        extrapolate(steps[:5], clean[:5], fraction=0.3)
