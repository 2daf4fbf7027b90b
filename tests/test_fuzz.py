"""A seeded fuzz loop: malformed arrays, configs, FITS headers and command lines thrown at the
public API (``lenslib.predict``, ``lenslib.normalize``, ``lenslib.find_lenses``,
``SimulationConfig``) and at the ``lenslib`` command, in process.

Each case must end in a correct result or in lenslib's documented input error
(:class:`lenslib.errors.InputError`, a ``ValueError``; ``SimulationConfig`` raises ``ValueError``)
whose message names the bad argument (or file); never in another exception (a traceback from
inside a dependency), a hang (each case runs under an alarm), or a changed input file (inputs
are hashed before and after).  numpy's seeded generator drives it, so a failure replays.
"""

import contextlib
import hashlib
import math
import signal
import warnings
from pathlib import Path

import numpy as np
import pytest
from astropy.table import Table

import lenslib
from lenslib.cli import main
from lenslib.config import SimulationConfig
from lenslib.errors import InputError
from lenslib.mosaic import make_wcs

SEED = 20261126
N_CASES = {"arrays": 40, "find_lenses": 30, "configs": 40, "fits": 30, "argv": 15}


class Hang(Exception):
    pass


@contextlib.contextmanager
def time_limit(seconds: int):
    def fire(signum, frame):
        raise Hang(f"no answer within {seconds} s")

    old = signal.signal(signal.SIGALRM, fire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _hash(path) -> str:
    return hashlib.blake2b(Path(path).read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def spot_model(spot_model_path):
    return lenslib.load_model(spot_model_path)


# --- arrays -> lenslib.predict and lenslib.normalize --------------------------------------------------

_SHAPES = [(), (7,), (0, 100, 100), (100, 100), (3, 100, 100), (100, 100, 3), (2, 100, 100, 1),
           (2, 100, 100, 3), (2, 64, 64), (1, 100, 101), (2, 0, 100), (1, 1, 1), (1, 100, 100)]
_DTYPES = ["float32", "float64", "float16", "int16", "uint8", "int64", "bool", "complex64", "object",
           "U3", "datetime64[s]"]


def _pick(rng, options):
    return options[rng.integers(len(options))]


def _random_cutouts(rng):
    if rng.random() < 0.35:  # well-formed, so that correct results are checked too
        shape = _pick(rng, [(100, 100), (3, 100, 100), (2, 100, 100, 1)])
        dtype = _pick(rng, ["float32", "float64", "int16"])
        poison = _pick(rng, ["none", "constant", "zeros"])
    else:
        shape = _SHAPES[rng.integers(len(_SHAPES))]
        dtype = _DTYPES[rng.integers(len(_DTYPES))]
        poison = rng.choice(["none", "none", "nan", "inf", "huge", "constant", "zeros"])
    values = np.array(rng.normal(5.0, 2.0, shape) * 10.0 ** rng.integers(-3, 4))
    if values.size:
        if poison == "nan":
            values.flat[rng.integers(values.size)] = np.nan
        elif poison == "inf":
            values.flat[rng.integers(values.size)] = -np.inf
        elif poison == "huge":
            values.flat[rng.integers(values.size)] = np.finfo(np.float64).max * rng.choice([-1, 1])
        elif poison == "constant":
            values[...] = 3.0
        elif poison == "zeros":
            values[...] = 0.0
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dtype == "object":
            arr = values.astype(object)
        elif dtype == "U3":
            arr = values.astype("U3")
        elif dtype == "datetime64[s]":
            arr = np.nan_to_num(values).astype("int64").astype("datetime64[s]")
        else:
            arr = values.astype(dtype)
    form = rng.choice(["array", "array", "list", "masked", "ragged"])
    if form == "list" and arr.size < 50_000 and dtype not in ("datetime64[s]",):
        listed = arr.tolist()
        return listed, np.asarray(listed)
    if form == "masked":
        return np.ma.masked_array(arr, mask=np.zeros(arr.shape, bool)), arr
    if form == "ragged":
        return [np.zeros((100, 100)), np.zeros((100, 99))], None
    return arr, arr


def _cutouts_ok(arr, size=None) -> bool:
    if arr is None or arr.dtype.kind not in "iuf":
        return False
    shape = arr.shape
    if len(shape) == 2:
        shape = (1, *shape)
    elif len(shape) == 4 and shape[-1] == 1:
        shape = shape[:3]
    if len(shape) != 3 or 0 in shape or (size is not None and shape[1:] != (size, size)):
        return False
    with np.errstate(all="ignore"):
        values = arr.astype(np.float64)
        return bool(np.isfinite(values).all() and (np.abs(values) <= np.finfo(np.float32).max).all())


def _expect_input_error(call, *names):
    with pytest.raises(InputError) as info:
        call()
    assert any(n in str(info.value) for n in names), (names, str(info.value))


def test_fuzz_arrays_into_predict_and_normalize(spot_model):
    rng = np.random.default_rng([SEED, 1])
    valid = 0
    for case in range(N_CASES["arrays"]):
        given, arr = _random_cutouts(rng)
        valid += _cutouts_ok(arr, size=100)
        before = None if arr is None else np.array(arr, copy=True)
        with time_limit(20):
            if _cutouts_ok(arr):
                out = lenslib.normalize(given)
                n = 1 if arr.ndim == 2 else arr.shape[0]
                assert out.dtype == np.float32 and out.shape[0] == n and np.isfinite(out).all(), case
            else:
                _expect_input_error(lambda g=given: lenslib.normalize(g), "cutouts")
            if _cutouts_ok(arr, size=100):
                scores = lenslib.predict(spot_model, given)
                assert scores.shape == (1 if arr.ndim == 2 else arr.shape[0],), case
                assert np.isfinite(scores).all() and ((scores >= 0) & (scores <= 1)).all(), case
            else:
                _expect_input_error(lambda g=given: lenslib.predict(spot_model, g), "cutouts")
        if before is not None and before.dtype.kind in "iuf":
            np.testing.assert_array_equal(np.asarray(arr), before)  # the caller's array is untouched
    assert 3 <= valid <= N_CASES["arrays"] - 3  # both outcomes were exercised


# --- images and options -> lenslib.find_lenses ---------------------------------------------------------

def _same(a, b) -> bool:
    if a.dtype == object:
        return a.shape == b.shape and all(x is y or x == y or (x != x and y != y)
                                          for x, y in zip(a.ravel(), b.ravel()))
    return np.array_equal(a, b, equal_nan=a.dtype.kind in "fc")


_BAD_OPTIONS = {
    "stride": [0, 101, 2.5, "50", True, None],
    "threshold": [-0.1, 1.5, math.nan, "0.5", None],
    "batch_size": [0, 10**6, 3.0, True, -4],
    "min_separation": [-1.0, math.nan, "far"],
    "zero_run": [-1, 10**6, 2.5, None],
}
_GOOD_OPTIONS = {
    "stride": [50, 37, np.int64(100)],
    "threshold": [0.5, 0.0, np.float32(0.9)],
    "batch_size": [256, 7, np.int32(3)],
    "min_separation": [None, 30.0, math.inf],
    "zero_run": [32, 0, 1],
}


def test_fuzz_find_lenses(spot_model, spot_image):
    """Each case is a valid call with at most one fault (about three cases in five have one)."""
    rng = np.random.default_rng([SEED, 2])
    faults = []
    for case in range(N_CASES["find_lenses"]):
        kinds = ["data-shape", "data-dtype", "mask", "weight", "wcs", *_BAD_OPTIONS]
        fault = None if rng.random() < 0.4 else _pick(rng, kinds)
        faults.append(fault)
        shape = _pick(rng, [(100, 100), (150, 230), (130, 140)])
        dtype = _pick(rng, ["float32", "float64", "int16", "uint8"])
        if fault == "data-shape":
            shape = _pick(rng, [(99, 300), (3, 120, 120), (120,), (0, 0)])
        if fault == "data-dtype":
            dtype = _pick(rng, ["bool", "complex64", "object", "U2"])
        plane = shape if len(shape) == 2 and min(shape) > 0 else (120, 120)
        base = np.resize(spot_image(plane, spots=[(60, 60)], seed=case), shape)
        poison = _pick(rng, ["none", "nan-strip", "zero-block", "all-zero", "inf"])
        if len(shape) == 2 and base.size:
            if poison == "nan-strip":
                base[:, :7] = np.nan
            elif poison == "zero-block":
                base[:40, :40] = 0.0
            elif poison == "all-zero":
                base[...] = 0.0
            elif poison == "inf":
                base[3, 3] = np.inf
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if dtype in ("int16", "uint8"):
                data = np.nan_to_num(base * 10, posinf=0).clip(0, 200).astype(dtype)
            else:
                data = base.astype(dtype)
        if rng.random() < 0.2 and len(shape) == 2:
            data = np.ma.masked_array(data, mask=np.zeros(shape, bool))
        kwargs: dict = {}
        if rng.random() < 0.5 and len(shape) == 2:
            kwargs["mask"] = np.where(rng.random(shape) < 0.01, _pick(rng, [True, np.nan, 2]), 0)
        if fault == "mask":
            kwargs["mask"] = _pick(rng, [np.zeros((5, 5), bool), np.full(shape, "x"), "mask.fits",
                                         [[1, 2], [3]]])
        if rng.random() < 0.3 and len(shape) == 2:
            kwargs["weight"] = rng.random(shape)
        if fault == "weight":
            kwargs["weight"] = _pick(rng, [np.ones((3, 3)), np.full(shape, None), 5])
        if rng.random() < 0.5 and len(shape) == 2:
            kwargs["wcs"] = make_wcs(shape, 0.05)
        if fault == "wcs":
            kwargs["wcs"] = _pick(rng, [make_wcs((80, 90), 0.05), "RA---TAN", 3])
        for name in _GOOD_OPTIONS:
            if fault == name:
                kwargs[name] = _pick(rng, _BAD_OPTIONS[name])
            elif rng.random() < 0.35:
                kwargs[name] = _pick(rng, _GOOD_OPTIONS[name])
        before = np.array(data, copy=True)
        with time_limit(30), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if fault is not None:
                names = ["data"] if fault.startswith("data") else [fault]
                _expect_input_error(
                    lambda d=data, kw=kwargs: lenslib.find_lenses(d, spot_model, progress=False, **kw),
                    *names)
            else:
                table = lenslib.find_lenses(data, spot_model, progress=False, **kwargs)
                assert isinstance(table, Table) and 0 <= table.meta["no_data"] <= 1, case
                if not np.any(np.asarray(data)) and kwargs.get("zero_run", 32) > 0:  # a blank image
                    assert len(table) == 0 and table.meta["no_data"] == 1.0, case
                if "wcs" in kwargs:
                    assert "skycoord" in table.colnames, case
        assert _same(np.asarray(data), np.asarray(before)), case  # the caller's image is untouched
    n_faulty = sum(f is not None for f in faults)
    assert 3 <= n_faulty <= len(faults) - 3  # both outcomes were exercised


# --- SimulationConfig -----------------------------------------------------------------------------------

_SCALAR_FIELDS = ["image_size", "n_lenses", "n_nonlenses", "augment_copies", "seed", "supersampling",
                  "min_arc_snr", "min_arc_visibility", "min_magnification", "twin_neighbour_fraction",
                  "deflector_sigma_v_median", "deflector_z_mean", "source_z_mean", "field_density_at_24",
                  "field_count_slope", "star_density_per_arcmin2", "artifact_probability"]
_INTERVAL_FIELDS = ["theta_e_range", "source_mag_range", "source_r_eff_range", "field_mag_range"]
_SCALAR_JUNK = [math.nan, math.inf, -math.inf, -1, "1", None, True, [1], 1e300, 1j]
_INTERVAL_JUNK = [(math.nan, 1.0), (2.0, 1.0), (1,), "ab", None, (1.0, math.inf), ((1, 2), (3, 4)),
                  [1.0, 2.0]]


def _mix_junk(kind):
    return [((kind, math.nan),), (("unknown", 1.0),), (), None, ((kind, -1.0),), ((kind, 0.0),),
            ((kind, "1"),), ((kind, 1.0), (kind, 1.0)), [(kind, 1.0)], ((kind, math.inf),), ((kind, True),)]


def test_fuzz_simulation_config():
    rng = np.random.default_rng([SEED, 3])
    for case in range(N_CASES["configs"]):
        group = rng.integers(4)
        if group == 0:
            field, pool = _pick(rng, _SCALAR_FIELDS), _SCALAR_JUNK
        elif group == 1:
            field, pool = _pick(rng, _INTERVAL_FIELDS), _INTERVAL_JUNK
        elif group == 2:
            field, pool = "lens_kinds", _mix_junk("galaxy_galaxy")
        else:
            field, pool = "nonlens_kinds", _mix_junk("spiral")
        value = _pick(rng, pool)
        with pytest.raises(ValueError, match=rf"SimulationConfig\.{field} must be"):
            SimulationConfig(**{field: value})
        assert SimulationConfig(n_lenses=int(rng.integers(1, 50))).n_images > 0, case


# --- FITS files with malformed headers -> lenslib scan / predict -------------------------------------------

def _card(key: str, value) -> str:
    if isinstance(value, bool):
        text = "T" if value else "F"
    elif isinstance(value, str) and value.startswith("RAW:"):
        text = value[4:]
    elif isinstance(value, str):
        text = "'" + value.replace("'", "''") + "'"
    else:
        text = repr(value)
    return f"{key:<8}= {text:>20}"


def _fits(cards: list[str], data: bytes) -> bytes:
    header = "".join(c[:80].ljust(80) for c in cards + ["END"]).encode("ascii", "replace")
    header += b" " * (-len(header) % 2880)
    return header + data + b"\0" * (-len(data) % 2880)


_BITPIX = {8: ">u1", 16: ">i2", 32: ">i4", 64: ">i8", -32: ">f4", -64: ">f8"}


def _random_fits(rng, image) -> bytes:
    bitpix = _pick(rng, [-32, -32, -64, 16, 16, 32, 8, 64])
    ny, nx = image.shape
    if bitpix > 0:
        info = np.iinfo(_BITPIX[bitpix])
        pixels = np.clip(np.round(image * 100), info.min, info.max)
    else:
        pixels = image
    data = pixels.astype(_BITPIX[bitpix]).tobytes()
    keys = {"BITPIX": bitpix, "NAXIS": 2, "NAXIS1": nx, "NAXIS2": ny}
    extra: dict = {}
    mutations = set(rng.choice(["bitpix", "naxis", "naxis1", "bscale", "bzero", "blank", "wcs", "wcs-bad",
                                "truncate", "junk-card", "flip", "extension", "none"],
                               size=int(rng.integers(1, 3)), replace=False))
    for m in sorted(mutations):
        if m == "bitpix":
            keys["BITPIX"] = _pick(rng, [12, "16", -16, 0])
        elif m == "naxis":
            keys["NAXIS"] = _pick(rng, [0, 1, 3, -1, "RAW:2.5"])
            if keys["NAXIS"] == 3:
                keys["NAXIS3"] = 1
        elif m == "naxis1":
            keys["NAXIS1"] = _pick(rng, [nx + 7, 0, "RAW:'a'", 10**9])
        elif m == "bscale":
            extra["BSCALE"] = _pick(rng, [0.5, 0, 1e-30, "x", "RAW:NAN", -2.0])
        elif m == "bzero":
            extra["BZERO"] = _pick(rng, [32768, -1e6, "a", 1e300])
        elif m == "blank":
            extra["BLANK"] = _pick(rng, [-32768, 0, 1.5, "b", 127])
        elif m == "wcs":
            extra.update({"CTYPE1": "RA---TAN", "CTYPE2": "DEC--TAN", "CRPIX1": nx / 2, "CRPIX2": ny / 2,
                          "CRVAL1": 150.1, "CRVAL2": 2.2, "CDELT1": -1.4e-5, "CDELT2": 1.4e-5})
        elif m == "wcs-bad":
            extra.update({"CTYPE1": _pick(rng, ["RA---XYZ", "RA---TAN", "FREQ"]), "CTYPE2": "DEC--TAN",
                          "CRVAL1": _pick(rng, [150.0, "abc", 1e308]), "CDELT1": _pick(rng, [0.0, -1e-5]),
                          "CDELT2": _pick(rng, [0.0, 1e-5]), "CRPIX1": _pick(rng, ["RAW:NAN", 1.0])})
        elif m == "truncate":
            data = data[: int(rng.integers(0, len(data)))]
        elif m == "junk-card":
            extra["JUNK"] = "RAW:'unterminated"
    if "extension" in mutations:  # the image in an IMAGE extension named SCI, after an empty primary
        primary = _fits([_card("SIMPLE", True), _card("BITPIX", 8), _card("NAXIS", 0), _card("EXTEND", True)],
                        b"")
        head = {"XTENSION": "IMAGE", **keys, "PCOUNT": 0, "GCOUNT": 1, "EXTNAME": "SCI"}
    else:
        primary, head = b"", {"SIMPLE": True, **keys}
    raw = primary + _fits([_card(k, v) for k, v in {**head, **extra}.items()], data)
    if "flip" in mutations:
        raw = bytearray(raw)
        for _ in range(int(rng.integers(1, 4))):
            raw[int(rng.integers(len(primary), len(primary) + 2880))] = int(rng.integers(0, 256))
        raw = bytes(raw)
    return raw


def _check_cli_result(rc, err, names, out, command):
    assert "Traceback" not in err, err
    assert rc in (0, 2), (rc, err)
    if rc == 2:
        last = err.strip().splitlines()[-1]
        assert last.startswith(f"lenslib {command}: error:"), err
        assert any(name in last for name in names), (names, err)
    elif out is not None:
        Table.read(out)


def test_fuzz_fits_headers_through_the_cli(spot_model_path, spot_image, tmp_path, capsys):
    rng = np.random.default_rng([SEED, 4])
    model_hash = _hash(spot_model_path)
    codes = []
    for case in range(N_CASES["fits"]):
        image = spot_image((120, 130), spots=[(65, 60)], seed=case)
        path = tmp_path / f"case{case}.fits"
        path.write_bytes(_random_fits(rng, image))
        before = _hash(path)
        out = tmp_path / f"case{case}.ecsv"
        hdu = _pick(rng, [[], [], ["--hdu", "0"], ["--hdu", "1"], ["--hdu", "-1"], ["--hdu", "SCI"],
                          ["--hdu", "99"]])
        with time_limit(60):
            rc = main(["scan", str(path), "--model", str(spot_model_path), "--out", str(out), "--no-progress",
                       *hdu])
        _check_cli_result(rc, capsys.readouterr().err, [path.name, "HDU"], out if rc == 0 else None, "scan")
        codes.append(rc)
        if case % 3 == 0:
            with time_limit(60):
                rc = main(["predict", str(path), "--model", str(spot_model_path), *hdu])
            _check_cli_result(rc, capsys.readouterr().err, [path.name, "HDU", "cutouts"], None, "predict")
        assert _hash(path) == before and _hash(spot_model_path) == model_hash, case
    assert codes.count(0) >= 3 and codes.count(2) >= 3  # files read and scanned, and files refused


_ARGV_OPTIONS = {  # option: (good values, bad values)
    "--stride": (["50", "25", "100"], ["0", "-5", "1e3", "abc", "101"]),
    "--threshold": (["0.5", "0.9"], ["nan", "2", "-1", "x"]),
    "--batch-size": (["1", "64"], ["0", "9999999", "3.5"]),
    "--zero-run": (["0", "32"], ["-1", "200", "q"]),
    "--min-separation": (["10", "inf"], ["-3", "nan"]),
    "--hdu": (["0", "PRIMARY", "-1"], ["5", "SCI"]),
}


def test_fuzz_command_lines(spot_model_path, spot_image, tmp_path, capsys):
    """Each case is a valid command line with at most one fault (about three in five have one)."""
    from astropy.io import fits

    rng = np.random.default_rng([SEED, 5])
    image = tmp_path / "image.fits"
    fits.PrimaryHDU(spot_image((150, 150), spots=[(75, 75)])).writeto(image)
    before = (_hash(image), _hash(spot_model_path))
    codes = []
    for case in range(N_CASES["argv"]):
        fault = None if rng.random() < 0.4 else _pick(rng, ["--out", *_ARGV_OPTIONS])
        out = tmp_path / f"c{case}.{_pick(rng, ['fits', 'ecsv', 'csv'])}"
        if fault == "--out":
            out = _pick(rng, [tmp_path / f"c{case}.txt", image, tmp_path, spot_model_path])
        argv = ["scan", str(image), "--model", str(spot_model_path), "--no-progress", "--out", str(out)]
        names = [image.name, out.name, "HDU"]
        for option, (good, bad) in _ARGV_OPTIONS.items():
            if option == fault:
                argv += [option, _pick(rng, bad)]
                names.append(option[2:].replace("-", "_"))
            elif rng.random() < 0.4:
                argv += [option, _pick(rng, good)]
        try:
            with time_limit(60):
                rc = main(argv)
        except SystemExit as exc:  # argparse: usage and a one-line error, status 2
            assert exc.code == 2 and fault is not None, argv
            assert "error:" in capsys.readouterr().err
            rc = 2
        else:
            _check_cli_result(rc, capsys.readouterr().err, names, out if rc == 0 else None, "scan")
        assert (rc == 0) == (fault is None), (argv, rc)
        codes.append(rc)
        assert (_hash(image), _hash(spot_model_path)) == before, argv
    assert codes.count(0) >= 3 and codes.count(2) >= 3


def test_enough_cases():
    assert sum(N_CASES.values()) >= 100
