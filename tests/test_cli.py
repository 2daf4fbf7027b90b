"""The ``lenslib`` command end to end on tiny inputs: scan, predict, simulate, cv."""

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from astropy.io import ascii, fits
from astropy.table import Table

from lenslib.cli import main
from lenslib.mosaic import make_wcs


@pytest.fixture
def field_fits(tmp_path, spot_image):
    """A 200x300 image with a WCS and one bright source on a tile centre, in HDU 1 'SCI'."""
    wcs = make_wcs((200, 300), 0.05)
    path = tmp_path / "field.fits"
    image = spot_image((200, 300), spots=[(149.5, 99.5)])
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(image, header=wcs.to_header(), name="SCI")]).writeto(path)
    return path


def test_scan_writes_a_catalog_and_a_gallery(field_fits, spot_model_path, tmp_path, capsys):
    out, gallery = tmp_path / "cands.fits", tmp_path / "cands.png"
    rc = main(["scan", str(field_fits), "--model", str(spot_model_path), "--out", str(out),
               "--gallery", str(gallery), "--no-progress"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "1 candidate(s) written to" in captured.out and "0 skipped" in captured.out
    table = Table.read(out)
    assert len(table) == 1 and abs(table["x"][0] - 149.5) < 1 and abs(table["y"][0] - 99.5) < 1
    assert gallery.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not out.with_name(out.name + ".scan-checkpoint").exists()  # removed once written
    refined = tmp_path / "refined.fits"
    assert main(["scan", str(field_fits), "--model", str(spot_model_path), "--out", str(refined),
                 "--refine", "0.5", "--no-progress"]) == 0
    assert "0 skipped, 1 refined;" in capsys.readouterr().out
    assert Table.read(refined).meta["N_REFINE"] == 1


def test_scan_keeps_an_explicit_checkpoint_and_resumes_from_it(field_fits, spot_model_path, tmp_path, capsys):
    checkpoint = tmp_path / "progress"
    args = ["scan", str(field_fits), "--model", str(spot_model_path), "--out", str(tmp_path / "c.csv"),
            "--checkpoint", str(checkpoint), "--stride", "25", "--no-progress"]
    assert main(args) == 0
    assert (checkpoint / "scan.json").is_file()
    assert main(args) == 0
    assert "0 tiles scored, 45 resumed" in capsys.readouterr().out.splitlines()[-1]


def test_scan_reports_bad_input_on_stderr_with_status_2(tmp_path, spot_model_path, field_fits, capsys):
    text = tmp_path / "image.fits"
    text.write_text("not a FITS file")
    cases = [
        (["scan", str(text)], "image.fits is not a FITS file"),
        (["scan", str(field_fits), "--hdu", "0"], "holds no data, not a 2-D image"),
        (["scan", str(field_fits), "--out", str(tmp_path / "c.txt")], "format follows its extension"),
        (["scan", str(field_fits), "--threshold", "2"], "threshold must be a number in [0.0, 1.0]"),
        (["scan", str(field_fits), "--refine", "2"], "refine must be a number in [0.0, 1.0]"),
        (["scan", str(field_fits), "--model", str(tmp_path / "none.keras")], "model file not found"),
    ]
    for argv, message in cases:
        if "--model" not in argv:
            argv = argv + ["--model", str(spot_model_path)]
        if "--out" not in argv:
            argv = argv + ["--out", str(tmp_path / "c.ecsv")]
        assert main(argv + ["--no-progress"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("lenslib scan: error:") and message in err, err


def test_scan_warns_on_stderr_when_the_image_has_no_wcs(tmp_path, spot_model_path, spot_image, capsys):
    path = tmp_path / "plain.fits"
    fits.PrimaryHDU(spot_image((150, 150), spots=[(74.5, 74.5)])).writeto(path)
    out = tmp_path / "c.ecsv"
    assert main(["scan", str(path), "--model", str(spot_model_path), "--out", str(out), "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "lenslib: warning: no WCS given: the candidates have pixel coordinates only" in err
    assert "ra" not in Table.read(out).colnames


def test_predict_scores_npy_and_fits_cutouts(tmp_path, spot_model_path, spot_image, capsys):
    cutouts = np.stack([spot_image((100, 100), seed=1), spot_image((100, 100), spots=[(49.5, 49.5)], seed=2)])
    npy = tmp_path / "cutouts.npy"
    np.save(npy, cutouts)
    assert main(["predict", str(npy), "--model", str(spot_model_path)]) == 0
    table = ascii.read(capsys.readouterr().out, format="csv")
    assert list(table["index"]) == [0, 1]
    assert table["score"][0] < 0.5 < table["score"][1]

    cube = tmp_path / "cutouts.fits"
    fits.PrimaryHDU(cutouts).writeto(cube)
    out = tmp_path / "scores.ecsv"
    assert main(["predict", str(cube), "--model", str(spot_model_path), "--out", str(out)]) == 0
    np.testing.assert_allclose(Table.read(out)["score"], table["score"], rtol=1e-5)


def test_predict_reports_bad_cutouts(tmp_path, spot_model_path, capsys):
    wrong = tmp_path / "wrong.npy"
    np.save(wrong, np.zeros((3, 64, 64), np.float32))
    with_nan = tmp_path / "nan.npy"
    np.save(with_nan, np.full((1, 100, 100), np.nan, np.float32))
    table = tmp_path / "table.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU(Table({"a": [1]}))]).writeto(table)
    for path, message in [(wrong, "must be 100x100 pixels"), (with_nan, "NaN or infinite pixels"),
                          (table, "no HDU with 2-D or 3-D image data"),
                          (tmp_path / "missing.npy", "cutouts not found")]:
        assert main(["predict", str(path), "--model", str(spot_model_path)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("lenslib predict: error:") and message in err, err


def test_simulate_prints_the_dataset_path(smoke_dataset_path, capsys):
    data_dir = Path(smoke_dataset_path).parent
    assert main(["simulate", "--profile", "smoke", "--data-dir", str(data_dir), "--no-progress"]) == 0
    assert capsys.readouterr().out.strip() == str(smoke_dataset_path)


def test_cv_writes_a_table_and_resumes_finished_folds(smoke_dataset_path, tmp_path, capsys):
    argv = ["cv", "--profile", "smoke", "--models", "gmm", "--modes", "grouped", "thesis",
            "--data-dir", str(Path(smoke_dataset_path).parent), "--results-dir", str(tmp_path)]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "gmm [grouped] fold 2/2: trained" in captured.err
    table = Table.read(tmp_path / "smoke" / "cv_table.ecsv")
    assert list(table["model"]) == ["gmm", "gmm"] and list(table["split"]) == ["grouped", "thesis"]
    assert list(table["weights"]) == ["scikit-learn", "scikit-learn"]
    assert np.isfinite(table["roc_auc"]).all() and "table written to" in captured.out
    assert main(argv + ["--out", str(tmp_path / "again.csv")]) == 0
    assert "gmm [grouped] fold 1/2: loaded from" in capsys.readouterr().err
    again = Table.read(tmp_path / "again.csv")  # resumed from the saved folds: the same table
    np.testing.assert_allclose(again["roc_auc"], table["roc_auc"], rtol=1e-6)
    np.testing.assert_array_equal(again["seconds"], table["seconds"])  # the first run's times, kept
    assert (table["seconds"] > 0).all()
    assert main(argv + ["--out", str(tmp_path / "table.txt")]) == 2
    assert "format follows its extension" in capsys.readouterr().err


def test_help_and_usage_errors(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert all(cmd in out for cmd in ("scan", "predict", "simulate", "cv"))
    with pytest.raises(SystemExit) as exc:
        main([])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        main(["scan", "x.fits", "--model", "m.keras", "--out", "c.fits", "--stride", "0"])
    assert exc.value.code == 2 and "must be a positive integer" in capsys.readouterr().err


def test_the_console_script_runs():
    """The installed ``lenslib`` script (pyproject's [project.scripts]), not ``python -m``."""
    script = shutil.which("lenslib", path=str(Path(sys.executable).parent))
    assert script is not None, f"no lenslib script beside {sys.executable}: is the package installed?"
    proc = subprocess.run([script, "--version"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.startswith("lenslib ")


# --- hostile input (issue 14) ---------------------------------------------------------------------

def _digest(path):
    import hashlib

    return hashlib.blake2b(Path(path).read_bytes()).hexdigest()


def test_an_output_that_is_an_input_is_refused_before_any_work(field_fits, spot_model_path, tmp_path,
                                                                capsys):
    import os

    before = _digest(field_fits)
    link = tmp_path / "link.fits"
    link.symlink_to(field_fits)
    hard = tmp_path / "hard.fits"
    os.link(field_fits, hard)
    for out in (field_fits, link, hard):
        rc = main(["scan", str(field_fits), "--model", str(spot_model_path), "--out", str(out),
                   "--no-progress"])
        err = capsys.readouterr().err
        assert rc == 2 and "writing it would destroy the input" in err, err
    assert _digest(field_fits) == before
    # the model is an input too
    model_before = _digest(spot_model_path)
    assert main(["scan", str(field_fits), "--model", str(spot_model_path), "--out",
                 str(tmp_path / "m.fits"), "--gallery", str(spot_model_path), "--no-progress"]) == 2
    assert _digest(spot_model_path) == model_before
    # predict: the cutouts file, and its hard link
    cube = tmp_path / "cube.fits"
    fits.PrimaryHDU(np.zeros((2, 100, 100), np.float32)).writeto(cube)
    cube_before = _digest(cube)
    os.link(cube, tmp_path / "cube-link.fits")
    for out in (cube, tmp_path / "cube-link.fits"):
        assert main(["predict", str(cube), "--model", str(spot_model_path), "--out", str(out)]) == 2
        assert "writing it would destroy the input" in capsys.readouterr().err
    assert _digest(cube) == cube_before


def test_only_files_lenslib_wrote_are_overwritten(field_fits, spot_model_path, tmp_path, capsys):
    notes = tmp_path / "notes.csv"
    notes.write_text("my,own,notes\n1,2,3\n")
    sources = tmp_path / "sources.csv"  # begins like a catalog, but names columns lenslib never writes
    sources.write_text("id,x,y,mag,notes\n1,10.5,20.5,21.3,my list\n")
    scores = tmp_path / "scores.csv"
    scores.write_text("index,score,grade\n0,0.5,A\n")
    mine = tmp_path / "mine.fits"
    fits.PrimaryHDU(np.ones((5, 5))).writeto(mine)
    for out in (notes, sources, mine):
        before = _digest(out)
        argv = ["scan", str(field_fits), "--model", str(spot_model_path), "--out", str(out), "--no-progress"]
        assert main(argv) == 2
        assert "is not a file lenslib wrote" in capsys.readouterr().err
        assert _digest(out) == before
    # a catalog lenslib wrote is replaced, in every format
    for name in ("c.fits", "c.ecsv", "c.csv"):
        argv = ["scan", str(field_fits), "--model", str(spot_model_path), "--out", str(tmp_path / name),
                "--no-progress"]
        assert main(argv) == 0 and main(argv) == 0, capsys.readouterr().err
    cutouts = tmp_path / "cutouts.npy"
    np.save(cutouts, np.zeros((2, 100, 100), np.float32))
    for name in ("s.csv", "s.fits"):
        argv = ["predict", str(cutouts), "--model", str(spot_model_path), "--out", str(tmp_path / name)]
        assert main(argv) == 0 and main(argv) == 0, capsys.readouterr().err
    for out in (notes, scores):
        assert main(["predict", str(cutouts), "--model", str(spot_model_path), "--out", str(out)]) == 2
    assert scores.read_text().startswith("index,score,grade")
    table = Table.read(tmp_path / "s.fits")  # which model scored the cutouts
    assert table.meta["MODEL"] == str(spot_model_path) and table.meta["TRANSFRM"] == 1


def test_weights_and_masks_come_from_the_right_extension(spot_model_path, spot_image, tmp_path, capsys):
    wcs = make_wcs((200, 300), 0.05)
    image = spot_image((200, 300), spots=[(149.5, 99.5)])
    weight = np.ones(image.shape, np.float32)
    weight[:, :60] = 0.0
    drz = tmp_path / "field_drz.fits"  # a drizzled HST product: SCI, then WHT and CTX
    context = np.ones(image.shape, np.int32)
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(image, header=wcs.to_header(), name="SCI"),
                  fits.ImageHDU(weight, name="WHT"), fits.ImageHDU(context, name="CTX")]).writeto(drz)
    out = tmp_path / "c.ecsv"
    base = ["scan", str(drz), "--model", str(spot_model_path), "--out", str(out), "--no-progress"]
    for weight_arg in (str(drz), f"{drz}[WHT]", f"{drz}[2]"):  # named WHT: found without being named
        assert main(base + ["--weight", weight_arg]) == 0, capsys.readouterr().err
        table = Table.read(out)
        assert table.meta["no_data"] == pytest.approx(0.2) and len(table) == 1
    assert main(base + ["--weight", f"{drz}[SCI]"]) == 2  # the image itself, named or not
    assert "the scanned image itself" in capsys.readouterr().err
    plain = tmp_path / "field.fits"
    fits.PrimaryHDU(image, header=wcs.to_header()).writeto(plain)
    assert main(["scan", str(plain), "--model", str(spot_model_path), "--out", str(out), "--no-progress",
                 "--mask", str(plain)]) == 2
    assert "name the mask's extension" in capsys.readouterr().err
    assert main(base + ["--weight", f"{drz}[WHT]", "--out", str(drz)]) == 2  # still an input
    assert "destroy the input" in capsys.readouterr().err
    assert main(["scan", f"{drz}[SCI]", "--model", str(spot_model_path), "--out", str(out),
                 "--no-progress"]) == 0
    weight_first = tmp_path / "weight_first.fits"  # the science image is found though stored second
    fits.HDUList([fits.PrimaryHDU(weight), fits.ImageHDU(image, name="SCI")]).writeto(weight_first)
    fits.setval(weight_first, "EXTNAME", value="WHT", ext=0)
    assert main(["scan", str(weight_first), "--model", str(spot_model_path), "--out", str(out),
                 "--no-progress"]) == 0
    assert Table.read(out).meta["hdu"] == 1 and len(Table.read(out)) == 1
    assert main(["scan", str(tmp_path), "--model", str(spot_model_path), "--out", str(out)]) == 2
    assert "is a directory, not a FITS file" in capsys.readouterr().err


def test_an_extension_version_and_a_plane_with_a_unit_axis_are_read(spot_model_path, spot_image, tmp_path,
                                                                     capsys):
    image = spot_image((200, 300), spots=[(149.5, 99.5)])
    two = tmp_path / "two.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(np.zeros_like(image), name="SCI", ver=1),
                  fits.ImageHDU(image, name="SCI", ver=2)]).writeto(two)
    out = tmp_path / "c.ecsv"
    assert main(["scan", str(two), "--hdu", "SCI,2", "--model", str(spot_model_path), "--out", str(out),
                 "--no-progress"]) == 0, capsys.readouterr().err
    assert len(Table.read(out)) == 1 and Table.read(out).meta["hdu"] == 2
    cube = tmp_path / "cube.fits"
    fits.PrimaryHDU(image[None]).writeto(cube)  # NAXIS3 = 1
    assert main(["scan", str(cube), "--model", str(spot_model_path), "--out", str(out), "--no-progress"]) == 0
    assert len(Table.read(out)) == 1


def test_more_bad_input_gives_one_line_and_status_2(field_fits, spot_model_path, tmp_path, capsys):
    import zipfile

    empty = tmp_path / "empty.npy"
    empty.write_bytes(b"")
    rgb = tmp_path / "rgb.npy"
    np.save(rgb, np.zeros((100, 100, 3), np.float32))
    complex_ = tmp_path / "complex.npy"
    np.save(complex_, np.zeros((2, 100, 100), np.complex64))
    corrupt = tmp_path / "corrupt.keras"
    corrupt.write_bytes(b"PK" + bytes(300))
    not_a_model = tmp_path / "other.keras"
    with zipfile.ZipFile(not_a_model, "w") as z:
        z.writestr("notes.txt", "hello")
    a_dir = tmp_path / "a-directory.fits"
    a_dir.mkdir()
    npy = tmp_path / "ok.npy"
    np.save(npy, np.zeros((2, 100, 100), np.float32))
    model = str(spot_model_path)
    cases = [
        (["scan", str(field_fits), "--model", model, "--out", str(tmp_path / "c.fits"), "--hdu", "99"],
         "has no HDU 99"),
        (["scan", str(field_fits), "--model", model, "--out", str(tmp_path / "c.fits"), "--hdu", "NOPE"],
         "has no HDU 'NOPE'"),
        # the directory is found before anything is read (the model does not even exist)
        (["scan", str(field_fits), "--model", str(tmp_path / "none.keras"), "--out", str(a_dir)],
         "is a directory"),
        (["scan", str(field_fits), "--model", str(corrupt), "--out", str(tmp_path / "c.fits")],
         "is not (302 bytes; truncated or corrupt?)"),
        (["predict", str(npy), "--model", str(not_a_model)], "cannot load"),
        (["predict", str(empty), "--model", model], "empty.npy is not a readable .npy array (an empty file)"),
        (["predict", str(rgb), "--model", model],
         "got shape (100, 100, 3): one 100x100 image with 3 channels"),
        (["predict", str(complex_), "--model", model], "real numbers (got complex dtype complex64)"),
        (["predict", str(field_fits), "--model", model, "--hdu", "99"], "has no HDU 99"),
        (["predict", str(npy), "--model", model, "--out", str(a_dir)], "is a directory"),
    ]
    for argv, message in cases:
        rc = main(argv + (["--no-progress"] if argv[0] == "scan" else []))
        err = capsys.readouterr().err
        assert rc == 2, (argv, err)
        assert err.startswith(f"lenslib {argv[0]}: error:") and message in err, (argv, err)
        assert "File not found" not in err and err.count("\n") == 1, err
    assert not list(tmp_path.glob("*.scan-checkpoint")) and not (tmp_path / "c.fits").exists()


def test_cv_without_reachable_weights_says_so_before_any_work(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LENSLIB_OFFLINE", "1")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    rc = main(["cv", "--profile", "smoke", "--models", "xception", "--allow-download",
               "--data-dir", str(tmp_path / "data"), "--results-dir", str(tmp_path / "results")])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("lenslib cv: error: ImageNet weights for xception are not cached"), err
    assert not (tmp_path / "data").exists()  # failed before simulating anything


def test_a_bad_profile_in_the_environment_is_bad_input(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LENSLIB_PROFILE", "huge")
    assert main(["simulate", "--data-dir", str(tmp_path)]) == 2
    assert "profile must be one of" in capsys.readouterr().err


def test_mask_and_weight_maps_and_no_data_are_reported(field_fits, spot_model_path, tmp_path, capsys):
    mask = np.zeros((200, 300), np.uint8)
    mask[:, :40] = 1
    weight = np.ones((200, 300), np.float32)
    weight[160:, :] = 0
    fits.PrimaryHDU(mask).writeto(tmp_path / "mask.fits")
    fits.PrimaryHDU(weight).writeto(tmp_path / "weight.fits")
    out = tmp_path / "c.ecsv"
    rc = main(["scan", str(field_fits), "--model", str(spot_model_path), "--out", str(out), "--no-progress",
               "--mask", str(tmp_path / "mask.fits"), "--weight", str(tmp_path / "weight.fits")])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    expected = 100 * (200 * 40 + 40 * 260) / (200 * 300)
    # Tiles every 50 pixels: those at x0 = 0 (40 masked columns) or y0 = 100 (40 zero-weight rows)
    # miss far more than 2% of their pixels; the rest cover columns 50-299 and rows 0-149.
    unsearched = 100 * (1 - 250 * 150 / (200 * 300))
    assert f"{unsearched:.3g}% of the image lies in no scored tile" in captured.err
    assert f"{expected:.3g}% has no data" in captured.err
    summary = f"{expected:.3g}% of the image had no data, {unsearched:.3g}% lay in no scored tile"
    assert summary in captured.out
    table = Table.read(out)
    assert len(table) == 1 and table.meta["n_skip"] > 0  # the source at (149.5, 99.5) is clear of both
    fits.PrimaryHDU(np.zeros((10, 10))).writeto(tmp_path / "small.fits")
    assert main(["scan", str(field_fits), "--model", str(spot_model_path), "--out", str(out), "--no-progress",
                 "--mask", str(tmp_path / "small.fits")]) == 2
    assert "the mask" in capsys.readouterr().err


def test_batch_size_and_workers_are_bounded_and_workers_are_used(field_fits, spot_model_path, tmp_path,
                                                                 monkeypatch, capsys):
    import lenslib.cli
    import lenslib.scan

    assert lenslib.cli.MAX_BATCH_SIZE == lenslib.scan.MAX_BATCH_SIZE
    for argv in (["scan", str(field_fits), "--model", "m.keras", "--out", "c.fits", "--batch-size", "100000"],
                 ["predict", "x.npy", "--model", "m.keras", "--batch-size", "1000000"],
                 ["simulate", "--workers", "100000"]):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2 and "must be at most" in capsys.readouterr().err
    seen = {}

    def fake_scan(*args, **kwargs):
        seen.update(kwargs)
        return Table({"id": []}, meta={"n_scored": 0, "n_resume": 0, "n_skip": 0, "no_data": 0.0,
                                          "unsearch": 0.0})

    monkeypatch.setattr(lenslib.scan, "scan_fits", fake_scan)
    argv = ["scan", str(field_fits), "--model", str(spot_model_path), "--out", str(tmp_path / "c.fits"),
            "--workers", "2", "--no-progress"]
    assert main(argv) == 0
    assert seen["scheduler"] == "local" and seen["n_workers"] == 2  # --workers alone: a local cluster
    assert main(argv + ["--scheduler", "tcp://127.0.0.1:8786"]) == 2
    assert "--workers sets the size of a local cluster" in capsys.readouterr().err
