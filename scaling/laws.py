"""Neural scaling laws as small objects, plus the fitting and extrapolation used to build new ones.

Why: the planner (scaling/plan.py) and the sweep (scaling/sweep.py) must ask the same questions of a
published law and of a law fitted on our own corpus -- "what loss does N parameters on D tokens
reach?", "how should a compute budget C be split?" -- so laws share one interface:
``loss(N, D)`` (numpy-broadcasting) and ``compute_optimal(C) -> (N, D)``.

Sources (see docs / FACTS): Hoffmann et al. 2022 (Chinchilla, Approach 3 parametric fit and the
Approach 1 Table 3), Besiroglu et al. 2024 (the refit of Approach 3), Kaplan et al. 2020.
Training compute is C = 6·N·D throughout.

Fitting follows Hoffmann et al. Appendix D.2: the Huber loss (delta = 1e-3) between
log L_hat = LSE(a - alpha·log N, b - beta·log D, e) and log L, minimised by L-BFGS from a grid of
starts; A = e^a, B = e^b, E = e^e.  Only numpy + scipy: train/ must not import the data pipeline.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from scipy import optimize
from scipy.special import logsumexp

FLOPS_PER_PARAM_TOKEN = 6.0  # forward + backward, C = 6·N·D (Kaplan 2020, Hoffmann 2022)
PF_DAY = 1e15 * 86400.0  # Kaplan's compute unit, in FLOPs


# --------------------------------------------------------------------------------------------
# Laws
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChinchillaLaw:
    """L(N, D) = E + A / N^alpha + B / D^beta  (Hoffmann et al. 2022, eq. 2)."""

    E: float
    A: float
    B: float
    alpha: float
    beta: float
    name: str = "custom"

    def loss(self, N, D):
        N = np.asarray(N, dtype=float)
        D = np.asarray(D, dtype=float)
        out = self.E + self.A / N**self.alpha + self.B / D**self.beta
        return float(out) if out.ndim == 0 else out

    # Compute-optimal frontier, analytic (Hoffmann eq. 4):
    #   N_opt = G (C/6)^a,  D_opt = G^-1 (C/6)^b,  G = (alpha A / (beta B))^(1/(alpha+beta)),
    #   a = beta/(alpha+beta),  b = alpha/(alpha+beta).
    @property
    def a(self) -> float:
        """Exponent of N_opt ∝ C^a."""
        return self.beta / (self.alpha + self.beta)

    @property
    def b(self) -> float:
        """Exponent of D_opt ∝ C^b."""
        return self.alpha / (self.alpha + self.beta)

    @property
    def G(self) -> float:
        return (self.alpha * self.A / (self.beta * self.B)) ** (1.0 / (self.alpha + self.beta))

    def compute_optimal(self, C: float) -> tuple[float, float]:
        """(N_opt, D_opt) minimising L subject to 6·N·D = C."""
        x = C / FLOPS_PER_PARAM_TOKEN
        return self.G * x**self.a, x**self.b / self.G

    def tokens_for_loss(self, N, target_loss: float):
        """Training tokens D with L(N, D) = target_loss; inf where N alone cannot reach it."""
        N = np.asarray(N, dtype=float)
        gap = target_loss - self.E - self.A / N**self.alpha
        with np.errstate(divide="ignore", invalid="ignore"):
            D = np.where(gap > 0, (self.B / np.where(gap > 0, gap, 1.0)) ** (1.0 / self.beta), np.inf)
        return float(D) if D.ndim == 0 else D

    def min_params_for_loss(self, target_loss: float) -> float:
        """Smallest N that can reach target_loss with infinite data (the asymptote of D(N))."""
        if target_loss <= self.E:
            raise ValueError(
                f"target loss {target_loss:g} is at or below the irreducible loss E={self.E:g} of law {self.name!r}"
            )
        return (self.A / (target_loss - self.E)) ** (1.0 / self.alpha)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class KaplanLaw:
    """Kaplan et al. 2020: L(N) = (Nc/N)^aN, L(D) = (Dc/D)^aD, joint L(N, D) of their eq. 1.5.

    N counts non-embedding parameters and the loss is in nats on WebText2 with GPT-2's tokenizer, so
    values are NOT comparable with Chinchilla-law losses; this object is here for the exponents and
    for the historical contrast (N_opt ∝ C^0.73 against Chinchilla's ≈ C^0.5).
    """

    Nc: float = 8.8e13
    alpha_N: float = 0.076
    Dc: float = 5.4e13
    alpha_D: float = 0.095
    n_opt_coeff: float = 1.3e9  # N_opt = 1.3e9 · (C / PF-day)^0.73 (Kaplan fig. 14)
    n_opt_exp: float = 0.73
    name: str = "kaplan"

    def loss_n(self, N):
        return (self.Nc / np.asarray(N, dtype=float)) ** self.alpha_N

    def loss_d(self, D):
        return (self.Dc / np.asarray(D, dtype=float)) ** self.alpha_D

    def loss(self, N, D):
        N = np.asarray(N, dtype=float)
        D = np.asarray(D, dtype=float)
        out = ((self.Nc / N) ** (self.alpha_N / self.alpha_D) + self.Dc / D) ** self.alpha_D
        return float(out) if out.ndim == 0 else out

    def compute_optimal(self, C: float) -> tuple[float, float]:
        """Kaplan's fitted compute-efficient size; D follows from C = 6·N·D."""
        N = self.n_opt_coeff * (C / PF_DAY) ** self.n_opt_exp
        return N, C / (FLOPS_PER_PARAM_TOKEN * N)

    def tokens_for_loss(self, N, target_loss: float):
        N = np.asarray(N, dtype=float)
        gap = target_loss ** (1.0 / self.alpha_D) - (self.Nc / N) ** (self.alpha_N / self.alpha_D)
        with np.errstate(divide="ignore", invalid="ignore"):
            D = np.where(gap > 0, self.Dc / np.where(gap > 0, gap, 1.0), np.inf)
        return float(D) if D.ndim == 0 else D

    def min_params_for_loss(self, target_loss: float) -> float:
        if target_loss <= 0:
            raise ValueError(f"target loss {target_loss:g} must be positive for the Kaplan law")
        return self.Nc / target_loss ** (1.0 / self.alpha_N)


PRESETS: dict[str, ChinchillaLaw] = {
    # Hoffmann et al. 2022, Approach 3 (rounded constants as printed in the paper's eq. 10).
    "chinchilla": ChinchillaLaw(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28, name="chinchilla"),
    # Besiroglu et al. 2024, "Chinchilla Scaling: A replication attempt", their refit of Approach 3.
    "besiroglu": ChinchillaLaw(E=1.8172, A=482.01, B=2085.43, alpha=0.3478, beta=0.3658, name="besiroglu"),
}

# The planner's default. Hoffmann et al.'s printed Approach 3 constants put the optimum for 1.2e22 FLOPs
# at 5.7B parameters on 362B tokens, while their own Table 3 (Approach 1), and the LLaMA paper citing
# them, say 10B on ~200B; Besiroglu et al. traced the gap to the published fit, and their refit gives
# 10.1B on 204B. So the default is the refit; `--law chinchilla` keeps the printed constants.
DEFAULT_LAW = "besiroglu"
WHY = {
    "besiroglu": "Besiroglu et al. 2024's refit of Hoffmann et al.'s Approach 3: it reproduces the paper's "
                 "10B params on ~200B tokens for ~1.2e22 FLOPs (Table 3, cited by LLaMA)",
    "chinchilla": "Hoffmann et al. 2022's Approach 3 constants as printed: at ~1.2e22 FLOPs they give 5.7B "
                  "params on 362B tokens, not the paper's own 10B on ~200B (Besiroglu et al. 2024)",
    "kaplan": "Kaplan et al. 2020: non-embedding parameters, WebText2 losses; predates the compute-optimal "
              "~20 tokens/parameter",
}


def why_law(spec: str) -> str:
    """One line on what the law is and why (or when) to trust it; the default says it is the default."""
    if spec.startswith("fitted:"):
        reason = "fitted on this corpus by `python -m scaling.sweep`"
    else:
        reason = WHY.get(spec, "")
    return f"default law, {reason}" if spec == DEFAULT_LAW else reason


LAW_KEYS = ("E", "A", "B", "alpha", "beta")


def load_law(spec: str):
    """'chinchilla' | 'besiroglu' | 'kaplan' | 'fitted:PATH' (JSON with E, A, B, alpha, beta,
    at the top level or under "law", as scaling/sweep.py writes it)."""
    if spec in PRESETS:
        return PRESETS[spec]
    if spec == "kaplan":
        return KaplanLaw()
    if spec.startswith("fitted:"):
        path = Path(spec[len("fitted:"):])
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise ValueError(f"fitted law file not found: {path}") from None
        except json.JSONDecodeError as e:
            raise ValueError(f"fitted law file {path} is not valid JSON: {e}") from None
        data = data.get("law", data) if isinstance(data, dict) else data
        missing = [k for k in LAW_KEYS if not isinstance(data, dict) or k not in data]
        if missing:
            raise ValueError(f"fitted law file {path} lacks constants {missing} (need {list(LAW_KEYS)})")
        return ChinchillaLaw(**{k: float(data[k]) for k in LAW_KEYS}, name=f"fitted:{path}")
    raise ValueError(f"unknown law {spec!r}: use chinchilla, besiroglu, kaplan or fitted:PATH")


def compute_optimal_numeric(law, C: float, n_lo: float = 1e3, n_hi: float = 1e15) -> tuple[float, float]:
    """Minimise law.loss(N, C/(6N)) over log N -- works for any law, checks the analytic form."""
    lo, hi = math.log(n_lo), math.log(min(n_hi, C / FLOPS_PER_PARAM_TOKEN))
    res = optimize.minimize_scalar(
        lambda x: law.loss(math.exp(x), C / (FLOPS_PER_PARAM_TOKEN * math.exp(x))),
        bounds=(lo, hi), method="bounded", options={"xatol": 1e-10},
    )
    N = math.exp(res.x)
    return N, C / (FLOPS_PER_PARAM_TOKEN * N)


def compute_for_params(law, N: float) -> float:
    """The compute C whose compute-optimal model has N parameters (inverts N_opt(C) by bisection
    in log C; N_opt(C) is monotone for every law here)."""
    lo, hi = math.log(1e6), math.log(1e40)
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if law.compute_optimal(math.exp(mid))[0] < N:
            lo = mid
        else:
            hi = mid
    return math.exp(0.5 * (lo + hi))


# Hoffmann et al. 2022, Table 3 (Approach 1: minimum over training curves for fixed FLOPs).
# (parameters, training tokens, training FLOPs).  Kept separate from the parametric laws: it is a
# different estimation method and disagrees with the Approach 3 constants above (see tests/plan).
HOFFMANN_TABLE3 = (
    (400e6, 8.0e9, 1.92e19),
    (1e9, 20.2e9, 1.21e20),
    (10e9, 205.1e9, 1.23e22),
    (67e9, 1.5e12, 5.76e23),
    (175e9, 3.7e12, 3.85e24),
    (280e9, 5.9e12, 9.90e24),
)
CHINCHILLA_MODEL = (70e9, 1.4e12)  # what Hoffmann et al. trained at Gopher's budget
GOPHER_MODEL = (280e9, 300e9)


# --------------------------------------------------------------------------------------------
# Fitting L(N, D) to observed losses
# --------------------------------------------------------------------------------------------

HOFFMANN_GRID = {  # Appendix D.2 initialisation grid (a = log A, b = log B, e = log E)
    "alpha": np.arange(0.0, 2.01, 0.5),
    "beta": np.arange(0.0, 2.01, 0.5),
    "e": np.arange(-1.0, 1.01, 0.5),
    "a": np.arange(0.0, 25.1, 5.0),
    "b": np.arange(0.0, 25.1, 5.0),
}


@dataclass
class LawFit:
    """A fitted law with its objective, and (after bootstrapping) 95% percentile intervals."""

    law: ChinchillaLaw
    objective: float
    n_points: int
    n_starts: int
    ci: dict[str, tuple[float, float]] = field(default_factory=dict)
    n_bootstrap: int = 0
    at_bounds: list[str] = field(default_factory=list)  # constants pinned to FIT_BOUNDS: not identified

    def to_dict(self) -> dict:
        return {
            "law": {k: getattr(self.law, k) for k in LAW_KEYS},
            "objective": self.objective,
            "n_points": self.n_points,
            "n_starts": self.n_starts,
            "n_bootstrap": self.n_bootstrap,
            "ci95": {k: list(v) for k, v in self.ci.items()},
            "at_bounds": list(self.at_bounds),
        }


def _huber(r: np.ndarray, delta: float) -> np.ndarray:
    ar = np.abs(r)
    return np.where(ar <= delta, 0.5 * r * r, delta * (ar - 0.5 * delta))


def _objective_and_grad(theta, logN, logD, logL, delta):
    """Huber objective on log L and its analytic gradient; the log-sum-exp is written out
    (rather than scipy.special.logsumexp) because L-BFGS calls this thousands of times."""
    a, b, e, alpha, beta = theta
    t0 = a - alpha * logN
    t1 = b - beta * logD
    m = np.maximum(np.maximum(t0, t1), e)
    x0, x1, x2 = np.exp(t0 - m), np.exp(t1 - m), np.exp(e - m)
    total = x0 + x1 + x2
    r = m + np.log(total) - logL
    psi = np.clip(r, -delta, delta) / total  # Huber derivative times the softmax denominator
    g0, g1 = psi * x0, psi * x1
    grad = np.array([g0.sum(), g1.sum(), (psi * x2).sum(), -(g0 @ logN), -(g1 @ logD)])
    return float(_huber(r, delta).sum()), grad


def _grid_starts(logN, logD, logL, delta, n_best):
    """Evaluate the objective at every grid point (vectorised) and keep the n_best."""
    g = HOFFMANN_GRID
    mesh = np.array(np.meshgrid(g["a"], g["b"], g["e"], g["alpha"], g["beta"], indexing="ij"))
    starts = mesh.reshape(5, -1).T  # (n_grid, 5): a, b, e, alpha, beta
    terms = np.stack([
        starts[:, :1] - starts[:, 3:4] * logN[None, :],
        starts[:, 1:2] - starts[:, 4:5] * logD[None, :],
        np.repeat(starts[:, 2:3], logN.size, axis=1),
    ])
    r = logsumexp(terms, axis=0) - logL[None, :]
    obj = _huber(r, delta).sum(axis=1)
    order = np.argsort(obj, kind="stable")
    return starts if n_best is None else starts[order[:n_best]]


# Box for L-BFGS-B (a, b, e, alpha, beta): wide around every published fit, but it stops ill-posed
# data (fewer distinct sizes or budgets than the law has constants) from wandering to alpha = 13,
# B = 1e39 over thousands of iterations.
FIT_BOUNDS = ((-20.0, 80.0), (-20.0, 80.0), (-10.0, 5.0), (0.0, 3.0), (0.0, 3.0))


def _lbfgs(theta0, logN, logD, logL, delta):
    return optimize.minimize(
        _objective_and_grad, theta0, args=(logN, logD, logL, delta), jac=True, method="L-BFGS-B",
        bounds=FIT_BOUNDS, options={"maxiter": 1000, "ftol": 1e-11, "gtol": 1e-9},
    )


def _best_fit(starts, logN, logD, logL, delta):
    best = None
    for theta0 in starts:
        res = _lbfgs(theta0, logN, logD, logL, delta)
        if np.all(np.isfinite(res.x)) and (best is None or res.fun < best.fun):
            best = res
    return best


def _validate_observations(N, D, L):
    N, D, L = (np.asarray(x, dtype=float).ravel() for x in (N, D, L))
    if not (N.size == D.size == L.size):
        raise ValueError(f"N, D, L must have equal lengths (got {N.size}, {D.size}, {L.size})")
    if N.size < 5:
        raise ValueError(f"need at least 5 (N, D, loss) observations to fit 5 constants, got {N.size}")
    for name, x in (("N", N), ("D", D), ("loss", L)):
        if not np.all(np.isfinite(x)) or np.any(x <= 0):
            raise ValueError(f"{name} values must be finite and positive")
    return N, D, L


def fit_law(N, D, L, delta: float = 1e-3, n_best: int | None = 8, bootstrap: int = 0,
            seed: int = 0, name: str = "fitted") -> LawFit:
    """Fit E, A, B, alpha, beta to observed final losses (Hoffmann et al. App. D.2).

    n_best: L-BFGS runs from the n_best grid points with the lowest objective (None: all 4,500,
    as in the paper; the ranking costs one vectorised pass, so n_best=8 finds the same optimum
    far faster on well-posed data).  bootstrap: number of resamples (with replacement, rows) for
    95% percentile intervals; each resample restarts L-BFGS from the full-data optimum.
    """
    N, D, L = _validate_observations(N, D, L)
    logN, logD, logL = np.log(N), np.log(D), np.log(L)
    starts = _grid_starts(logN, logD, logL, delta, n_best)
    best = _best_fit(starts, logN, logD, logL, delta)
    if best is None:
        raise ValueError("scaling-law fit failed from every starting point")
    fit = LawFit(law=_theta_to_law(best.x, name), objective=float(best.fun),
                 n_points=int(N.size), n_starts=int(len(starts)))
    for name, value, (lo, hi) in zip(("A", "B", "E", "alpha", "beta"), best.x, FIT_BOUNDS):
        if min(value - lo, hi - value) < 1e-6:
            fit.at_bounds.append(name)
    if bootstrap > 0:
        rng = np.random.default_rng(seed)
        boot_starts = best.x[None, :]  # resamples sit near the full-data optimum
        samples = []
        for _ in range(bootstrap):
            idx = rng.integers(0, N.size, N.size)
            res = _best_fit(boot_starts, logN[idx], logD[idx], logL[idx], delta)
            if res is not None:
                law = _theta_to_law(res.x, name)
                samples.append([getattr(law, k) for k in LAW_KEYS])
        arr = np.array(samples)
        fit.ci = {k: (float(np.percentile(arr[:, i], 2.5)), float(np.percentile(arr[:, i], 97.5)))
                  for i, k in enumerate(LAW_KEYS)}
        fit.n_bootstrap = len(samples)
    return fit


def _theta_to_law(theta, name) -> ChinchillaLaw:
    a, b, e, alpha, beta = (float(x) for x in theta)
    return ChinchillaLaw(E=math.exp(e), A=math.exp(a), B=math.exp(b), alpha=alpha, beta=beta, name=name)


# --------------------------------------------------------------------------------------------
# Early-curve extrapolation (Kaplan-style L(t) = a + b·t^-c)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Extrapolation:
    """Power law fitted to the head of a loss curve and its prediction at a later step."""

    a: float
    b: float
    c: float
    fit_until_step: float
    target_step: float
    predicted: float
    actual: float | None

    @property
    def relative_error(self) -> float | None:
        return None if self.actual is None else abs(self.predicted - self.actual) / self.actual

    def loss_at(self, step):
        return self.a + self.b * np.asarray(step, dtype=float) ** (-self.c)


def _power_curve(t, a, b, c):
    return a + b * t ** (-c)


def extrapolate(steps, losses, fraction: float = 0.3, target_step: float | None = None) -> Extrapolation:
    """Fit L(t) = a + b·t^-c to the first `fraction` of the curve, predict the loss at target_step
    (default: the last step).  `actual` is the observed loss there, when observed.

    Why: decide early whether a run is worth finishing.  Caveat: with a cosine schedule the tail
    drops faster than a constant-LR power law, so feed post-warmup points and expect a mild
    pessimistic bias on real runs.
    """
    steps = np.asarray(steps, dtype=float).ravel()
    losses = np.asarray(losses, dtype=float).ravel()
    if steps.size != losses.size:
        raise ValueError(f"steps and losses differ in length ({steps.size} vs {losses.size})")
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    ok = np.isfinite(steps) & np.isfinite(losses) & (steps > 0)
    steps, losses = steps[ok], losses[ok]
    order = np.argsort(steps)
    steps, losses = steps[order], losses[order]
    if steps.size == 0:
        raise ValueError("no finite points with step > 0 to extrapolate from")
    cut = steps[0] + fraction * (steps[-1] - steps[0])
    head = steps <= cut
    if head.sum() < 4:
        raise ValueError(f"need at least 4 points in the first {fraction:.0%} of the curve, got {int(head.sum())}")
    t, y = steps[head], losses[head]
    lo_a = 0.0
    hi_a = float(y.min())
    p0 = (0.9 * hi_a, max(float(y[0] - 0.9 * hi_a), 1e-6) * t[0] ** 0.5, 0.5)
    params, _ = optimize.curve_fit(
        _power_curve, t, y, p0=p0, bounds=([lo_a, 0.0, 1e-4], [hi_a, np.inf, 5.0]), maxfev=20000,
    )
    a, b, c = (float(p) for p in params)
    tgt = float(steps[-1] if target_step is None else target_step)
    observed = losses[steps == tgt]
    return Extrapolation(a=a, b=b, c=c, fit_until_step=float(t[-1]), target_step=tgt,
                         predicted=float(_power_curve(tgt, a, b, c)),
                         actual=float(observed[-1]) if observed.size else None)
