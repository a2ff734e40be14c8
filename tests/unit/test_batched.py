"""All agents of a patient in one batched training (issue 15): the same agents as one by one, resumable."""

import logging

import numpy as np
import pandas as pd
import pytest
import torch

from landmarkflow.core import layout
from landmarkflow.imaging import spatial
from landmarkflow.core.errors import InputError
from landmarkflow.io.landmarks import landmarks_frame, points_of, read_landmarks, write_landmarks
from landmarkflow.detect.agent import pipeline
from landmarkflow.detect.agent.env import LandmarkEnv
from landmarkflow.detect.patches import PatchVolume
from landmarkflow.detect.agent.network import DuelingQNet, StackedQNet
from landmarkflow.detect.agent.streams import AgentStreams
from landmarkflow.detect.agent.train import AgentConfig, AgentSpec, Trainer
from landmarkflow.detect.augment import augmented_versions
from landmarkflow.detect import search
from landmarkflow.cohort.preproc_folder import PreprocFolder

from test_agent import _blob_volume
from testdata import write_preproc

TINY = dict(patch=13, box_mm=16, updates=30, n_envs=8, batch=16, warmup=64, versions=2, scales=[2, 1], fine_factor=0)
TINY_STARTS = AgentConfig().n_starts


def _params(net) -> torch.Tensor:
    return torch.cat([p.detach().flatten().cpu() for p in net.parameters()])


def test_an_agents_random_numbers_do_not_depend_on_the_batch():
    together = AgentStreams([5, 6, 7], "cpu")
    alone = AgentStreams([6], "cpu")
    for _ in range(3):  # the same calls in step
        u, v = together.uniform(1000), alone.uniform(1000)
        assert torch.equal(u[1], v[0])
        assert not torch.equal(u[0], u[1]) and 0 <= float(u.min()) and float(u.max()) < 1
        assert abs(float(u.mean()) - 0.5) < 0.02 and abs(float(u.std()) - 12 ** -0.5) < 0.02
    k = together.randint(torch.tensor([2, 5, 9]), 4000)
    assert [sorted(set(r.tolist())) for r in k] == [list(range(2)), list(range(5)), list(range(9))]


@pytest.mark.parametrize("grouped", [False, True])
def test_stacked_networks_are_the_networks_side_by_side(grouped):
    nets = []
    for seed in (0, 1, 2):
        torch.manual_seed(seed)
        nets.append(DuelingQNet(8, 13, 16))
    stacked = StackedQNet(nets, grouped=grouped)
    x = torch.randn(3, 5, 8, 13, 13, 13)
    y = stacked(x)
    for b, net in enumerate(nets):
        if grouped:
            assert torch.allclose(y[b], net(x[b]), atol=1e-5)
        else:
            assert torch.equal(y[b], net(x[b]))
        copy = DuelingQNet(8, 13, 16)
        copy.load_state_dict(stacked.agent_state_dict(b))
        assert torch.equal(_params(copy), _params(net))
    y[1].sum().backward()  # agent 1's loss moves agent 1's weights only
    g = stacked.features_0_w.grad
    assert g[1].abs().sum() > 0 and g[0].abs().sum() == 0 and g[2].abs().sum() == 0


def test_guidance_applies_to_the_guided_agents_only():
    vol = PatchVolume(torch.zeros(1, 40, 40, 30), 7, 1)
    mask = torch.zeros(40, 40, 30, dtype=torch.bool)
    mask[26:, :, :] = True
    env = LandmarkEnv(vol, torch.tensor([[35.0, 18, 15]] * 2), 2, mask=mask, scales=(1,),
                      mask_on=torch.tensor([True, False]), keep_frames=False)
    env.reset_where(torch.tensor([True, True]), torch.tensor([[25, 18, 15]] * 2), torch.zeros(2, dtype=torch.long))
    reward, _, _ = env.step(torch.tensor([0, 0]))  # both step into the mask, towards the target
    assert reward.tolist() == [-1.0, 1.0] and env.pos.tolist() == [[26, 18, 15]] * 2


def test_batched_training_gives_each_agent_its_network_trained_alone():
    vol = _blob_volume(shape=(32, 32, 32), target=(16, 15, 17))
    versions = augmented_versions(vol, vol > 0.1, vol > 0.9, 2, np.random.default_rng(0))
    cavity = vol > 0.9
    cfg = AgentConfig(**TINY)
    specs = [AgentSpec((16, 15, 17), 5), AgentSpec((12, 14, 13), 6, guided=True), AgentSpec((19, 17, 15), 7)]
    batch = Trainer(versions, specs, cfg, mask=cavity, noise_seed=1)
    rows = batch.train(log_every=10)
    assert [len(r) for r in rows] == [3, 3, 3]
    for b, spec in enumerate(specs):
        alone = Trainer(versions, spec, cfg, mask=cavity, noise_seed=1)
        alone_rows = alone.train(log_every=10)[0]
        assert torch.equal(_params(batch.network(b)), _params(alone.network(0))), spec  # exact on the CPU
        pd.testing.assert_frame_equal(pd.DataFrame(rows[b]).drop(columns="seconds"),
                                      pd.DataFrame(alone_rows).drop(columns="seconds"))
    assert not torch.equal(_params(batch.network(0)), _params(batch.network(2)))


@pytest.mark.gpu
def test_cuda_batched_training_matches_the_cpu_within_tolerance(monkeypatch):
    """On a GPU the convolutions are grouped: the numbers differ in the last bits, the landmarks do not.

    TF32 is turned off here, so that only the order of the sums differs from the CPU; the random
    draws (streams, noise bank) are the same on both devices. Over longer training a near tie between
    two actions can go the other way and the runs part (seen after 60 updates), as with any change
    in the order of float sums."""
    from landmarkflow.detect.agent import detect

    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    target = (16, 15, 17)
    vol = _blob_volume(shape=(32, 32, 32), target=target)
    cfg = AgentConfig(**{**TINY, "updates": 20})
    specs = [AgentSpec(target, 5), AgentSpec(target, 6)]
    gpu = Trainer(vol[None, None], specs, cfg, device="cuda")
    assert gpu.net.grouped
    gpu.train(log_every=10)
    starts = search.start_points(target, 20, cfg.box_mm, (1, 1, 1), seed=1)
    for b, spec in enumerate(specs):
        cpu = Trainer(vol[None, None], spec, cfg)
        cpu.train(log_every=10)
        assert torch.allclose(_params(gpu.network(b)), _params(cpu.network(0)), atol=1e-4)
        ends = [detect.redetect(t, vol[None], starts, cfg.patch, cfg.history, cfg.scales, 60, device=d).ends
                for t, d in ((gpu.network(b), "cuda"), (cpu.network(0), "cpu"))]
        assert np.array_equal(ends[0], ends[1])


def _preproc_folder(tmp_path, landmarks=((16, 15, 17), (22, 12, 20)), cavity=True) -> PreprocFolder:
    """A small preprocessed patient on an anisotropic, shifted grid: two modalities, brain and cavity masks, landmarks."""
    affine = np.diag([1.0, 1.2, 0.9, 1.0])
    affine[:3, 3] = [-20.0, 5.0, 12.5]
    vol = _blob_volume(shape=(36, 34, 36), target=landmarks[0])
    hole = np.zeros(vol.shape, bool)
    hole[4:9, 4:9, 4:9] = True
    world = spatial.voxel_to_world(np.asarray(landmarks, dtype=float), affine)
    return write_preproc(tmp_path / "preproc", affine,
                         {(tp, m): v for tp in ("pre", "post") for m, v in (("t1ce", vol), ("flair", 1 - vol))},
                         brain={tp: vol > 0.05 for tp in ("pre", "post")},
                         lesions={"post": hole, "pre": hole} if cavity else None,
                         landmarks={("post", "expert"): ([str(i + 1) for i in range(len(landmarks))], world)})


def test_patient_job_trains_every_agent_resumes_and_redetects(tmp_path, monkeypatch, caplog):
    folder = _preproc_folder(tmp_path)
    cfg = AgentConfig(**{**TINY, "updates": 40, "modalities": ["t1ce", "flair"], "fine_factor": 2, "fine_updates": 30, "fine_starts": 4})
    out = tmp_path / "trained"
    resume = tmp_path / "trained.resume.pt"
    update = Trainer._update

    def interrupted(self):  # the job dies after its checkpoint at update 20
        if self.updates_done == 30:
            raise KeyboardInterrupt
        update(self)

    monkeypatch.setattr(Trainer, "_update", interrupted)
    with pytest.raises(KeyboardInterrupt):
        pipeline.train_agents(folder.path, cfg, seed=3, out_dir=out, device="cpu", checkpoint_every=20)
    assert resume.exists() and not out.exists() and not list(tmp_path.glob(".trained.*"))  # nothing half-written
    monkeypatch.setattr(Trainer, "_update", update)
    with caplog.at_level(logging.INFO, logger="landmarkflow.detect.agent.pipeline"):
        states = pipeline.train_agents(folder.path, cfg, seed=3, out_dir=out, device="cpu", checkpoint_every=20)
    assert any("resuming from" in r.getMessage() and "update 20" in r.getMessage() for r in caplog.records)
    assert not resume.exists()
    other = Trainer(folder.stack("post", ["t1ce", "flair"])[0][None], AgentSpec((16, 15, 17), 1), cfg)
    other.save_checkpoint(resume)  # a checkpoint of other agents is not resumed from
    with pytest.raises(ValueError, match="other agents"):
        Trainer(folder.stack("post", ["t1ce", "flair"])[0][None], AgentSpec((16, 15, 17), 2), cfg).load_checkpoint(resume)
    with pytest.raises(ValueError, match="other training settings"):
        Trainer(folder.stack("post", ["t1ce", "flair"])[0][None], AgentSpec((16, 15, 17), 1),
                AgentConfig(**{**TINY, "lr": 0.01})).load_checkpoint(resume)
    resume.unlink()
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted([f"{lm}_{v}{ext}" for lm in "12" for v in ("baseline", "guided", "fine") for ext in (".pt", "_training.tsv")]
                           + [layout.DEVICE])
    assert [(s["landmark"], s["variant"], s["agents_in_job"]) for s in states] == [
        ("1", "baseline", 4), ("1", "guided", 4), ("2", "baseline", 4), ("2", "guided", 4), ("1", "fine", 2), ("2", "fine", 2)]
    assert not list(tmp_path.glob("*.resume.pt"))
    logs = pd.read_csv(out / "2_guided_training.tsv", sep="\t")
    assert logs["update"].tolist() == list(range(4, 41, 4))  # the rows before the interruption are kept
    key = layout.parse(f"results/P1/agents/{layout.TRAINED}/2_guided_training.tsv")
    assert key == {"kind": "training", "patient": "P1", "method": "agent_guided", "landmark": "2"}
    for variant in ("baseline", "guided"):
        df = pipeline.redetect_landmarks(folder.path, out, variant, 3, tmp_path / f"{variant}.csv",
                                         tmp_path / f"{variant}_ends.tsv", tmp_path / f"{variant}_traj.tsv", device="cpu")
        assert df["landmark"].tolist() == ["1", "2"] and np.isfinite(df[["x", "y", "z"]].to_numpy()).all()
        ends = pd.read_csv(tmp_path / f"{variant}_ends.tsv", sep="\t", dtype={"landmark": str})
        refined = df[df["fallback"] == 0]["landmark"]  # a fallback is not refined
        fine = ends[ends["stage"] == "fine"]
        assert set(fine["landmark"]) == set(refined) and (fine.groupby("landmark").size() == 4).all()
        assert (fine["start"] >= TINY_STARTS).all()  # numbered after the coarse starts
        assert (df.loc[df["refined"] == 1, "fine_shift_mm"] <= cfg.fine_max_shift_mm).all()


def test_same_seed_same_landmarks_from_the_patient_job(tmp_path):
    """Reproducibility on the CPU: the seed in the config fixes the agents, and so the landmarks."""
    folder = _preproc_folder(tmp_path, landmarks=((16, 15, 17),), cavity=False)
    cfg = AgentConfig(**{**TINY, "updates": 20, "modalities": ["t1ce"]})
    found = []
    for run, seed in enumerate((4, 4)):
        out = tmp_path / f"trained{run}"
        states = pipeline.train_agents(folder.path, cfg, seed=seed, out_dir=out, device="cpu")
        assert [s["variant"] for s in states] == ["baseline"]  # no resection mask: no guided agent
        found.append(pipeline.redetect_landmarks(folder.path, out, "baseline", seed, tmp_path / f"{run}.csv",
                                                 tmp_path / f"{run}_e.tsv", tmp_path / f"{run}_t.tsv", device="cpu"))
    pd.testing.assert_frame_equal(found[0].drop(columns="seconds"), found[1].drop(columns="seconds"))


def test_a_missing_model_is_named(tmp_path):
    (tmp_path / "trained").mkdir()
    with pytest.raises(InputError, match=r"trained/7_guided.pt"):
        search.model_paths(tmp_path / "trained", ["7"], "guided")


def test_pooling_takes_every_members_end_points():
    from landmarkflow.detect.search import Detection, pool

    def det(ends, steps):
        ends = np.asarray(ends, float)
        traj = np.repeat(ends[None], steps + 1, 0)
        return Detection(np.median(ends, 0), ends, traj, np.full(len(ends), steps), np.zeros(len(ends)))

    a = det([[0, 0, 0], [1, 0, 0], [2, 0, 0]], 3)
    b = det([[10, 0, 0], [11, 0, 0], [12, 0, 0]], 5)
    c = det([[1, 1, 0], [1, 2, 0], [1, 3, 0]], 2)
    p = pool([a, b, c], spacing=(2.0, 1.0, 1.0))
    assert p.ends.shape == (9, 3) and p.trajectories.shape == (6, 9, 3) and p.steps.tolist() == [3] * 3 + [5] * 3 + [2] * 3
    np.testing.assert_array_equal(p.centre, [1, 0, 0])  # coordinate-wise median of the 9 end points
    np.testing.assert_allclose(p.spread_vox, np.linalg.norm((p.ends - [1, 0, 0]) * [2, 1, 1], axis=1))
    np.testing.assert_array_equal(p.trajectories[-1, :3], a.ends)  # a member that stopped early stays put
    assert pool([a]) is a


def test_an_ensemble_trains_its_members_in_the_job_and_pools_them(tmp_path):
    folder = _preproc_folder(tmp_path, landmarks=((16, 15, 17),), cavity=False)
    single = AgentConfig(**{**TINY, "updates": 20, "modalities": ["t1ce"]})
    pipeline.train_agents(folder.path, single, seed=4, out_dir=tmp_path / "one", device="cpu")
    cfg = AgentConfig(**{**TINY, "updates": 20, "modalities": ["t1ce"], "ensemble": 3})
    states = pipeline.train_agents(folder.path, cfg, seed=4, out_dir=tmp_path / "three", device="cpu")
    assert len(states) == 1 and states[0]["agents_in_job"] == 3 and len(set(states[0]["seeds"])) == 3
    nets, _ = pipeline.load_members(tmp_path / "three" / "1_baseline.pt")
    alone, _ = pipeline.load_members(tmp_path / "one" / "1_baseline.pt")
    assert len(nets) == 3 and len(alone) == 1
    assert torch.equal(_params(nets[0]), _params(alone[0]))  # the first member is the single agent
    assert not torch.equal(_params(nets[0]), _params(nets[1]))
    logs = pd.read_csv(tmp_path / "three" / "1_baseline_training.tsv", sep="\t")
    assert (logs["members"] == 3).all() and logs["update"].is_monotonic_increasing
    df = pipeline.redetect_landmarks(folder.path, tmp_path / "three", "baseline", 4, tmp_path / "p.csv",
                                     tmp_path / "e.tsv", tmp_path / "t.tsv", device="cpu")
    ends = pd.read_csv(tmp_path / "e.tsv", sep="\t")
    assert len(ends) == 3 * TINY_STARTS and ends["start"].tolist() == list(range(3 * TINY_STARTS))
    if not df["fallback"].iloc[0]:
        np.testing.assert_allclose(df[["x", "y", "z"]].to_numpy()[0], np.median(ends[["x", "y", "z"]].to_numpy(), 0), atol=1e-3)
    single_ends = pipeline.redetect_landmarks(folder.path, tmp_path / "one", "baseline", 4, tmp_path / "p1.csv",
                                              tmp_path / "e1.tsv", tmp_path / "t1.tsv", device="cpu")
    assert len(single_ends) == 1
    one = pd.read_csv(tmp_path / "e1.tsv", sep="\t")
    np.testing.assert_allclose(ends[["x", "y", "z"]].to_numpy()[:TINY_STARTS], one[["x", "y", "z"]].to_numpy())


def test_seeded_start_box_is_centred_on_the_given_world_point():
    from scipy.spatial.transform import Rotation

    from landmarkflow.detect.search import landmark_starts

    spacing = np.array([0.8, 1.3, 2.0])
    affine = np.eye(4)
    affine[:3, :3] = Rotation.from_euler("xyz", [20, -10, 35], degrees=True).as_matrix() @ np.diag(spacing)
    affine[:3, 3] = [-91.0, 12.5, 40.0]
    point = np.array([-70.3, 30.1, 55.7])
    centre, starts = landmark_starts(landmarks_frame(["a", "b"], np.stack([point, point + 20])), "a", affine, 20, 10.0, seed=3)
    np.testing.assert_allclose(centre, point)
    offsets_mm = (starts - spatial.world_to_voxel(point, affine)) * spacing  # along the voxel axes, in mm
    assert np.abs(offsets_mm[0]).max() <= spacing.max() / 2  # the first start is the box centre
    assert (np.abs(offsets_mm) <= 5.0 + spacing / 2).all()  # all within the 10 mm box about the point
    assert (offsets_mm.max(0) - offsets_mm.min(0) > 5.0).all()  # and spread over it in every axis
    world = spatial.voxel_to_world(starts.astype(float), affine)
    assert np.linalg.norm(world - point, axis=1).max() <= np.linalg.norm(5.0 + spacing / 2)


def test_seeded_redetection_starts_at_the_registrations_landmarks(tmp_path):
    folder = _preproc_folder(tmp_path)
    cfg = AgentConfig(**{**TINY, "updates": 20, "modalities": ["t1ce"]})
    pipeline.train_agents(folder.path, cfg, seed=2, out_dir=tmp_path / "trained", device="cpu")
    truth = read_landmarks(folder.landmarks_path("post", "expert"))
    seeds = truth.assign(x=truth["x"] + 2.0)  # the "registration" 2 mm off in x
    write_landmarks(seeds, tmp_path / "ants_syn.csv")
    df = pipeline.redetect_landmarks(folder.path, tmp_path / "trained", "seeded", 2, tmp_path / "s.csv", tmp_path / "e.tsv",
                                     tmp_path / "t.tsv", device="cpu", detection={"seeded_max_shift_mm": 1e-3},
                                     seed_landmarks=tmp_path / "ants_syn.csv")
    ends = pd.read_csv(tmp_path / "e.tsv", sep="\t", dtype={"landmark": str})
    for lid, seed_xyz in zip(seeds["landmark"], points_of(seeds)):
        first = ends[(ends["landmark"] == lid) & (ends["start"] == 0)][["start_x", "start_y", "start_z"]].to_numpy()[0]
        assert np.linalg.norm(first - seed_xyz) < 0.7  # the box centre: the seed, rounded to the voxel grid
        starts = ends[ends["landmark"] == lid][["start_x", "start_y", "start_z"]].to_numpy()
        assert np.abs(starts - seed_xyz).max() <= cfg.seeded_box_mm / 2 + 0.7
    # a shift limit of ~0: every prediction falls back to the registration's landmark
    assert df["fallback"].tolist() == [1, 1]
    np.testing.assert_allclose(points_of(df), points_of(seeds), atol=1e-4)
    write_landmarks(seeds.iloc[:1], tmp_path / "one.csv")
    with pytest.raises(InputError, match=r"one.csv: no landmark\(s\) 2"):
        pipeline.redetect_landmarks(folder.path, tmp_path / "trained", "seeded", 2, tmp_path / "s2.csv", tmp_path / "e2.tsv",
                                    tmp_path / "t2.tsv", device="cpu", seed_landmarks=tmp_path / "one.csv")
    assert not (tmp_path / "s2.csv").exists()
