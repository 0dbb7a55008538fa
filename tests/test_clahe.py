"""NFN's contrast edit without OpenCV: ``mnfn.data.images.clahe`` against outputs of OpenCV 5.0
(``cv2.createCLAHE(...).apply`` and NFN's whole edit), stored in ``tests/data/opencv_clahe.npz``
(synthetic images, made once with ``opencv-python-headless``)."""

from pathlib import Path

import numpy as np
import pytest

from mnfn.data.images.clahe import clahe_u8, contrast_opencv
from mnfn.tasks.edit_inr import apply_edit, contrast

FIXTURE = Path(__file__).parent / "data" / "opencv_clahe.npz"


@pytest.fixture(scope="module")
def ref():
    with np.load(FIXTURE, allow_pickle=False) as d:
        return {k: d[k] for k in d.files}


@pytest.mark.parametrize("case", range(4))
def test_clahe_matches_opencv_exactly(ref, case):
    """Square and non-square images, grids that divide the size and that need OpenCV's padding,
    clip limits from the degenerate 1 count per bin (NFN's setting on 32 x 32) to none at all."""
    cl, tx, ty = ref[f"l{case}_params"]
    out = clahe_u8(ref[f"l{case}_in"], float(cl), (int(tx), int(ty)))
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, ref[f"l{case}_out"])


def test_nfn_contrast_edit_matches_opencv(ref):
    x = ref["rgb_in"].astype(np.float32) / 255.0
    want = ref["rgb_out"].astype(np.float32) / 255.0
    got = contrast_opencv(x)
    mse = lambda a, b: float(((2 * a - 2 * b) ** 2).mean())  # noqa: E731  (on the [-1, 1] scale)
    # CLAHE is exact; the 8-bit Lab conversions differ from OpenCV's fixed-point ones by at most 1-2 levels
    assert mse(got, want) < 0.05 * mse(x, want)
    assert mse(x, want) > 0.02  # the edit does something
    # the same edit through the task's entry point and its config keys
    via_task = apply_edit("contrast", x, {"method": "opencv", "clip_limit": 1.0, "tiles": 3, "swap_rb": True})
    np.testing.assert_array_equal(via_task, got)
    # without NFN's red/blue swap it is a different edit
    assert mse(contrast_opencv(x, swap_rb=False), got) > 1e-4


def test_clahe_arguments():
    with pytest.raises(ValueError, match="uint8"):
        clahe_u8(np.zeros((4, 4), dtype=np.float32))
    with pytest.raises(ValueError, match="2-D"):
        clahe_u8(np.zeros((2, 4, 4), dtype=np.uint8))
    with pytest.raises(ValueError, match="tiles"):
        clahe_u8(np.zeros((4, 4), dtype=np.uint8), tiles=(0, 3))
    with pytest.raises(ValueError, match="method"):
        contrast(np.zeros((1, 3, 4, 4), dtype=np.float32), method="cv3")
    with pytest.raises(ValueError, match="RGB"):
        contrast_opencv(np.zeros((1, 1, 4, 4)))
    flat = np.full((6, 6), 77, dtype=np.uint8)  # one grey level: every LUT maps it to the same value
    assert len(np.unique(clahe_u8(flat))) == 1
