"""The early data-driven methods of chapter 3 and simple-statistics checks, with scikit-learn.

:func:`photometric_features` condenses a cutout into a handful of aggregated statistics (in the
spirit of the 9-feature vectors of Williams et al.): how bright the centre, the annulus where
arcs live and the outskirts are, how concentrated, elongated and asymmetric the light is.
:func:`shortcut_auc` asks how well a strong classifier does on those statistics alone: a sky on
which it scores near 1 would be too easy to say anything about lens finding.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.decomposition import KernelPCA
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score
from sklearn.mixture import GaussianMixture
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data
from threadpoolctl import threadpool_limits

from .preprocess import normalize

FEATURE_NAMES = (
    "centre_mean", "annulus_mean", "outer_mean", "peak", "bright_fraction",
    "bright_size", "bright_ellipticity", "asymmetry", "annulus_azimuthal_spread",
)


def photometric_features(cutouts, *, pixel_scale: float = 0.05) -> np.ndarray:
    """``(N, 9)`` aggregated statistics of normalised cutouts (see :data:`FEATURE_NAMES`)."""
    x = normalize(cutouts).astype(np.float64)
    n, h, w = x.shape
    yy, xx = np.mgrid[:h, :w]
    yy = (yy - (h - 1) / 2) * pixel_scale
    xx = (xx - (w - 1) / 2) * pixel_scale
    r = np.hypot(xx, yy)
    centre, annulus, outer = r < 0.5, (r >= 0.5) & (r < 2.5), r >= 2.5
    bright = x > 3.0
    weight = np.where(bright, x, 0.0)
    total = weight.sum(axis=(1, 2)) + 1e-9
    mx = (weight * xx).sum(axis=(1, 2)) / total
    my = (weight * yy).sum(axis=(1, 2)) / total
    dx, dy = xx - mx[:, None, None], yy - my[:, None, None]
    qxx = (weight * dx**2).sum(axis=(1, 2)) / total
    qyy = (weight * dy**2).sum(axis=(1, 2)) / total
    qxy = (weight * dx * dy).sum(axis=(1, 2)) / total
    size = np.sqrt(np.clip(qxx + qyy, 0, None))
    ellipticity = np.hypot(qxx - qyy, 2 * qxy) / (qxx + qyy + 1e-9)
    asymmetry = np.abs(x - x[:, ::-1, ::-1]).sum(axis=(1, 2)) / (np.abs(x).sum(axis=(1, 2)) + 1e-9)
    sectors = (np.arctan2(yy, xx) + np.pi) / (2 * np.pi) * 8
    sector = np.clip(sectors.astype(int), 0, 7)
    sector_means = np.stack([x[:, annulus & (sector == s)].mean(axis=1) for s in range(8)], axis=1)
    return np.column_stack([
        x[:, centre].mean(axis=1), x[:, annulus].mean(axis=1), x[:, outer].mean(axis=1),
        x.reshape(n, -1).max(axis=1), bright.reshape(n, -1).mean(axis=1), size, ellipticity,
        asymmetry, sector_means.std(axis=1),
    ])


def shortcut_auc(features: np.ndarray, labels, groups, *, n_splits: int = 3, seed: int = 0) -> np.ndarray:
    """Out-of-fold ROC AUC per fold of gradient-boosted trees on ``features``.

    Folds are grouped by ``groups`` (parent ids), so augmented copies never straddle a split.
    """
    from .splits import make_folds

    labels = np.asarray(labels)
    aucs = []
    # One OpenMP thread: on busy cores the trees' thread barriers cost 100x the work (45 s against
    # 0.24 s for 120 images on 2 shared cores), and a few features need no more.
    with threadpool_limits(limits=1, user_api="openmp"):
        for train, test in make_folds(labels, groups, n_splits, mode="grouped", seed=seed):
            model = HistGradientBoostingClassifier(random_state=seed, max_iter=200)
            model.fit(features[train], labels[train])
            aucs.append(roc_auc_score(labels[test], model.predict_proba(features[test])[:, 1]))
    return np.array(aucs)


# --------------------------------------------------------------------------------------------
# Chapter 3: the early data-driven methods, as scikit-learn estimators
# --------------------------------------------------------------------------------------------
class GaussianMixtureClassifier(ClassifierMixin, BaseEstimator):
    """Class-conditional Gaussian mixtures fitted by EM, after Williams et al. (2017).

    One mixture of ``n_components`` Gaussians per class, fitted with several random starts
    (``n_init``) to avoid local optima, as the thesis describes; the lens probability is the
    Bayes posterior with the training class frequencies as priors.
    """

    def __init__(self, n_components: int = 3, n_init: int = 3, covariance_type: str = "full",
                 random_state: int | None = 0):
        self.n_components = n_components
        self.n_init = n_init
        self.covariance_type = covariance_type
        self.random_state = random_state

    def fit(self, X, y):
        X, y = validate_data(self, X, y)
        check_classification_targets(y)
        self.classes_ = np.unique(y)
        if self.classes_.size < 2:
            raise ValueError(f"GaussianMixtureClassifier needs at least 2 classes; got 1 class "
                             f"({self.classes_.tolist()})")
        self.scaler_ = StandardScaler().fit(X)
        Z = self.scaler_.transform(X)
        self.mixtures_ = [  # a class with fewer samples than components gets one per sample
            GaussianMixture(n_components=min(self.n_components, int((y == c).sum())),
                            covariance_type=self.covariance_type, n_init=self.n_init, reg_covar=1e-4,
                            random_state=self.random_state).fit(Z[y == c])
            for c in self.classes_
        ]
        self.log_priors_ = np.log([np.mean(y == c) for c in self.classes_])
        return self

    def predict_proba(self, X):
        check_is_fitted(self)
        X = validate_data(self, X, reset=False)
        Z = self.scaler_.transform(X)
        log_joint = np.column_stack([m.score_samples(Z) for m in self.mixtures_]) + self.log_priors_
        log_joint -= log_joint.max(axis=1, keepdims=True)
        p = np.exp(log_joint)
        return p / p.sum(axis=1, keepdims=True)

    def predict(self, X):
        check_is_fitted(self)
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]


def binned_pixels(cutouts, pixels: int = 25) -> np.ndarray:
    """Normalised cutouts block-averaged to ``pixels`` x ``pixels`` and flattened.

    Agnello et al. (2015) worked on 25x25-pixel cutouts covering 10 arcsec; ours cover 5 arcsec
    in 100x100 pixels, so the whole cutout is binned 4x4 to 25x25 (a central 25x25 crop would
    cut away every arc beyond 0.6 arcsec).
    """
    x = normalize(cutouts)
    n, h, w = x.shape
    if h % pixels or w % pixels:
        raise ValueError(f"cutouts of {h}x{w} cannot be binned to {pixels}x{pixels}")
    return x.reshape(n, pixels, h // pixels, pixels, w // pixels).mean(axis=(2, 4)).reshape(n, -1)


def make_baseline(name: str, *, seed: int = 0, kpca_components: int = 200):
    """The estimator behind a chapter-3 row of Table 5-1; input: the features it names.

    ``gmm`` takes :func:`photometric_features`; ``kpca_gbt`` and ``kpca_mlp`` take
    :func:`binned_pixels` (kernel PCA to 200 components, then gradient-boosted trees or an MLP).
    """
    if name == "gmm":
        return GaussianMixtureClassifier(random_state=seed)
    if name in ("kpca_gbt", "kpca_mlp"):
        head = (HistGradientBoostingClassifier(random_state=seed, max_iter=200) if name == "kpca_gbt"
                else MLPClassifier(hidden_layer_sizes=(100,), alpha=1e-3, max_iter=500, early_stopping=True,
                                   random_state=seed))
        return make_pipeline(StandardScaler(),
                             KernelPCA(n_components=kpca_components, kernel="rbf", eigen_solver="randomized",
                                       random_state=seed),
                             head)
    raise ValueError(f"baseline must be one of {BASELINE_NAMES} (got {name!r})")


BASELINE_NAMES = ("gmm", "kpca_gbt", "kpca_mlp")


def baseline_inputs(name: str, cutouts) -> np.ndarray:
    """The input array a baseline works on, computed from raw cutouts (e-/s)."""
    if name == "gmm":
        return photometric_features(cutouts)
    if name in ("kpca_gbt", "kpca_mlp"):
        return binned_pixels(cutouts)
    raise ValueError(f"baseline must be one of {BASELINE_NAMES} (got {name!r})")


def baseline_fit_predict(name: str, inputs: np.ndarray, labels, *, seed: int = 0,
                         max_fit_samples: int = 4000):
    """A ``fit_predict(fit, val, test, fold)`` for :func:`lenslib.cv.cross_validate`.

    Kernel PCA scales as the square of the training size, so at most ``max_fit_samples``
    training rows (a seeded random subset) are used to fit; all rows are scored.
    """
    y = np.asarray(labels).astype(int)

    def fit_predict(fit, val, test, fold):
        rng = np.random.default_rng([seed, fold])
        rows = fit
        if len(fit) > max_fit_samples:
            rows = np.sort(rng.choice(fit, max_fit_samples, replace=False))
        model = make_baseline(name, seed=seed + fold)
        model.fit(inputs[rows], y[rows])
        return model.predict_proba(inputs[val])[:, 1], model.predict_proba(inputs[test])[:, 1]

    return fit_predict
