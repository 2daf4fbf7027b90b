"""The finder's default operating point: what a score of 0.5 means.

A network's scale is an accident of its training mix: each fine-tune that changed the mix of
lenses and look-alikes moved the share of companions the finder flags at 0.5 (v7 7%, the same
run with wide lenses 12%) while its ranking barely moved.  :func:`set_operating_point` fixes the
scale on held-out images instead: it shifts the output's logit so that a score of 0.5 flags at
most ``max_rate`` of each non-lens kind of a validation set.  The shift is a change of the softmax
layer's biases, so every ranking (ROC AUC, TPR0, TPR10) is unchanged and the saved ``.keras``
file needs nothing new to load.
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


def operating_shift(logits, labels, kinds, max_rate: float) -> float:
    """The logit shift ``b`` after which (score 0.5 at logit ``b``) at most ``max_rate`` of each
    non-lens kind's ``logits`` lie at or above it: the largest over kinds of the smallest such
    value.  It may be negative (a finder more cautious than asked is made less so)."""
    logits, labels = np.asarray(logits, dtype=np.float64), np.asarray(labels)
    kinds = np.asarray(kinds).astype(str)
    if not 0 < max_rate <= 1:
        raise ValueError(f"max_rate must be in (0, 1] (got {max_rate!r})")
    if not (len(logits) == len(labels) == len(kinds)):
        raise ValueError(f"logits, labels and kinds must have one entry per cutout (got {len(logits)}, "
                         f"{len(labels)} and {len(kinds)})")
    cuts = []
    for kind in np.unique(kinds[labels == 0]):
        values = np.sort(logits[(labels == 0) & (kinds == kind)])[::-1]
        allowed = int(np.floor(max_rate * len(values) + 1e-9))
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


def set_operating_point(model, x: np.ndarray, labels, kinds, max_rate: float) -> dict:
    """Shift ``model``'s output (in place) so that 0.5 flags at most ``max_rate`` of each non-lens
    kind of the validation cutouts ``x`` (normalised, (N, H, W, 1)); returns what the model card
    records: the rate, the shift, and each kind's flag rate at 0.5 afterwards."""
    logits = lens_logits(model, x)
    shift = operating_shift(logits, labels, kinds, max_rate)
    shift_output(model, shift)
    labels, kinds = np.asarray(labels), np.asarray(kinds).astype(str)
    flagged = logits - shift >= 0
    return {"max_kind_flag_rate": max_rate, "logit_shift": shift, "n_validation": int(len(labels)),
            "validation_flag_rates": {kind: float(flagged[kinds == kind].mean())
                                      for kind in sorted(set(kinds))}}
