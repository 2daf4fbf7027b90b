"""Survey scanning: tiling, bad input, WCS round trips, merging, resuming, Dask, the mock mosaic."""

import warnings

import astropy.units as u
import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from lenslib.mosaic import evaluate_scan, make_mosaic, make_wcs, match_to_truth
from lenslib.scan import (
    NoCandidatesWarning,
    NoWCSWarning,
    PixelScaleWarning,
    SkippedTilesWarning,
    TileScores,
    candidates_table,
    fill_missing,
    find_lenses,
    merge_detections,
    read_image,
    scan_fits,
    score_tiles,
    tile_grid,
)

PIXEL_SCALE = 0.05


def _quiet(func, *args, **kwargs):
    """Call ``func`` with lenslib's scan warnings silenced (tests of other things)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoWCSWarning)
        warnings.simplefilter("ignore", SkippedTilesWarning)
        return func(*args, **kwargs)


# --- tiling ---------------------------------------------------------------------------------------

def test_tiles_cover_every_pixel_with_the_last_ones_flush_with_the_edges():
    grid = tile_grid((230, 310), stride=50)
    assert list(grid.y0) == [0, 50, 100, 130]
    assert list(grid.x0) == [0, 50, 100, 150, 200, 210]
    covered = np.zeros(grid.shape, bool)
    for y0 in grid.y0:
        for x0 in grid.x0:
            covered[y0:y0 + 100, x0:x0 + 100] = True
    assert covered.all()
    xc, yc = grid.centres()
    assert xc[0, 0] == 49.5 and yc[-1, 0] == 130 + 49.5


@pytest.mark.parametrize("stride", [0, 101, 2.5, True])
def test_stride_must_keep_tiles_touching(stride):
    with pytest.raises(ValueError, match="stride must be an integer in"):
        tile_grid((300, 300), stride=stride)


# --- bad input --------------------------------------------------------------------------------------

@pytest.mark.parametrize("data, error, match", [
    (np.zeros((50, 400)), ValueError, "at least 100x100"),
    (np.zeros((3, 200, 200)), ValueError, "must be a 2-D image"),
    (np.zeros(1000), ValueError, "must be a 2-D image"),
    (np.full((200, 200), "a"), TypeError, "numeric image"),
])
def test_bad_images_are_refused_before_scoring(spot_model_path, data, error, match):
    with pytest.raises(error, match=match):
        find_lenses(data, spot_model_path, wcs=make_wcs((200, 200), PIXEL_SCALE))


def test_mask_and_wcs_must_match_the_image(spot_model_path, spot_image):
    image = spot_image((200, 240))
    with pytest.raises(ValueError, match=r"mask must have the same shape as data: mask is \(200, 200\)"):
        _quiet(find_lenses, image, spot_model_path, mask=np.zeros((200, 200), bool))
    with pytest.raises(ValueError, match="the wcs is for a 200x200 image but data is 240x200"):
        find_lenses(image, spot_model_path, wcs=make_wcs((200, 200), PIXEL_SCALE))
    with pytest.raises(TypeError, match="astropy.wcs.WCS"):
        find_lenses(image, spot_model_path, wcs="RA---TAN")


@pytest.mark.parametrize("kwargs, match", [
    ({"threshold": 1.5}, "threshold must be a number in"),
    ({"batch_size": 0}, "batch_size must be a positive integer"),
    ({"min_separation": -1}, "min_separation must be a number in"),
])
def test_bad_parameters_are_named(spot_model_path, spot_image, kwargs, match):
    with pytest.raises(ValueError, match=match):
        _quiet(find_lenses, spot_image((200, 200)), spot_model_path, **kwargs)


def test_a_model_for_other_cutouts_is_refused(tmp_path):
    import keras

    from lenslib.models import save_model

    inputs = keras.Input((64, 64, 1))
    x = keras.layers.GlobalMaxPooling2D()(inputs)
    path = save_model(keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x)),
                      tmp_path / "small.keras")
    with pytest.raises(ValueError, match=r"small.keras\) takes inputs of shape \(None, 64, 64, 1\).*100x1"):
        _quiet(find_lenses, np.zeros((200, 200), np.float32), path)
    with pytest.raises(TypeError, match="model must be a Keras model or the path"):
        _quiet(find_lenses, np.zeros((200, 200), np.float32), object())


def test_nan_and_masked_regions_are_skipped_and_reported(spot_model_path, spot_image):
    image = spot_image((300, 300), spots=[(150, 150), (250, 250)])
    image[:20, :] = np.nan  # a blank strip along the bottom edge of the mosaic
    mask = np.zeros(image.shape, bool)
    mask[235:265, 235:265] = True  # a masked bright star
    with pytest.warns(SkippedTilesWarning, match=r"of 25 tiles have more than 0% of their pixels"):
        tiles = score_tiles(image, spot_model_path, mask=mask, max_missing=0, progress=False)
    grid = tiles.grid
    touching = np.array([[(y0 < 20) or (y0 < 265 and y0 + 100 > 235 and x0 < 265 and x0 + 100 > 235)
                          for x0 in grid.x0] for y0 in grid.y0])
    assert np.array_equal(tiles.skipped, touching)
    assert tiles.n_scored == 25 - touching.sum() and tiles.n_skipped == touching.sum()
    # the same through a masked array; the spot under the mask is never a candidate
    masked = np.ma.masked_array(image, mask=mask)
    with pytest.warns(SkippedTilesWarning):
        table = _quiet_wcs(find_lenses, masked, spot_model_path, max_missing=0, progress=False)
    assert table.meta["n_skip"] == touching.sum()
    assert len(table) == 1 and np.hypot(table["x"][0] - 150, table["y"][0] - 150) < 2


def test_a_few_missing_pixels_are_filled_and_their_tiles_scored(spot_model_path, spot_image):
    image = spot_image((300, 300), spots=[(150, 150), (50, 250)])
    rng = np.random.default_rng(1)
    image[rng.integers(0, 300, 40), rng.integers(0, 300, 40)] = np.nan  # scattered bad pixels
    image[:, 152] = np.nan  # a bad column through a spot
    strict = _quiet_wcs(score_tiles, image, spot_model_path, max_missing=0, progress=False)
    assert strict.n_skipped > 15 and strict.unsearched > 0.5  # nearly every tile touches one
    tiles = _quiet_wcs(score_tiles, image, spot_model_path, progress=False)
    assert tiles.n_skipped == 0 and tiles.unsearched == 0 and tiles.max_missing == 0.02
    table = _quiet_wcs(find_lenses, image, spot_model_path, progress=False)
    found = sorted((round(float(x)), round(float(y))) for x, y in zip(table["x"], table["y"]))
    assert len(table) == 2 and np.allclose(found, [(50, 250), (150, 150)], atol=2), found
    assert table.meta["unsearch"] == 0 and table.meta["maxmiss"] == 0.02
    # a tile missing more than max_missing is still skipped
    image[100:103, :] = np.nan  # 3 rows: 3% of every tile across them
    with pytest.warns(SkippedTilesWarning, match="have more than 2% of their pixels without data"):
        tiles = _quiet_wcs(score_tiles, image, spot_model_path, progress=False)
    assert tiles.skipped[1:3].all() and not tiles.skipped[[0, 3, 4]].any()
    with pytest.raises(ValueError, match=r"max_missing must be a number in \[0.0, 0.5\]"):
        score_tiles(image, spot_model_path, max_missing=0.9)


def test_fill_missing_interpolates_from_neighbours():
    yy, xx = np.mgrid[:100, :100]
    smooth = (10 + 0.3 * xx + 0.2 * yy).astype(np.float32)
    holes = smooth.copy()
    holes[40, 40] = np.nan
    holes[:, 70] = np.inf
    holes[0, :5] = np.nan  # at the edge
    filled = fill_missing(holes)
    assert np.isfinite(filled).all() and filled.dtype == np.float32
    assert np.array_equal(filled[np.isfinite(holes)], holes[np.isfinite(holes)])  # data untouched
    assert np.abs(filled - smooth).max() < 0.5  # a plane is interpolated to within its local slope
    assert np.array_equal(fill_missing(smooth), smooth)
    big = smooth.copy()
    big[20:60, 20:60] = np.nan  # far from any data: the median of the cutout's data
    filled = fill_missing(big)
    assert filled[40, 40] == np.median(big[np.isfinite(big)])
    assert abs(filled[20, 20] - smooth[20, 20]) < 1.0  # near the hole's edge: its neighbours


def test_fill_missing_is_the_normalised_gaussian_convolution():
    from scipy.ndimage import gaussian_filter

    from lenslib.scan.tiles import FILL_SIGMA

    rng = np.random.default_rng(3)
    cutout = (rng.normal(0, 5, (100, 100)) + np.add.outer(np.arange(100), np.arange(100))).astype(np.float32)
    cutout[rng.integers(0, 100, 150), rng.integers(0, 100, 150)] = np.nan
    cutout[:, 0] = np.nan
    cutout[60:64, 60:64] = -np.inf
    missing = ~np.isfinite(cutout)
    weight = gaussian_filter((~missing).astype(float), FILL_SIGMA, mode="nearest")  # the oracle
    total = gaussian_filter(np.where(missing, 0.0, cutout), FILL_SIGMA, mode="nearest")
    filled = fill_missing(cutout)
    np.testing.assert_allclose(filled[missing], (total / weight)[missing], rtol=1e-6, atol=1e-4)


def _quiet_wcs(func, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoWCSWarning)
        return func(*args, **kwargs)


def test_no_wcs_warns_and_gives_pixel_coordinates_only(spot_model_path, spot_image):
    with pytest.warns(NoWCSWarning, match="pixel coordinates only"):
        table = find_lenses(spot_image((200, 200), spots=[(100, 100)]), spot_model_path, progress=False)
    assert len(table) == 1
    assert "skycoord" not in table.colnames and "ra" not in table.colnames


def _with_card(model_path, tmp_path, pixel_scale):
    """A copy of ``model_path`` with a model card beside it (the shipped finder's card, its sky's
    pixel scale set to ``pixel_scale``), as ``train_finder`` leaves a finder."""
    import json
    import shutil

    from lenslib.finder.shipped import DEFAULT_FINDER, shipped_card

    path = tmp_path / "finder.keras"
    shutil.copy(model_path, path)
    card = shipped_card(DEFAULT_FINDER)
    card["sky"]["config"]["instrument"]["pixel_scale"] = pixel_scale
    path.with_suffix(".json").write_text(json.dumps(card))
    return path


def test_pixels_of_another_size_than_the_finder_learned_are_warned_of(spot_model_path, spot_image, tmp_path):
    image = spot_image((200, 200), spots=[(100, 100)])
    model = _with_card(spot_model_path, tmp_path, PIXEL_SCALE)
    with warnings.catch_warnings():
        warnings.simplefilter("error", PixelScaleWarning)  # same pixels (to 2%): no warning
        table = find_lenses(image, model, wcs=make_wcs(image.shape, PIXEL_SCALE * 1.02), progress=False)
    assert table.meta["pixscale"] == pytest.approx(PIXEL_SCALE * 1.02)
    assert table.meta["finderpx"] == PIXEL_SCALE
    with pytest.warns(PixelScaleWarning, match=r"pixels are 0\.168 arcsec .* trained on 0\.05 arcsec"):
        table = find_lenses(image, model, wcs=make_wcs(image.shape, 0.168), progress=False)
    assert len(table) == 1  # a warning, not a refusal: the scan still runs
    # A finder without a card: its pixels are unknown, nothing to compare, nothing claimed.
    with warnings.catch_warnings():
        warnings.simplefilter("error", PixelScaleWarning)
        table = find_lenses(image, spot_model_path, wcs=make_wcs(image.shape, 0.168), progress=False)
    assert table.meta["pixscale"] == pytest.approx(0.168) and "finderpx" not in table.meta
    # The model object load_model returns still finds its card, and the catalog names the model.
    from lenslib.models import load_model
    from lenslib.scan.checkpoint import model_digest

    loaded = load_model(model)
    with pytest.warns(PixelScaleWarning, match="trained on 0.05 arcsec"):
        table = find_lenses(image, loaded, wcs=make_wcs(image.shape, 0.168), transforms=2, progress=False)
    assert table.meta["finderpx"] == PIXEL_SCALE and table.meta["model"] == str(model.absolute())
    assert table.meta["modelsum"] == model_digest(loaded, None) and table.meta["transfrm"] == 2
    table = _quiet_wcs(find_lenses, image, model, progress=False)
    assert table.meta["modelsum"] == model_digest(None, model) and table.meta["transfrm"] == 1


def test_a_shipped_finder_is_named_by_its_name(spot_image):
    from lenslib.finder.shipped import DEFAULT_FINDER

    image = spot_image((100, 100))
    table = _quiet_wcs(find_lenses, image, DEFAULT_FINDER, progress=False)
    assert table.meta["model"] == DEFAULT_FINDER and table.meta["n_scored"] == 1


def test_tiles_that_all_score_zero_merge_at_threshold_zero():
    grid = tile_grid((200, 200))  # a constant image: the finder's score underflows to exactly 0
    scores = np.zeros((grid.n_rows, grid.n_cols), np.float32)
    table = candidates_table(TileScores(grid, scores), threshold=0.0)
    assert len(table) >= 1 and np.all(table["score"] == 0)
    # the first tile (centre 49.5, 49.5) and the three within 100 pixels: their plain mean
    assert table["x"][0] == 74.5 and table["y"][0] == 74.5 and table["n_tiles"][0] == 4


def test_a_shipped_finder_knows_the_pixels_it_was_trained_on():
    from lenslib.config import SimulationConfig
    from lenslib.finder.card import trained_pixel_scale
    from lenslib.finder.shipped import DEFAULT_FINDER, shipped_path

    expected = SimulationConfig().instrument.pixel_scale
    assert trained_pixel_scale(DEFAULT_FINDER) == expected
    assert trained_pixel_scale(shipped_path(DEFAULT_FINDER)) == expected
    assert trained_pixel_scale(object()) is None


def test_nothing_found_warns_and_returns_an_empty_catalog(spot_model_path, spot_image):
    wcs = make_wcs((200, 200), PIXEL_SCALE)
    with pytest.warns(NoCandidatesWarning, match="no tile scored at or above threshold=0.5"):
        table = find_lenses(spot_image((200, 200)), spot_model_path, wcs=wcs, progress=False)
    assert len(table) == 0
    assert {"x", "y", "ra", "dec", "skycoord", "score", "cutout_x0"} <= set(table.colnames)


def test_files_that_are_not_fits_images_are_named(tmp_path, spot_model_path):
    text = tmp_path / "notes.fits"
    text.write_text("SIMPLE? not really\n")
    with pytest.raises(ValueError, match=r"notes.fits is not a FITS file"):
        scan_fits(text, spot_model_path)
    with pytest.raises(FileNotFoundError, match="image not found"):
        scan_fits(tmp_path / "missing.fits", spot_model_path)
    table_only = tmp_path / "table.fits"
    events = fits.BinTableHDU(Table({"a": [1, 2]}), name="EVENTS")
    fits.HDUList([fits.PrimaryHDU(), events]).writeto(table_only)
    with pytest.raises(ValueError, match=r"no HDU with 2-D image data \(HDUs: 0 PRIMARY: no data; 1 EVENTS"):
        scan_fits(table_only, spot_model_path)
    with pytest.raises(ValueError, match=r"HDU 'EVENTS' of .* holds BinTableHDU \(a table\), not a 2-D"):
        scan_fits(table_only, spot_model_path, hdu="EVENTS")
    cube = tmp_path / "cube.fits"
    fits.PrimaryHDU(np.zeros((2, 150, 150), np.float32)).writeto(cube)
    with pytest.raises(ValueError, match=r"HDU 0 .* holds 3-D image \(2, 150, 150\)"):
        scan_fits(cube, spot_model_path, hdu=0)
    with pytest.raises(ValueError, match="extension"):
        scan_fits(cube, spot_model_path, tmp_path / "out.txt")


# --- positions: pixels and sky ------------------------------------------------------------------------

def test_a_source_injected_at_a_sky_position_is_recovered_there(spot_model_path, spot_image, tmp_path):
    shape = (140, 150)
    wcs = make_wcs(shape, PIXEL_SCALE)
    target = wcs.pixel_to_world(77.3, 68.6)  # where the "lens" is on the sky
    x, y = wcs.world_to_pixel(target)
    path = tmp_path / "field.fits"
    fits.PrimaryHDU(spot_image(shape, spots=[(float(x), float(y))]), header=wcs.to_header()).writeto(path)
    out = tmp_path / "candidates.ecsv"
    table = scan_fits(path, spot_model_path, out, stride=2, progress=False)
    assert len(table) == 1
    assert abs(table["x"][0] - x) < 1.5 and abs(table["y"][0] - y) < 1.5
    assert table["skycoord"][0].separation(target) < 2 * PIXEL_SCALE * u.arcsec
    back = Table.read(out)  # the written catalog holds the same sky position
    assert back["skycoord"][0].separation(target) < 2 * PIXEL_SCALE * u.arcsec
    assert back["ra"].unit == u.deg and abs(back["ra"][0] - target.ra.deg) < 1e-6


def test_catalog_formats_follow_the_extension(spot_model_path, spot_image, tmp_path):
    wcs = make_wcs((200, 200), PIXEL_SCALE)
    path = tmp_path / "img.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(spot_image((200, 200), spots=[(100, 100)]),
                                                   header=wcs.to_header(), name="SCI")]).writeto(path)
    for ext in (".fits", ".csv"):
        out = tmp_path / f"cat{ext}"
        scan_fits(path, spot_model_path, out, progress=False)
        back = Table.read(out)
        assert len(back) == 1 and "ra" in back.colnames and "dec" in back.colnames
    assert "skycoord" not in Table.read(tmp_path / "cat.csv").colnames


# --- merging --------------------------------------------------------------------------------------------

def test_nms_keeps_the_best_detection_and_claims_its_neighbours():
    x = np.array([100.0, 150.0, 150.0, 400.0, 450.0, 700.0, 240.0])
    y = np.array([100.0, 100.0, 150.0, 100.0, 100.0, 700.0, 100.0])
    scores = np.array([0.7, 0.95, 0.6, 0.8, 0.9, 0.3, np.nan])
    groups = merge_detections(x, y, scores, threshold=0.5, min_separation=100)
    assert [list(g) for g in groups] == [[1, 0, 2], [4, 3]]  # 0.3 is below threshold, NaN ignored
    # strictly closer than min_separation: 100 pixels apart do not merge
    assert len(merge_detections([0.0, 100.0], [0.0, 0.0], [0.9, 0.8], min_separation=100)) == 2
    with pytest.raises(ValueError, match="same length"):
        merge_detections([1.0], [1.0, 2.0], [0.9])


def test_overlapping_tiles_merge_into_one_candidate_at_their_weighted_centre():
    grid = tile_grid((300, 300), stride=50)
    scores = np.zeros((grid.n_rows, grid.n_cols), np.float32)
    scores[1, 1], scores[1, 2] = 0.9, 0.6  # one object seen by two overlapping tiles
    scores[4, 4] = 0.8  # another, far away
    scores[0, 4] = np.nan
    table = candidates_table(TileScores(grid, scores, n_scored=24), threshold=0.5)
    assert list(table["n_tiles"]) == [2, 1]
    assert table["score"][0] == pytest.approx(0.9)
    assert table["x"][0] == pytest.approx((0.9 * 99.5 + 0.6 * 149.5) / 1.5)
    assert (table["cutout_x0"][0], table["cutout_y0"][0]) == (50, 50)
    assert table.meta["n_skip"] == 1 and table.meta["n_scored"] == 24


def test_two_sources_in_one_image_are_two_candidates_best_first(spot_model_path, spot_image):
    image = spot_image((300, 400), spots=[(80, 90), (310, 220)])
    image[220, 310] += 40  # the second is brighter
    table = _quiet_wcs(find_lenses, image, spot_model_path, stride=10, progress=False)
    assert len(table) == 2
    assert table["id"].tolist() == [1, 2] and table["score"][0] >= table["score"][1]
    found = sorted(zip(np.round(table["x"]), np.round(table["y"])))
    assert np.allclose(found, [(80, 90), (310, 220)], atol=3)


def test_transforms_average_tile_scores_and_belong_to_the_checkpoint(spot_model_path, spot_image, tmp_path):
    image = spot_image((300, 300), spots=[(150, 150)])
    plain = score_tiles(image, spot_model_path, progress=False)
    # The spot model looks at the central 4x4 pixels, which every flip and quarter turn keeps.
    averaged = score_tiles(image, spot_model_path, transforms=8, progress=False)
    np.testing.assert_allclose(averaged.scores, plain.scores, rtol=1e-6, atol=1e-7)
    checkpoint = tmp_path / "ckpt"
    score_tiles(image, spot_model_path, checkpoint=checkpoint, progress=False)
    with pytest.raises(ValueError, match=r"differs in transforms"):
        score_tiles(image, spot_model_path, transforms=4, checkpoint=checkpoint, progress=False)
    with pytest.raises(ValueError, match="transforms must be one of"):
        score_tiles(image, spot_model_path, transforms=3, progress=False)


# --- resuming ---------------------------------------------------------------------------------------------

def _oriented_model():
    """A tiny finder whose score changes when a cutout is turned or flipped (a dense layer over a
    10x10 average-pooled cutout, fixed random weights)."""
    import keras

    inputs = keras.Input((100, 100, 1), name="cutout")
    x = keras.layers.Flatten()(keras.layers.AveragePooling2D(10)(inputs))
    dense = keras.layers.Dense(2, activation="softmax", name="softmax")
    model = keras.Model(inputs, dense(x))
    weights = np.random.default_rng(3).normal(0, 1, (100, 2)).astype("float32")
    dense.set_weights([weights, np.zeros(2, dtype="float32")])
    return model


def test_refine_scores_the_best_tiles_again_over_all_eight_views(spot_image, tmp_path):
    from lenslib.errors import InputError

    model = _oriented_model()
    image = spot_image((300, 300), spots=[(120, 170), (230, 90)])
    plain = _quiet(score_tiles, image, model, progress=False)
    eight = _quiet(score_tiles, image, model, transforms=8, progress=False)
    cut = float(np.quantile(plain.scores, 0.7))
    best = plain.scores >= cut
    assert 0 < best.sum() < best.size
    assert not np.allclose(plain.scores[best], eight.scores[best], atol=1e-3)  # the views disagree
    for checkpoint in (None, tmp_path / "ckpt"):  # a checkpoint keeps the first pass's scores
        refined = _quiet(score_tiles, image, model, refine=cut, checkpoint=checkpoint, progress=False)
        assert refined.n_refined == best.sum() and refined.refine == cut
        np.testing.assert_allclose(refined.scores[best], eight.scores[best], rtol=1e-5)
        np.testing.assert_array_equal(refined.scores[~best], plain.scores[~best])
    resumed = _quiet(score_tiles, image, model, refine=cut, checkpoint=tmp_path / "ckpt", progress=False)
    assert resumed.n_resumed == best.size and resumed.n_scored == 0
    np.testing.assert_array_equal(resumed.scores, refined.scores)
    table = candidates_table(refined, threshold=0.0)
    assert table.meta["refine"] == cut and table.meta["n_refine"] == best.sum()
    assert "refine" not in candidates_table(plain, threshold=0.0).meta
    with pytest.raises(InputError, match="transforms=8 already did"):
        score_tiles(image, model, refine=0.5, transforms=8)
    with pytest.raises(InputError, match=r"refine must be a number in \[0.0, 1.0\]"):
        score_tiles(image, model, refine=1.5)


def test_an_interrupted_scan_resumes_without_rescoring(spot_model_path, spot_image, tmp_path, monkeypatch):
    import lenslib.models.io as io

    image = spot_image((300, 300), spots=[(150, 150)])
    fresh = score_tiles(image, spot_model_path, progress=False)  # 5 x 5 tiles
    real = io.predict_normalized
    calls = []

    def counting(model, x, **kwargs):
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(len(x))
        return real(model, x, **kwargs)

    monkeypatch.setattr(io, "predict_normalized", counting)
    checkpoint = tmp_path / "ckpt"
    with pytest.raises(KeyboardInterrupt):  # batch_size 5: every tile row is its own block and batch
        score_tiles(image, spot_model_path, batch_size=5, checkpoint=checkpoint, progress=False)
    assert sorted(p.name for p in (checkpoint / "rows").iterdir()) == ["row-000000.npy", "row-000001.npy"]

    calls.clear()
    monkeypatch.setattr(io, "predict_normalized", lambda model, x, **kw: (calls.append(len(x)),
                                                                          real(model, x, **kw))[1])
    resumed = score_tiles(image, spot_model_path, batch_size=5, checkpoint=checkpoint, progress=False)
    assert sum(calls) == 15  # only the three unfinished rows
    assert (resumed.n_scored, resumed.n_resumed) == (15, 10)
    np.testing.assert_array_equal(resumed.scores, fresh.scores)

    calls.clear()
    again = score_tiles(image, spot_model_path, checkpoint=checkpoint, progress=False)
    assert calls == [] and again.n_resumed == 25
    with pytest.raises(ValueError, match=r"belongs to another scan \(it differs in stride\)"):
        score_tiles(image, spot_model_path, stride=40, checkpoint=checkpoint, progress=False)
    with pytest.raises(ValueError, match=r"differs in image"):
        score_tiles(image + 1, spot_model_path, checkpoint=checkpoint, progress=False)


# --- Dask ---------------------------------------------------------------------------------------------------

def test_dask_results_equal_single_process(spot_model_path, spot_image):
    from dask.distributed import LocalCluster

    image = spot_image((260, 330), spots=[(129.5, 109.5), (229.5, 189.5)])  # on tile centres
    image[:, 300:] = np.nan
    image[109, 130] = image[50:53, 60] = np.nan  # filled the same way whatever band a tile is read in
    wcs = make_wcs(image.shape, PIXEL_SCALE)
    kwargs = dict(wcs=wcs, stride=20, batch_size=16, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SkippedTilesWarning)
        single = find_lenses(image, spot_model_path, **kwargs)
        on_local = find_lenses(image, spot_model_path, scheduler="local", n_workers=2, **kwargs)
        with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster:
            on_address = find_lenses(image, spot_model_path, scheduler=cluster.scheduler_address, **kwargs)
    assert len(single) == 2
    for other in (on_local, on_address):
        assert other.colnames == single.colnames
        for name in ("x", "y", "score", "n_tiles", "cutout_x0", "cutout_y0", "ra", "dec"):
            np.testing.assert_array_equal(other[name], single[name])
        assert other.meta["n_scored"] == single.meta["n_scored"]


def test_dask_needs_a_model_file_and_a_known_scheduler(spot_model_path, spot_image):
    from lenslib.models import load_model

    image = spot_image((200, 200))
    with pytest.raises(ValueError, match="pass the model as the path of its .keras file"):
        _quiet(score_tiles, image, load_model(spot_model_path), scheduler="local")
    with pytest.raises(ValueError, match="scheduler must be None, 'local', a scheduler address"):
        _quiet(score_tiles, image, spot_model_path, scheduler="my-cluster", progress=False)


# --- the mock mosaic --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small_mosaic():
    return make_mosaic((400, 500), n_lenses=2, n_lookalikes=1, seed=7, edge=60, min_separation=120)


def test_mock_mosaic_is_seeded_and_its_truth_is_where_the_light_is(small_mosaic):
    data, wcs, truth = small_mosaic
    assert data.shape == (400, 500) and data.dtype == np.float32
    assert list(truth["label"]) .count(1) == 2 and list(truth["label"]).count(0) == 1
    again = make_mosaic((400, 500), n_lenses=2, n_lookalikes=1, seed=7, edge=60, min_separation=120)
    assert np.array_equal(again.data, data)
    sky_sigma = 1.4826 * np.median(np.abs(data - np.median(data)))
    for row in truth:
        x, y = int(round(row["x"])), int(round(row["y"]))
        assert data[y - 3:y + 4, x - 3:x + 4].mean() > 5 * sky_sigma  # a galaxy sits there
    px, py = wcs.world_to_pixel(truth["skycoord"])
    np.testing.assert_allclose(px, truth["x"], atol=1e-6)
    np.testing.assert_allclose(py, truth["y"], atol=1e-6)
    assert truth.meta["AREA"] == pytest.approx(400 * 500 * (PIXEL_SCALE / 3600) ** 2)


def test_mock_mosaic_round_trips_through_fits(small_mosaic, tmp_path):
    path = small_mosaic.to_fits(tmp_path / "mosaic.fits")
    hdul, data, wcs, index = read_image(path)
    try:
        assert index == 0 and np.array_equal(data, small_mosaic.data)
        sky = wcs.pixel_to_world(10.0, 20.0)
        assert sky.separation(small_mosaic.wcs.pixel_to_world(10.0, 20.0)) < 1e-6 * u.arcsec
    finally:
        hdul.close()
    with pytest.raises(FileExistsError):
        small_mosaic.to_fits(path)


@pytest.mark.parametrize("kwargs, match", [
    ({"shape": (50, 400)}, "shape must be"),
    ({"n_lenses": -1}, "n_lenses must be a non-negative integer"),
    ({"lookalike_kinds": ("galaxy_galaxy",)}, "lookalike_kinds must be non-lens kinds"),
    ({"shape": (200, 200), "n_lenses": 30, "n_lookalikes": 0}, "cannot place 30 objects"),
])
def test_mock_mosaic_refuses_bad_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_mosaic(**kwargs)


@pytest.mark.parametrize("shape, stride", [((230, 260), 50), ((300, 420), 100), ((137, 151), 17)])
def test_the_unsearched_share_is_the_pixels_in_no_scored_tile(shape, stride):
    grid = tile_grid(shape, stride=stride)
    rng = np.random.default_rng(stride)
    scores = np.where(rng.random((grid.n_rows, grid.n_cols)) < 0.4, np.nan, 0.5).astype(np.float32)
    covered = np.zeros(shape, bool)  # pixel by pixel
    for i, j in zip(*np.nonzero(np.isfinite(scores))):
        covered[grid.y0[i]:grid.y0[i] + grid.size, grid.x0[j]:grid.x0[j] + grid.size] = True
    assert TileScores(grid, scores).unsearched == pytest.approx(1 - covered.mean(), abs=1e-12)
    assert TileScores(grid, np.full_like(scores, np.nan)).unsearched == 1.0


def test_evaluation_counts_recovered_lenses_and_false_positives():
    grid = tile_grid((300, 400), stride=50)
    truth = Table({"x": [99.5, 299.5, 199.5], "y": [99.5, 199.5, 249.5], "label": [1, 1, 0]},
                  meta={"PIXSCALE": PIXEL_SCALE})
    scores = np.zeros((grid.n_rows, grid.n_cols), np.float32)
    scores[1, 1] = 0.9  # on lens 1 (tile centre 99.5, 99.5)
    scores[4, 3] = 0.7  # on the look-alike (149.5 + 50 = 199.5, 249.5)
    scores[0, 6] = 0.6  # on nothing
    result = evaluate_scan(TileScores(grid, scores), truth, thresholds=[0.5, 0.8, 0.95])
    assert list(result["n_candidates"]) == [3, 1, 0]
    assert list(result["completeness"]) == [0.5, 0.5, 0.0]
    assert result["purity"][0] == pytest.approx(1 / 3) and result["purity"][1] == 1.0
    assert np.isnan(result["purity"][2])
    assert list(result["n_lookalikes"]) == [1, 0, 0]
    area = 300 * 400 * (PIXEL_SCALE / 3600) ** 2
    assert result["false_per_deg2"][0] == pytest.approx(2 / area)
    assert list(match_to_truth([100.0, 10.0], [101.0, 10.0], truth, radius=5)) == [0, -1]


def test_score_map_and_truth_marks_draw_every_tile_and_object(spot_model_path, spot_image):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lenslib.mosaic import plot_truth, truth_scores
    from lenslib.scan import plot_score_map

    image = spot_image((230, 260), spots=[(99.5, 99.5)])
    image[200:, :] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SkippedTilesWarning)
        tiles = score_tiles(image, spot_model_path, progress=False)
    truth = Table({"x": [99.5, 200.0], "y": [99.5, 60.0], "label": [1, 0]})
    ax = plot_score_map(tiles, image, threshold=0.5)
    mesh = ax.collections[0]
    assert mesh.get_array().shape == tiles.scores.shape  # one cell per tile
    assert mesh.get_array().mask.sum() == tiles.n_skipped  # skipped tiles left blank
    cands = _quiet_wcs(candidates_table, tiles)
    plot_truth(ax, truth, cands)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["lens, found", "lens, missed", "look-alike, flagged", "look-alike, not flagged",
                      "candidate"]
    best = truth_scores(tiles, truth)
    assert best[0] > 0.9 and best[1] < 0.5
    plt.close(ax.figure)


def test_find_lenses_is_public_and_shows_progress_when_asked(spot_model_path, spot_image, capsys):
    import lenslib

    assert lenslib.find_lenses is find_lenses
    score_tiles(spot_image((200, 200)), spot_model_path, progress=True)
    err = capsys.readouterr().err
    assert "lenslib scan" in err and "9/9" in err and "tile" in err
    score_tiles(spot_image((200, 200)), spot_model_path)  # not a terminal: no bar by default
    assert "lenslib scan" not in capsys.readouterr().err


# --- hostile input (issue 14) -----------------------------------------------------------------------------

def test_a_checkpoint_is_tied_to_every_pixel_the_model_and_the_options(spot_model_path, spot_image, tmp_path):
    image = spot_image((300, 300), spots=[(150, 150)])
    checkpoint = tmp_path / "ckpt"
    score_tiles(image, spot_model_path, checkpoint=checkpoint, progress=False)
    assert score_tiles(image, spot_model_path, checkpoint=checkpoint, progress=False).n_resumed == 25
    edited = image.copy()
    edited[1, 1] += 5.0  # off every point of the old 64x64 sample grid (steps of 4 pixels)
    with pytest.raises(ValueError, match=r"differs in image"):
        score_tiles(edited, spot_model_path, checkpoint=checkpoint, progress=False)
    mask = np.zeros(image.shape, bool)
    mask[201:203, 201:203] = True  # a mask applied between the sample points
    with pytest.raises(ValueError, match=r"differs in image"):
        _quiet(score_tiles, image, spot_model_path, mask=mask, checkpoint=checkpoint, progress=False)
    weight = np.ones(image.shape, np.float32)
    weight[5, 5] = 0
    with pytest.raises(ValueError, match=r"differs in image"):
        _quiet(score_tiles, image, spot_model_path, weight=weight, checkpoint=checkpoint, progress=False)
    with pytest.raises(ValueError, match=r"differs in zero_run"):
        score_tiles(image, spot_model_path, zero_run=0, checkpoint=checkpoint, progress=False)
    from lenslib.models import load_model

    model = load_model(spot_model_path)
    dense = model.get_layer("softmax")
    dense.set_weights([w * 1.01 for w in dense.get_weights()])
    with pytest.raises(ValueError, match=r"differs in model"):
        score_tiles(image, model, checkpoint=checkpoint, progress=False)


def test_zero_filled_regions_and_blank_images_are_no_data(spot_model_path, spot_image):
    blank = np.zeros((200, 200), np.float32)  # a blank mosaic: nothing to find, and said so
    with pytest.warns(SkippedTilesWarning, match=r"9 of 9 tiles .*: 100% of the image lies in no "
                                                 r"scored tile.* 100% has no data"):
        table = _quiet_wcs(find_lenses, blank, spot_model_path, progress=False)
    assert len(table) == 0 and table.meta["n_scored"] == 0 and table.meta["no_data"] == 1.0
    image = spot_image((300, 300), spots=[(150, 150), (40, 250)])
    image[:, :60] = 0.0  # the zero-filled edge of a mosaic (a spot inside it is lost, as it should be)
    image[100, 200] = 0.0  # a lone zero, and a short run, are data
    image[120, 180:190] = 0.0
    with pytest.warns(SkippedTilesWarning, match=r"20% has no data"):
        tiles = score_tiles(image, spot_model_path, progress=False)
    assert np.array_equal(tiles.skipped, np.broadcast_to(tiles.grid.x0 < 60, tiles.skipped.shape))
    assert tiles.no_data == pytest.approx(0.2)
    assert score_tiles(image, spot_model_path, zero_run=0, progress=False).n_skipped == 0  # zeros as data


def test_every_batch_is_full_across_blocks_and_rows(spot_model_path, spot_image, tmp_path, monkeypatch):
    import lenslib.models.io as io

    image = spot_image((400, 300), spots=[(150, 200)])  # 7 rows of 5 tiles at stride 50
    image[:100, 120:130] = np.nan  # tile rows 0-1 lose their middle tiles
    image[200:230, :] = np.nan  # tile rows 3-4 have no data at all
    real, sizes = io.predict_normalized, []
    monkeypatch.setattr(io, "predict_normalized", lambda model, x, **kw: (sizes.append(len(x)),
                                                                          real(model, x, **kw))[1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SkippedTilesWarning)
        batched = score_tiles(image, spot_model_path, batch_size=7, checkpoint=tmp_path / "c", progress=False)
        first = list(sizes)
        one = score_tiles(image, spot_model_path, batch_size=1, progress=False)
    assert sum(first) == batched.n_scored == one.n_scored
    assert first[:-1] == [7] * (len(first) - 1) and 1 <= first[-1] <= 7
    np.testing.assert_array_equal(batched.scores, one.scores)
    saved = sorted(p.name for p in (tmp_path / "c" / "rows").iterdir())
    assert saved == [f"row-{k:06d}.npy" for k in range(batched.grid.n_rows)]  # every row finished


def test_no_data_never_depends_on_how_the_image_is_read(spot_model_path, spot_image):
    image = spot_image((400, 300), spots=[(150, 200)])
    image[180:275, 95:98] = 0.0  # a thin vertical gap: runs along columns, across band edges
    image[300, 10:50] = 0.0  # a horizontal run
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SkippedTilesWarning)
        one = score_tiles(image, spot_model_path, batch_size=1, progress=False)  # one tile row per band
        many = score_tiles(image, spot_model_path, batch_size=4096, progress=False)  # one band
    np.testing.assert_array_equal(one.scores, many.scores)
    assert one.n_skipped > 0 and one.no_data == many.no_data == pytest.approx((95 * 3 + 40) / (400 * 300))


def test_a_weight_map_marks_no_data(spot_model_path, spot_image):
    image = spot_image((200, 300), spots=[(250, 100)])
    weight = np.ones(image.shape, np.float32)
    weight[:, 200:] = 0.0  # no exposure where the spot is
    with pytest.warns(SkippedTilesWarning, match="33.3% has no data"):
        table = _quiet_wcs(find_lenses, image, spot_model_path, weight=weight, progress=False)
    assert len(table) == 0
    with pytest.raises(ValueError, match="weight must have the same shape as data"):
        _quiet_wcs(find_lenses, image, spot_model_path, weight=weight[:, :10])


def _scaled_int16(image, path, *, bscale, bzero, blank=None):
    raw = np.round((image - bzero) / bscale).astype(np.int16)
    if blank is not None:
        raw[:10, :] = blank
    hdu = fits.PrimaryHDU(raw)
    hdu.header["BSCALE"], hdu.header["BZERO"] = bscale, bzero
    if blank is not None:
        hdu.header["BLANK"] = blank
    hdu.writeto(path)
    return raw


def test_scaled_integer_images_are_read_band_by_band(spot_model_path, spot_image, tmp_path):
    import tracemalloc

    from lenslib.fitsio import ScaledImage

    image = 100.0 + spot_image((300, 400), spots=[(250.5, 150.5)])
    path = tmp_path / "int16.fits"
    raw = _scaled_int16(image, path, bscale=0.01, bzero=100.0, blank=-32768)
    with fits.open(path) as hdul:  # astropy's own reading, whole, for reference
        reference = hdul[0].data.copy()
    hdul, data, _, _ = read_image(path)
    try:
        assert isinstance(data, ScaledImage) and data.shape == (300, 400) and data.dtype == np.float32
        np.testing.assert_allclose(data[40:60], reference[40:60], rtol=1e-6)
        assert np.isnan(data[:10]).all() and np.isnan(reference[:10]).all()  # BLANK: no data
    finally:
        hdul.close()
    table = _quiet(scan_fits, path, spot_model_path, progress=False)
    assert len(table) == 1 and abs(table["x"][0] - 250.5) < 2 and abs(table["y"][0] - 150.5) < 2
    assert table.meta["n_skip"] == 7  # the BLANK rows touch the bottom row of tiles
    # memory stays flat: reading a 100-row band of a 4000x4000 image allocates about that band
    big = tmp_path / "big.fits"
    hdu = fits.PrimaryHDU(np.zeros((4000, 4000), np.int16))
    hdu.header["BSCALE"], hdu.header["BZERO"] = 2.0, 32768.0
    hdu.writeto(big)
    hdul, data, _, _ = read_image(big)
    try:
        tracemalloc.start()
        band = data[1000:1100]
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert band.shape == (100, 4000) and band[0, 0] == 32768.0
        assert peak < 3 * 8 * 100 * 4000  # a few bands' worth (the image is 32 MB raw, 64 MB as float32)
    finally:
        hdul.close()
    assert raw.dtype == np.int16


def test_one_reader_one_set_of_hdu_rules_for_scan_and_predict(tmp_path):
    from lenslib.fitsio import read_cutouts

    cube = np.arange(2 * 100 * 100, dtype=np.int16).reshape(2, 100, 100)
    hdu = fits.ImageHDU(cube, name="CUTOUTS")
    hdu.header["BZERO"] = 10.0
    path = tmp_path / "cube.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU(Table({"a": [1]})), hdu]).writeto(path)
    np.testing.assert_array_equal(read_cutouts(path), cube + 10.0)  # scaled, found past the table
    np.testing.assert_array_equal(read_cutouts(path, "CUTOUTS"), read_cutouts(path, -1))
    for reader in (read_cutouts, read_image):
        with pytest.raises(ValueError, match=r"has no HDU 7: it has 3 \(HDUs: 0 PRIMARY: no data; "
                                             r"1 -: BinTableHDU \(a table\); 2 CUTOUTS: 3-D image"):
            reader(path, 7)
    with pytest.raises(ValueError, match="HDU 2 of .* holds 3-D image .* not a 2-D image"):
        read_image(path, 2)


def test_an_unreachable_scheduler_leaves_no_checkpoint(spot_model_path, spot_image, tmp_path, monkeypatch):
    import lenslib.scan.scoring as scan
    from lenslib.errors import InputError

    def unreachable(scheduler, n_workers):
        raise InputError(f"cannot reach the Dask scheduler at {scheduler}: timed out")

    monkeypatch.setattr(scan, "dask_client", unreachable)
    checkpoint = tmp_path / "ckpt"
    with pytest.raises(ValueError, match="cannot reach the Dask scheduler"):
        _quiet(score_tiles, spot_image((200, 200)), spot_model_path, checkpoint=checkpoint,
               scheduler="tcp://10.255.255.1:8786")
    assert not checkpoint.exists()
    with pytest.raises(ValueError, match="n_workers sets the size of a scheduler='local' cluster"):
        _quiet(score_tiles, spot_image((200, 200)), spot_model_path, n_workers=4)
