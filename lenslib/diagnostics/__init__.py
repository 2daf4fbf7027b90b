"""What a lens finder learned: scores broken down by what makes a lens a lens.

One overall ROC AUC cannot tell a finder that sees lensed light from one that tells galaxy
types apart.  This subpackage asks narrower questions of the same scores:

:func:`auc_by_kind` (against ``elliptical``, the lenses' own deflectors without a lensed source,
only the lensed light can help), :func:`auc_by_bins` (a finder that sees arcs improves with
their SNR), :func:`shortcut_test` (how far nine image statistics alone get) and
:func:`evaluate_shifted` (skies it was not trained on).  :func:`learnability` runs the fixed
recipe of issue 11 (simulate, grouped hold-out, LensFlow, these diagnostics) and times it.

Modules: ``breakdowns`` (per kind, per bin, the survey end, :class:`DiagnosticReport`),
``shortcuts`` (statistics alone), ``skies`` (the shifted test skies), ``learnability``.
"""

from .breakdowns import (
    ARC_SNR_BINS,
    SAME_POPULATION_KIND,
    THETA_E_BINS,
    VISIBILITY_BINS,
    DiagnosticReport,
    auc_by_bins,
    auc_by_kind,
    diagnose,
    evaluate,
    summary_table,
    survey_metrics,
)
from .learnability import LearnabilityResult, learnability
from .shortcuts import population_shortcut, shortcut_test
from .skies import evaluate_shifted, shifted_skies

__all__ = [
    "ARC_SNR_BINS", "DiagnosticReport", "LearnabilityResult", "SAME_POPULATION_KIND", "THETA_E_BINS",
    "VISIBILITY_BINS", "auc_by_bins", "auc_by_kind", "diagnose", "evaluate", "evaluate_shifted",
    "learnability", "population_shortcut", "shifted_skies", "shortcut_test", "summary_table",
    "survey_metrics",
]
