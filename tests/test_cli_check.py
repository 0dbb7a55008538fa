"""``mnfn check``: random group elements preserve the function of the sample architectures."""

from __future__ import annotations

import re

import pytest

from mnfn.cli import main

LAST_LINE = re.compile(r"^max relative function error: (\S+)$")


def _run(capsys, *args: str) -> tuple[int, str, str, float | None]:
    rc = main(["check", *args])
    out, err = capsys.readouterr()
    lines = out.strip().splitlines()
    m = LAST_LINE.match(lines[-1]) if lines else None
    return rc, out, err, (float(m.group(1)) if m else None)


@pytest.mark.parametrize("activation", ["relu", "tanh", "sin"])
@pytest.mark.parametrize("arch", ["mlp", "zoo-cnn", "siren"])
def test_check_float64(capsys, arch, activation):
    rc, out, err, value = _run(capsys, "--arch", arch, "--activation", activation, "--dtype", "float64",
                               "--scale-lo", "1e-3", "--scale-hi", "1e3", "--trials", "4")
    assert rc == 0, out + err
    assert out.strip().splitlines()[-1].startswith("max relative function error:")
    assert value is not None and value <= 1e-10, out
    expected = {"relu": "scale", "tanh": "sign", "sin": "sign"}[activation]
    assert f"hidden symmetries: {expected}" in out


def test_check_defaults(capsys):
    rc, out, _, value = _run(capsys)
    assert rc == 0 and value is not None and value <= 1e-10
    assert "dtype: float64" in out


@pytest.mark.parametrize("arch, activation", [("mlp", "relu"), ("zoo-cnn", "relu"), ("zoo-cnn", "tanh"), ("siren", "sin")])
def test_check_float32(capsys, arch, activation):
    rc, out, err, value = _run(capsys, "--arch", arch, "--activation", activation, "--dtype", "float32")
    assert rc == 0, out + err
    assert "tolerance 0.0001" in out
    assert value is not None and value <= 1e-4


def test_check_fails_above_tolerance(capsys):
    # float32 rounding under scales up to 1e3 cannot be exactly zero; a zero tolerance must fail.
    rc, out, _, value = _run(capsys, "--arch", "mlp", "--activation", "relu", "--dtype", "float32",
                             "--scale-lo", "1e-3", "--scale-hi", "1e3", "--tol", "0")
    assert rc != 0
    assert value is not None and value > 0


def test_check_bad_activation(capsys):
    rc = main(["check", "--arch", "mlp", "--activation", "swish"])
    out, err = capsys.readouterr()
    assert rc != 0
    assert "unknown activation 'swish'" in err and "relu" in err
    assert "Traceback" not in err


def test_check_bad_arch(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["check", "--arch", "resnet"])
    assert exc.value.code != 0
    assert "invalid choice: 'resnet'" in capsys.readouterr().err


def test_check_is_seeded(capsys):
    first = _run(capsys, "--arch", "mlp", "--activation", "relu", "--seed", "3")
    second = _run(capsys, "--arch", "mlp", "--activation", "relu", "--seed", "3")
    assert first[1] == second[1]
