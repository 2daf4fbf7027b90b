"""The finder's default operating point: what a score of 0.5 means.

A network's scale is an accident of its training mix: each fine-tune that changed the mix of
lenses and look-alikes moved the share of companions the finder flags at 0.5 (v7 7%, the same
run with wide lenses 12%) while its ranking barely moved.  :func:`set_operating_point` fixes the
scale on held-out images instead: it shifts the output's logit so that a score of 0.5 flags at
most ``max_rate`` of each non-lens kind of a validation set.  The shift is a change of the softmax
layer's biases, so every ranking (ROC AUC, TPR0, TPR10) is unchanged and the saved ``.keras``
file needs nothing new to load.

A rate met on a few hundred images of a kind is met on the next few hundred only half the time
(v9: 4.98% of its 241 validation companions, 6.2% of the benchmark's 1,182).  With a
``confidence``, the point is set so that the one-sided Clopper-Pearson bound at that confidence
on each kind's flag rate is at most ``max_rate``: the rate is then met on new images of the same
sky with that confidence, at the cost of a slightly stricter threshold.
"""

from __future__ import annotations

import numpy as np


def lens_logits(model, x: np.ndarray, *, batch_size: int = 512) -> np.ndarray:
    """The finder's lens logit (class 1 minus class 0, before the softmax) of normalised cutouts
    ``x`` (N, H, W, 1), in float64: the scores' order without float32 saturation near 0 and 1."""
    import keras

    trunk = keras.Model(model.input, model.get_layer("pool").output)
    kernel, bias = (np.asarray(w, dtype=np.float64) for w in model.get_layer("softmax").get_weights())
    features = np.concatenate([np.asarray(trunk.predict_on_batch(x[i:i + batch_size]), dtype=np.float64)
                               for i in range(0, len(x), batch_size)])
    return features @ (kernel[:, 1] - kernel[:, 0]) + (bias[1] - bias[0])


def allowed_flags(n: int, max_rate: float, confidence: float | None = None) -> int:
    """How many of ``n`` non-lenses of a kind may be flagged: ``floor(max_rate * n)``, or with a
    ``confidence`` the most whose one-sided Clopper-Pearson upper bound on the rate is at most
    ``max_rate`` (0 when even none flagged cannot show it: too few images of that kind)."""
    from scipy.stats import beta

    most = int(np.floor(max_rate * n + 1e-9))
    if confidence is None:
        return most
    k = np.arange(most + 1)
    bounds = np.where(k < n, beta.ppf(confidence, k + 1, np.maximum(n - k, 1)), 1.0)  # rising in k
    return max(int(np.count_nonzero(bounds <= max_rate + 1e-12)) - 1, 0)


def operating_shift(logits, labels, kinds, max_rate: float, confidence: float | None = None) -> float:
    """The logit shift ``b`` after which (score 0.5 at logit ``b``) at most ``max_rate`` of each
    non-lens kind's ``logits`` lie at or above it (with a ``confidence``: at most
    :func:`allowed_flags` of them): the largest over kinds of the smallest such value.  It may be
    negative (a finder more cautious than asked is made less so)."""
    logits, labels = np.asarray(logits, dtype=np.float64), np.asarray(labels)
    kinds = np.asarray(kinds).astype(str)
    if not 0 < max_rate <= 1:
        raise ValueError(f"max_rate must be in (0, 1] (got {max_rate!r})")
    if confidence is not None and not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), or None (got {confidence!r})")
    if not (len(logits) == len(labels) == len(kinds)):
        raise ValueError(f"logits, labels and kinds must have one entry per cutout (got {len(logits)}, "
                         f"{len(labels)} and {len(kinds)})")
    cuts = []
    for kind in np.unique(kinds[labels == 0]):
        values = np.sort(logits[(labels == 0) & (kinds == kind)])[::-1]
        allowed = allowed_flags(len(values), max_rate, confidence)
        if allowed < len(values):  # the first value that may not be flagged, and a hair above it
            cuts.append(np.nextafter(values[allowed], np.inf) + 1e-6 * max(1.0, abs(values[allowed])))
    if not cuts:
        raise ValueError("no non-lenses to set the operating point on")
    return float(max(cuts))


def shift_output(model, shift: float) -> None:
    """Subtract ``shift`` from the lens logit of a finder (its softmax layer's biases), in place."""
    layer = model.get_layer("softmax")
    kernel, bias = layer.get_weights()
    bias = bias.astype(np.float64) + np.array([shift / 2, -shift / 2])
    layer.set_weights([kernel, bias.astype(kernel.dtype)])


def set_operating_point(model, x: np.ndarray, labels, kinds, max_rate: float, *,
                        confidence: float | None = None, set_on: str = "validation") -> dict:
    """Shift ``model``'s output (in place) so that 0.5 flags at most ``max_rate`` of each non-lens
    kind of the held-out cutouts ``x`` (normalised, (N, H, W, 1); with a ``confidence``, see
    :func:`allowed_flags`); returns what the model card records: the rate and confidence, the
    shift, which held-out set (``set_on``) and how many images, and each kind's flag rate at 0.5
    afterwards."""
    logits = lens_logits(model, x)
    shift = operating_shift(logits, labels, kinds, max_rate, confidence)
    shift_output(model, shift)
    labels, kinds = np.asarray(labels), np.asarray(kinds).astype(str)
    flagged = logits - shift >= 0
    return {"max_kind_flag_rate": max_rate, "confidence": confidence, "logit_shift": shift,
            "set_on": set_on, "n_images": int(len(labels)),
            "flag_rates": {kind: float(flagged[kinds == kind].mean()) for kind in sorted(set(kinds))}}
