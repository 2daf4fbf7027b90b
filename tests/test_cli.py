"""The ``lenslib`` command end to end on tiny inputs: scan, predict, simulate, cv."""

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
    assert 0.0 <= table["roc_auc"][0] <= 1.0 and "table written to" in captured.out
    assert main(argv + ["--out", str(tmp_path / "again.csv")]) == 0
    assert "gmm [grouped] fold 1/2: loaded from" in capsys.readouterr().err
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
    proc = subprocess.run([sys.executable, "-m", "lenslib.cli", "--version"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0 and proc.stdout.startswith("lenslib ")
