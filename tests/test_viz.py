"""medlearn.viz: aspect from spacing, CT windows, overlays, grids, the viewer and its static fallback."""

from __future__ import annotations

import numpy as np
import pytest

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (only to check that viz leaves pyplot alone)
from matplotlib.figure import Figure  # noqa: E402

from medlearn import viz  # noqa: E402


@pytest.fixture(autouse=True)
def _no_pyplot_figures():
    """Every viz function must leave pyplot's list of figures as it found it."""
    before = plt.get_fignums()
    yield
    assert plt.get_fignums() == before, "a viz function left a figure open in pyplot"


@pytest.fixture(autouse=True)
def _headless(monkeypatch):
    monkeypatch.delenv("MEDLEARN_WIDGETS", raising=False)


def _cube(shape=(40, 30, 10)):
    vol = np.zeros(shape, dtype=np.float32)
    mask = np.zeros(shape, dtype=np.uint8)
    sl = tuple(slice(n // 4, 3 * n // 4) for n in shape)
    vol[sl] = 100.0
    mask[sl] = 1
    return vol, mask


def _pixels(fig) -> np.ndarray:
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].astype(int)


def test_planes_have_the_aspect_of_the_voxel_spacing():
    vol, _ = _cube((40, 30, 10))
    fig = viz.show_planes(vol, spacing=(0.5, 1.0, 3.0))
    assert isinstance(fig, Figure)
    axial, coronal, sagittal = fig.axes[:3]
    # extents are in mm: (X·sx, Y·sy), (X·sx, Z·sz), (Y·sy, Z·sz)
    assert axial.get_images()[0].get_extent() == pytest.approx([0, 20, 0, 30])
    assert coronal.get_images()[0].get_extent() == pytest.approx([0, 20, 0, 30])
    assert sagittal.get_images()[0].get_extent() == pytest.approx([0, 30, 0, 30])
    for ax in (axial, coronal, sagittal):
        assert ax.get_aspect() == 1.0  # 1 mm across = 1 mm up
    assert [ax.get_title().split(" ")[0] for ax in (axial, coronal, sagittal)] == ["axial?", "coronal?", "sagittal?"]
    assert "orientation unknown" in fig._suptitle.get_text()
    # an isotropic default makes the coronal view of this anisotropic volume three times flatter
    iso = viz.show_planes(vol)
    assert iso.axes[1].get_images()[0].get_extent() == pytest.approx([0, 40, 0, 10])


def test_spacing_and_orientation_come_from_nifti_and_torchio(tmp_path):
    import nibabel as nib
    import torchio as tio

    vol = np.zeros((20, 16, 8), dtype=np.float32)
    vol[0, 8, 4] = 1000.0  # the voxel at array x = 0: patient's LEFT-most column in an LPS image
    affine = np.diag([-0.8, -0.8, 2.0, 1.0])  # LPS: x toward the left, y toward the back
    path = tmp_path / "lps.nii.gz"
    nib.save(nib.Nifti1Image(vol, affine), str(path))
    for source in (path, tio.ScalarImage(path), nib.load(str(path))):
        fig = viz.show_planes(source, slices=(0, 8, 4))
        axial = fig.axes[0]
        assert axial.get_images()[0].get_extent() == pytest.approx([0, 16, 0, 12.8])
        assert axial.get_xlabel().endswith("→ R") and axial.get_ylabel().endswith("→ A")
        # shown in RAS: the left-most column is at the far end of the R axis (array index 19)
        shown = np.asarray(axial.get_images()[0].get_array())  # (Y, X) as drawn
        assert np.unravel_index(np.argmax(shown), shown.shape)[1] == 19
        assert "reoriented LPS → RAS" in fig._suptitle.get_text()


def test_torch_tensor_channel_first_is_accepted():
    import torch

    vol, mask = _cube()
    fig = viz.show_planes(torch.from_numpy(vol)[None], mask=torch.from_numpy(mask)[None], spacing=(1, 1, 2))
    assert fig.axes[0].get_images()[0].get_array().shape == (30, 40)
    with pytest.raises(ValueError, match="3D volume"):
        viz.show_planes(np.zeros((4, 4)))


@pytest.mark.parametrize("name,level,width", [("lung", -600, 1500), ("mediastinum", 50, 350),
                                              ("soft_tissue", 40, 400), ("bone", 400, 1800), ("brain", 40, 80)])
def test_windows_map_level_plus_minus_half_width_to_0_and_1(name, level, width):
    assert viz.WINDOWS[name] == (level, width)
    hu = np.array([level - width / 2 - 500, level - width / 2, level, level + width / 2, level + width / 2 + 500])
    assert viz.apply_window(hu, name) == pytest.approx([0, 0, 0.5, 1, 1])
    assert viz.apply_window(hu, (level, width)) == pytest.approx([0, 0, 0.5, 1, 1])


def test_unknown_window_names_the_choices():
    with pytest.raises(KeyError, match="lung"):
        viz.apply_window(np.zeros(3), "liver")
    with pytest.raises(ValueError, match="positive"):
        viz.apply_window(np.zeros(3), (40, 0))


def test_window_sets_the_display_range():
    vol = np.linspace(-1000, 1000, 20 * 20 * 4).reshape(20, 20, 4)
    fig = viz.show_planes(vol, window="lung")
    assert fig.axes[0].get_images()[0].get_clim() == pytest.approx((-1350, 150))
    assert "lung window L=-600 W=1500" in fig._suptitle.get_text()


def test_overlay_draws_the_mask_with_a_legend():
    img = np.zeros((32, 32))
    mask = np.zeros((32, 32), dtype=np.uint8)
    mask[8:16, 8:24] = 1
    plain = _pixels(viz.overlay(img))
    fig = viz.overlay(img, mask=mask)
    ax = fig.axes[0]
    assert len(ax.get_images()) == 2  # the image and the translucent fill
    assert len(ax.collections) >= 1  # the contour
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["mask"]
    drawn = _pixels(fig)
    changed = np.abs(drawn - plain).sum(axis=-1) > 30
    assert changed.sum() > 100
    red = drawn[changed].mean(axis=0)
    assert red[0] > red[1] + 40 and red[0] > red[2] + 40  # the first mask is drawn in red


def test_overlay_with_several_raters_and_a_probability_map():
    img = np.random.default_rng(0).normal(size=(24, 24))
    m1 = np.zeros((24, 24), dtype=np.uint8)
    m1[5:15, 5:15] = 1
    m2 = np.roll(m1, 3, axis=0)
    fig = viz.overlay(img, mask={"rater 1": m1, "rater 2": m2}, prob=m1 * 0.9, title="two raters")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["rater 1", "rater 2"]
    assert any(a.get_label() == "<colorbar>" for a in fig.axes) or len(fig.axes) == 2  # the colour bar
    with pytest.raises(ValueError, match="must match"):
        viz.overlay(img, mask=np.zeros((3, 3)))


def test_colour_bar_names_what_the_map_is():
    vol, mask = _cube()
    default = viz.show_planes(vol, prob=mask * 0.8)
    cam = viz.show_planes(vol, prob=mask * 0.8, prob_label="Grad-CAM")
    flat = viz.overlay(vol[:, :, 4], prob=mask[:, :, 4] * 0.8, prob_label="Grad-CAM")
    assert default.axes[-1].get_ylabel() == "probability"
    assert cam.axes[-1].get_ylabel() == "Grad-CAM"
    assert flat.axes[-1].get_ylabel() == "Grad-CAM"


def test_show_planes_overlays_masks_in_every_plane():
    vol, mask = _cube()
    fig = viz.show_planes(vol, mask={"rater 1": mask, "auto": np.roll(mask, 2, 0)}, spacing=(1, 1, 2))
    for ax in fig.axes[:3]:
        assert len(ax.get_images()) == 3  # image + one fill per mask
    with pytest.raises(ValueError, match="resample"):
        viz.show_planes(vol, mask=np.zeros((5, 5, 5)))


def test_montage_shows_n_slices_with_true_aspect():
    vol, mask = _cube((20, 20, 30))
    fig = viz.montage(vol, axis=2, n=8, mask=mask, spacing=(0.5, 0.5, 2.0))
    shown = [ax for ax in fig.axes if ax.get_images()]
    assert len(shown) == 8
    assert shown[0].get_images()[0].get_extent() == pytest.approx([0, 10, 0, 10])
    slices = [int(ax.get_title().split("=")[1]) for ax in shown]
    assert slices == sorted(slices) and len(set(slices)) == 8 and 0 < slices[0] and slices[-1] < 29
    sag = viz.montage(vol, axis=0, n=3, spacing=(0.5, 0.5, 2.0))
    assert [ax for ax in sag.axes if ax.get_images()][0].get_images()[0].get_extent() == pytest.approx([0, 10, 0, 60])


def test_show_grid_from_arrays_and_from_a_dataframe(tmp_path):
    import nibabel as nib
    import pandas as pd

    images = np.random.default_rng(0).random((10, 28, 28))
    labels = np.arange(10) % 2
    fig = viz.show_grid((images, labels), n=6, ncols=3)
    shown = [ax for ax in fig.axes if ax.get_images()]
    assert len(shown) == 6 and [ax.get_title() for ax in shown] == ["0", "1", "0", "1", "0", "1"]
    # MedMNIST order (rows down): the first image row is drawn at the top
    assert np.asarray(shown[0].get_images()[0].get_array())[-1] == pytest.approx(images[0][0])
    rows = []
    for i in range(3):
        p = tmp_path / f"v{i}.nii.gz"
        vol = np.full((8, 8, 5), float(i), dtype=np.float32)
        vol[:, :, 2] = 10.0 + i  # the middle slice
        nib.save(nib.Nifti1Image(vol, np.eye(4)), str(p))
        rows.append({"img_path": str(p), "labels": f"class {i}"})
    fig = viz.show_grid(pd.DataFrame(rows), n=3)
    shown = [ax for ax in fig.axes if ax.get_images()]
    assert [ax.get_title() for ax in shown] == ["class 0", "class 1", "class 2"]
    assert np.asarray(shown[2].get_images()[0].get_array()).max() == pytest.approx(12.0)
    with pytest.raises(KeyError, match="img_path"):
        viz.show_grid(pd.DataFrame({"x": [1]}))


def test_viewer_falls_back_to_a_static_figure_headless(capsys):
    vol, mask = _cube()
    assert viz.widgets_available()[0] is False
    viewer = viz.view(vol, spacing=(1, 1, 2), mask=mask)
    assert viewer.widget is None and isinstance(viewer.figure, Figure)
    assert len([ax for ax in viewer.figure.axes if ax.get_images()]) == 3
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "static figure" in out and "MEDLEARN_WIDGETS=1" in out


def test_viewer_builds_widgets_when_forced_on(monkeypatch):
    import ipywidgets as w

    monkeypatch.setenv("MEDLEARN_WIDGETS", "1")
    vol, mask = _cube((40, 30, 10))
    viewer = viz.view(vol, spacing=(1, 1, 2), mask=mask)
    assert isinstance(viewer.widget, w.HBox) and viewer.figure is None

    def walk(widget):
        yield widget
        for child in getattr(widget, "children", ()):
            yield from walk(child)

    kinds = {type(x).__name__ for x in walk(viewer.widget)}
    # only widgets that exist, with the same names, in ipywidgets 7.7 (Colab) and 8.x
    assert kinds <= {"HBox", "VBox", "Dropdown", "IntSlider", "FloatSlider", "Output"}
    c = viewer.state["controls"]
    assert viewer.state["renders"] == 1 and c["index"].max == 9  # axial: Z has 10 slices
    c["plane"].value = "sagittal"
    assert c["index"].max == 39 and viewer.state["renders"] >= 2
    assert viewer.state["figure"].axes[0].get_title().startswith("sagittal")
    c["preset"].value = "lung"
    assert (c["level"].value, c["width"].value) == (-600, 1500)
    assert viewer.state["figure"].axes[0].get_images()[0].get_clim() == pytest.approx((-1350, 150))


def test_widgets_decision_follows_the_environment(monkeypatch):
    monkeypatch.setenv("MEDLEARN_WIDGETS", "0")
    assert viz.widgets_available() == (False, "MEDLEARN_WIDGETS=0")
    monkeypatch.setenv("MEDLEARN_WIDGETS", "1")
    assert viz.widgets_available() == (True, "MEDLEARN_WIDGETS=1")
    monkeypatch.delenv("MEDLEARN_WIDGETS")
    monkeypatch.setenv("JPY_SESSION_NAME", "x.ipynb")
    assert viz.widgets_available()[0] is False  # no kernel here: a session name alone is not a front end


def test_itk_backend_says_how_to_install():
    pytest.importorskip("numpy")
    try:
        import itkwidgets  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match=r"medlearn\[viewer\]"):
            viz.view(np.zeros((4, 4, 4)), backend="itk")
    else:  # pragma: no cover
        pytest.skip("itkwidgets is installed; it needs a browser")


def test_a_mask_file_in_another_orientation_lands_on_the_image(tmp_path):
    import nibabel as nib

    vol, mask = _cube((20, 16, 8))
    vol[:5] = 0.0
    mask[:5] = 0  # an asymmetric cube: only the far side along x
    ras = np.diag([1.0, 1.0, 2.0, 1.0])
    nib.save(nib.Nifti1Image(vol, ras), str(tmp_path / "img.nii.gz"))
    lps_mask = nib.Nifti1Image(mask, ras).as_reoriented(np.array([[0, -1], [1, -1], [2, 1]]))
    nib.save(lps_mask, str(tmp_path / "mask.nii.gz"))
    assert nib.aff2axcodes(lps_mask.affine) == ("L", "P", "S")
    fig = viz.show_planes(tmp_path / "img.nii.gz", mask=tmp_path / "mask.nii.gz")
    axial = fig.axes[0]
    image = np.asarray(axial.get_images()[0].get_array())
    fill = np.ma.getmaskarray(axial.get_images()[1].get_array())  # masked where the mask is absent
    np.testing.assert_array_equal(~fill, image > 50)


def test_a_bare_array_with_a_stated_orientation_is_reoriented():
    vol = np.zeros((10, 8, 4), dtype=np.float32)
    vol[0, 4, 2] = 1.0  # array x = 0 is the patient's left in LPS
    fig = viz.show_planes(vol, spacing=(1, 1, 1), orientation="LPS", slices=(9, 3, 2))
    shown = np.asarray(fig.axes[0].get_images()[0].get_array())
    assert np.unravel_index(np.argmax(shown), shown.shape) == (3, 9)  # (Y, X) in RAS
    assert fig.axes[0].get_title().startswith("axial (")
    with pytest.raises(ValueError, match="axis code"):
        viz.show_planes(vol, orientation="XYZ")
