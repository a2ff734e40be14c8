"""The agents' fine stage (issue 25): a local grid finer than the working one, its patches, its agents, the
sub-voxel end estimate, and the inputs that narrow the appearance gap between the time points."""

import numpy as np
import pytest
import torch

from testdata import oblique_affine
from landmarkflow.detect import search
from landmarkflow.detect.agent import detect
from landmarkflow.detect.agent.fine import fine_box, fine_config, fine_starts, fine_trainer, sample_box
from landmarkflow.detect.agent.train import AgentConfig
from landmarkflow.detect.patches import PatchVolume
from landmarkflow.imaging import spatial
from landmarkflow.imaging.intensity import blur_to_resolution, match_histogram, random_monotone_curve


def _smooth(world):
    """A smooth function of world position (mm)."""
    x, y, z = np.moveaxis(np.asarray(world, dtype=float), -1, 0)
    return np.sin(x / 7.0) + np.cos(y / 5.0) * np.sin(z / 9.0) + 0.02 * x


def test_fine_patches_are_the_image_interpolated_at_their_points():
    """On an oblique, anisotropic grid with an origin, a patch of the fine box at a fine position holds the image's
    values at the world points of the patch's samples (fine spacing)."""
    affine = oblique_affine(spacing=(0.9, 1.2, 1.5))
    shape = (40, 36, 30)
    vol = _smooth(spatial.voxel_to_world(np.indices(shape).reshape(3, -1).T, affine)).reshape(shape).astype(np.float32)
    cfg = AgentConfig(patch=13, fine_factor=2, fine_scales=[2, 1], fine_box_mm=4.0)
    centre = np.array([19.3, 17.8, 14.6])  # sub-voxel
    box = fine_box(centre, cfg, spatial.spacing_of(affine))
    np.testing.assert_allclose(box.to_coarse((np.asarray(box.shape) - 1) / 2), centre, atol=1e-9)
    local = sample_box(vol, box)
    fine_affine = box.affine(affine)
    np.testing.assert_allclose(spatial.spacing_of(fine_affine), spatial.spacing_of(affine) / 2, atol=1e-9)
    pv = PatchVolume(torch.as_tensor(local), cfg.patch, 2, spatial.spacing_of(fine_affine))
    pos = torch.tensor([[30, 25, 22]])
    for scale in (1, 2):
        patch = pv.patches(pos, torch.tensor([scale]))[0, 0].numpy()
        r = np.arange(-(cfg.patch // 2), cfg.patch // 2 + 1) * scale
        grid = np.stack(np.meshgrid(r, r, r, indexing="ij"), -1) + pos.numpy()[0]
        expected = _smooth(spatial.voxel_to_world(grid.reshape(-1, 3), fine_affine)).reshape(patch.shape)
        assert np.abs(patch - expected).max() < 0.02 * np.ptp(expected), scale  # cubic splines of a smooth image


def _subvoxel_blob(shape=(36, 36, 36), target=(17.3, 18.6, 17.45)):
    g = np.indices(shape).transpose(1, 2, 3, 0) - np.asarray(target)
    rng = np.random.default_rng(4)
    from scipy import ndimage

    texture = ndimage.gaussian_filter(rng.standard_normal(shape), 3).astype(np.float32) * 0.3
    return (np.exp(-(g**2).sum(-1) / (2 * 2.5**2)) + texture).astype(np.float32)


@pytest.mark.slow
def test_a_fine_agent_ends_within_a_third_of_a_millimetre_of_a_subvoxel_target():
    target = np.array([17.3, 18.6, 17.45])
    vol = _subvoxel_blob(target=target)
    cfg = AgentConfig(patch=13, n_envs=16, batch=32, warmup=300, versions=1, max_episode_steps=30, fine_factor=2,
                      fine_scales=[2, 1], fine_box_mm=4.0, fine_updates=500, min_updates=150, check_every=50)
    trainer, boxes = fine_trainer({"a": vol[None, None]}, None, {"a": target}, {"a": 11}, cfg, (1.0, 1.0, 1.0))
    assert trainer.cfg.terminal_mm < 1e-3  # the last millimetre is learnt: no episode ends because it is near
    trainer.train(log_every=50)
    # at test, the box is centred on a point 1.2 mm off the landmark (a coarse prediction)
    start = target + np.array([0.8, -0.6, 0.7])
    box = fine_box(start, cfg, (1.0, 1.0, 1.0))
    local = sample_box(vol[None], box)
    starts = fine_starts(box, 12, cfg.fine_box_mm, (1.0, 1.0, 1.0), seed=2)
    det = detect.redetect(trainer.network(0), local, starts, cfg.patch, cfg.history, cfg.fine_scales, 60,
                          spacing=(0.5, 0.5, 0.5), centre="trimmed")
    ends_mm = box.to_coarse(det.ends)
    err = np.linalg.norm(ends_mm - target, axis=1)
    assert np.mean(err <= 0.5) >= 0.75, err  # most end points on the landmark's fine voxels
    assert np.linalg.norm(box.to_coarse(det.centre) - target) <= 0.3, box.to_coarse(det.centre)


def test_trimmed_centre_is_sub_voxel_and_ignores_strays():
    rng = np.random.default_rng(0)
    truth = np.array([10.3, -4.6, 7.25])
    near = np.rint(truth + rng.normal(0, 0.6, (18, 3)))  # end points on the voxel grid around the truth
    strays = np.array([[25.0, 3.0, 1.0], [-3.0, -20.0, 15.0]])
    ends = np.vstack([near, strays])
    median = search.robust_centre(ends, "median")
    trimmed = search.robust_centre(ends, "trimmed")
    assert np.linalg.norm(trimmed - truth) < np.linalg.norm(median - truth)
    np.testing.assert_allclose(trimmed, near[np.linalg.norm(near - median, axis=1) <= 1.5].mean(0))
    with pytest.raises(ValueError, match="centre 'mean': expected one of median, trimmed"):
        search.robust_centre(ends, "mean")


def test_intensity_matching_undoes_a_monotone_curve():
    rng = np.random.default_rng(3)
    from scipy import ndimage

    tissue = ndimage.gaussian_filter(rng.random((40, 40, 40)), 2).astype(np.float32)
    tissue = (tissue - tissue.min()) / np.ptp(tissue)
    reference = tissue + 0.01 * rng.standard_normal(tissue.shape).astype(np.float32)
    source = 300 * tissue**0.6 + 20  # another scanner: gain, offset and a gamma
    source = random_monotone_curve(source, rng, 0.4)
    mask = np.zeros(tissue.shape, bool)
    mask[5:35, 5:35, 5:35] = True
    lesion = mask.copy()
    lesion[5:15] = False  # the reference's mask leaves a part out (its lesion): the distribution stays the same
    matched = match_histogram(source, mask, reference, mask & lesion)
    before = np.abs(source[mask] - tissue[mask]).mean()
    after = np.abs(matched[mask] - tissue[mask]).mean()
    assert after < 0.02 and after < before / 100, (before, after)
    assert np.all(np.diff(matched[mask][np.argsort(source[mask])]) >= -1e-6)  # monotone: the ranking is kept


def test_resolution_matching_blurs_only_the_sharper_axes():
    vol = np.zeros((21, 21, 21), np.float32)
    vol[10, 10, 10] = 1.0
    out = blur_to_resolution(vol, own_extent_mm=(1, 1, 1), other_extent_mm=(1, 1, 3), spacing=(1, 1, 1))
    g = np.arange(21) - 10
    sd = [np.sqrt((out.sum(axis=tuple(j for j in range(3) if j != i)) * g**2).sum() / out.sum()) for i in range(3)]
    np.testing.assert_allclose(sd, [0.0, 0.0, np.sqrt(8 / 12)], atol=0.05)  # a 3 mm box against a 1 mm one, along z
    same = blur_to_resolution(vol, (1, 1, 3), (1, 1, 1), (1, 1, 1))
    np.testing.assert_array_equal(same, vol)  # the blurrier scan is left as it is


def test_fine_training_settings():
    cfg = AgentConfig(fine_updates=123, fine_scales=[3, 1], fine_box_mm=5.0)
    f = fine_config(cfg)
    assert f.scales == [3, 1] and f.updates == 123 and f.box_mm == 5.0 and f.near_fraction == 0.0 and f.terminal_mm < 1e-3
