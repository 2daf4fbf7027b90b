"""Grade candidates by eye: a static grading page, and the merging of inspectors' grades.

* :func:`write_page` writes one HTML file and PNG stamps (arcsinh, linear, lens light
  subtracted, and optionally saliency) for a table of candidates and their cutouts; the page
  opens from disk and is graded with the keyboard (A, B, C, X: not a lens, skip), keeps its
  grades in the browser and exports them as CSV or ECSV.
* :func:`inspect_catalog` does so for a ``lenslib scan`` catalog and its FITS image.
* :func:`merge_grades` combines several inspectors' exports: mean grade on the scale
  :data:`GRADE_VALUES` (A=3, B=2, C=1, X=0, skip left out), spread and count.
* :func:`screenshot` photographs a page in headless Chromium (:class:`BrowserUnavailableError`
  where there is none).

The command line is ``lenslib inspect`` (:mod:`lenslib.inspect.cli`).  Submodules are imported
lazily, so that the command's ``--help`` stays fast.
"""

from __future__ import annotations

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(__name__, submod_attrs={
    "page": ["write_page", "page_data"],
    "sources": ["inspect_catalog", "mosaic_cutouts", "read_catalog", "saliency_maps"],
    "merge": ["merge_grades", "read_grades", "GRADE_VALUES", "MixedPagesWarning"],
    "browser": ["screenshot", "headless_chromium", "BrowserUnavailableError"],
})
