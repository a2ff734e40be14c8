"""The consensus landmark (issue 14): its rule on constructed cases, its file, the flag's statistics."""

import numpy as np
import pandas as pd
import pytest

from landmarkflow.evaluate import metrics
from landmarkflow.core.errors import InputError
from landmarkflow.io.landmarks import landmarks_frame, points_of, read_landmarks, write_landmarks
from landmarkflow.detect.consensus import ConsensusConfig, build_consensus, decide, flag_statistics

CFG = ConsensusConfig()  # agree 2 mm, overrule 3 mm
R = np.array([10.0, -20.0, 30.0])
START = R + [4.0, 0, 0]


def test_agreement_keeps_the_registration_and_measures_the_agreement():
    d = decide(R, {"agent_guided": R + [1.0, 0, 0], "agent_baseline": R + [0, 0.5, 0]}, START, CFG)
    assert d.rule == "agreement" and not d.flag
    np.testing.assert_array_equal(d.point, R)
    assert d.uncertainty_mm == pytest.approx(0.75)


def test_one_outlier_does_not_outvote_a_confirmed_registration():
    d = decide(R, {"agent_guided": R + [0.8, 0, 0], "agent_baseline": R + [0, 9.0, 0]}, START, CFG)
    assert d.rule == "outlier" and not d.flag  # half of the agents confirm it
    np.testing.assert_array_equal(d.point, R)
    assert d.uncertainty_mm == pytest.approx(0.8)
    # one of three confirms it: a minority, flagged
    d = decide(R, {"a": R + [0.8, 0, 0], "b": R + [0, 9.0, 0], "c": R + [0, -7.0, 0]}, START, CFG)
    assert d.rule == "outlier" and d.flag


def test_agents_that_agree_with_each_other_overrule_a_registration_far_from_them():
    a, b = R + [5.0, 0, 0], R + [5.0, 1.0, 0]  # 1 mm apart, 5 and 5.1 mm from R
    d = decide(R, {"agent_guided": a, "agent_baseline": b}, START, CFG)
    assert d.rule == "registration_overruled" and d.flag
    np.testing.assert_allclose(d.point, (a + b) / 2)
    assert d.uncertainty_mm == pytest.approx(np.linalg.norm((a + b) / 2 - R))
    # the same agents only 2.5 mm from R (not beyond overrule_mm): the registration stays, flagged
    d = decide(R, {"agent_guided": R + [2.5, 0, 0], "agent_baseline": R + [2.5, 1.0, 0]}, START, CFG)
    assert d.rule == "disagreement" and d.flag
    np.testing.assert_array_equal(d.point, R)


def test_all_disagree_keeps_the_registration_and_flags_it():
    d = decide(R, {"agent_guided": R + [6.0, 0, 0], "agent_baseline": R + [-6.0, 0, 0]}, START, CFG)
    assert d.rule == "disagreement" and d.flag
    np.testing.assert_array_equal(d.point, R)
    assert d.uncertainty_mm == pytest.approx(0.0)  # the agents' median is R: their distance says how far apart
    d = decide(R, {"agent_guided": R + [6.0, 0, 0], "agent_baseline": R + [0, 6.0, 0]}, START, CFG)
    assert d.uncertainty_mm == pytest.approx(np.hypot(3.0, 3.0))


def test_without_the_registration_the_agents_decide():
    a, b, c = R + [1.0, 0, 0], R + [0, 1.0, 0], R + [0, 0, 1.0]
    d = decide(None, {"a": a, "b": b, "c": c}, START, CFG)
    assert d.rule == "agents_only" and not d.flag
    np.testing.assert_allclose(d.point, np.median([a, b, c], axis=0))
    d = decide(None, {"a": a, "b": R + [0, 8.0, 0]}, START, CFG)
    assert d.flag  # two that disagree
    d = decide(None, {"a": a}, START, CFG)
    assert d.flag and np.isnan(d.uncertainty_mm)  # one alone is not confirmed
    d = decide(R, {}, START, CFG)
    assert d.rule == "unconfirmed" and d.flag
    d = decide(None, {}, START, CFG)
    assert d.rule == "no_method" and d.flag
    np.testing.assert_array_equal(d.point, START)


def test_consensus_file_ignores_fallbacks_and_unlisted_methods(tmp_path):
    ids = ["1", "2"]
    start = np.array([[0.0, 0, 0], [40.0, 0, 0]])
    ants = start + [[3.0, 0, 0], [0, 3.0, 0]]
    files = {}
    for name, pts, extra in [
        ("identity", start, {}),
        ("ants_syn", ants, {}),
        ("agent_guided", ants + [[0.5, 0, 0], [0, 6.0, 0]], {"fallback": [0, 0]}),
        ("agent_baseline", ants + [[0, 0.5, 0], [0, 6.5, 0]], {"fallback": [0, 1]}),  # 2 fell back
        ("pin", ants + [[0, 0, 20.0], [0, 0, 20.0]], {}),  # not listed: ignored
    ]:
        df = landmarks_frame(ids, pts)
        for k, v in extra.items():
            df[k] = v
        files[name] = tmp_path / f"{name}.csv"
        write_landmarks(df, files[name])
    out = tmp_path / "consensus.csv"
    start_csv = files.pop("identity")
    df = build_consensus(files, start_csv, CFG, out)
    back = read_landmarks(out)
    assert list(back.columns) == ["landmark", "x", "y", "z", "uncertainty_mm", "flag", "rule", "methods"]
    np.testing.assert_allclose(points_of(back), ants)  # 1: agreement; 2: the guided agent alone, 6 mm off
    assert df["rule"].tolist() == ["agreement", "disagreement"] and back["flag"].astype(int).tolist() == [0, 1]
    assert back["methods"].tolist() == ["ants_syn+agent_guided+agent_baseline", "ants_syn+agent_guided"]


def test_a_listed_file_that_is_missing_is_named(tmp_path):
    start = tmp_path / "identity.csv"
    write_landmarks(landmarks_frame(["1"], np.zeros((1, 3))), start)
    with pytest.raises(InputError, match="agent_guided.csv"):
        build_consensus({"agent_guided": tmp_path / "agent_guided.csv"}, start, CFG, tmp_path / "c.csv")
    assert not (tmp_path / "c.csv").exists()


def test_flag_statistics_count_caught_errors_and_false_alarms():
    err = pd.DataFrame({"method": ["consensus"] * 5 + ["ants_syn"] * 5,
                        "error_mm": [1.0, 4.0, 5.0, 2.0, 0.5] * 2,
                        "flag": [0, 1, 0, 1, 1] + [np.nan] * 5})
    st = flag_statistics(err, 3.0)
    assert st["method"].tolist() == ["consensus"]  # only methods with a flag
    row = st.iloc[0]
    assert row["flagged"] == 3
    assert row["flag_catch"] == pytest.approx(1 / 2)  # of the 2 errors above 3 mm, 1 flagged
    assert row["flag_false_alarm"] == pytest.approx(2 / 3)  # of 3 flags, 2 on errors <= 3 mm
    assert flag_statistics(err, 4.5).iloc[0]["flag_catch"] == 0.0
    summ = metrics.summary(err.assign(initial_mm=3.0, patient="P", landmark="1", spread_mm=np.nan, fallback=np.nan),
                           flag_error_mm=3.0)
    assert summ["method"].tolist()[0] == "consensus"  # shown first
    assert summ.set_index("method").loc["consensus", "flag_catch"] == pytest.approx(0.5)
    assert np.isnan(summ.set_index("method").loc["ants_syn", "flag_catch"])


def test_consensus_settings_are_checked():
    with pytest.raises(ValueError, match="agree_mm"):
        ConsensusConfig(agree_mm=4.0, overrule_mm=3.0)


def test_a_confirmed_registration_is_replaced_by_the_seeded_agents_refinement():
    """Issue 25: the seeded agents refine the registration's landmark; where it is confirmed, the refinement is used."""
    s = R + [0.6, -0.3, 0.2]
    on = ConsensusConfig(refine=True)
    assert not CFG.refine  # off by default (measured: docs/benchmarks.md)
    d = decide(R, {"agent_guided": R + [1.0, 0, 0], "agent_seeded": s}, START, on)
    assert d.rule == "refined" and not d.flag
    np.testing.assert_array_equal(d.point, s)
    assert d.uncertainty_mm == pytest.approx(np.linalg.norm([0.4, 0.3, -0.2]))  # the guided agent to the refinement
    off = ConsensusConfig(refine=False)
    assert decide(R, {"agent_guided": R + [1.0, 0, 0], "agent_seeded": s}, START, off).rule == "agreement"
    # a refinement that walked away from the registration is not taken; the seeded agents do not vote
    d = decide(R, {"agent_guided": R + [1.0, 0, 0], "agent_seeded": R + [3.0, 0, 0]}, START, on)
    assert d.rule == "agreement" and np.array_equal(d.point, R)
    d = decide(R, {"agent_seeded": s}, START, on)  # nothing independent confirms R
    assert d.rule == "unconfirmed" and d.flag


def test_two_registrations_that_agree_need_no_agent():
    """Issue 26: two independent registrations that agree are stronger evidence than one."""
    cfg = ConsensusConfig(second="ants_syn_nomask", average=False)
    r2 = R + [0.5, 0.5, 0]
    d = decide(R, {}, START, cfg, second=r2)
    assert d.rule == "agreement" and not d.flag and d.uncertainty_mm == pytest.approx(np.sqrt(0.5))
    # they agree, the agents are elsewhere: confirmed all the same, but only by the second registration
    d = decide(R, {"agent_guided": R + [6.0, 0, 0], "agent_baseline": R + [6.0, 1.0, 0]}, START, cfg, second=r2)
    assert d.rule == "outlier" and not d.flag and np.array_equal(d.point, R)


def test_two_registrations_that_agree_give_their_mean():
    """Two independent estimates of one point: where they agree, their mean is the recommended landmark (the
    default); where they do not, it is not (each is judged against the agents)."""
    assert CFG.average
    cfg = ConsensusConfig(second="svf")
    r2 = R + [1.0, -0.6, 0.4]
    d = decide(R, {"agent_guided": R + [0.3, 0, 0]}, START, cfg, second=r2)
    assert d.rule == "registrations" and not d.flag
    np.testing.assert_allclose(d.point, R + [0.5, -0.3, 0.2])
    half = np.linalg.norm([0.5, -0.3, 0.2])
    guided = np.linalg.norm([0.3 - 0.5, 0.3, -0.2])
    assert d.uncertainty_mm == pytest.approx((half + half + guided) / 3)  # R, R2 and the guided agent to the mean
    # the agents do not matter: they may be elsewhere
    assert decide(R, {"agent_guided": R + [6.0, 0, 0]}, START, cfg, second=r2).rule == "registrations"
    far = R + [2.5, 0, 0]  # more than agree_mm apart: no mean
    d = decide(R, {"agent_guided": R + [0.3, 0, 0]}, START, cfg, second=far)
    assert d.rule == "agreement" and np.array_equal(d.point, R)


def test_where_the_registrations_disagree_the_agents_decide():
    cfg = ConsensusConfig(second="ants_syn_nomask")
    r2 = R + [4.0, 0, 0]
    agents = {"agent_guided": r2 + [0.5, 0, 0], "agent_baseline": r2 + [0, 0.8, 0]}
    d = decide(R, agents, START, cfg, second=r2)
    assert d.rule == "second_registration" and d.flag
    np.testing.assert_array_equal(d.point, r2)
    # the agents agree with neither registration: the first one is kept, flagged
    d = decide(R, {"agent_guided": R + [0, 8.0, 0]}, START, cfg, second=r2)
    assert d.rule == "disagreement" and d.flag and np.array_equal(d.point, R)
    # without the first registration the second takes its place
    d = decide(None, {"agent_guided": r2 + [0.5, 0, 0]}, START, cfg, second=r2)
    assert d.rule == "agreement" and np.array_equal(d.point, r2)
    with pytest.raises(ValueError, match="the second registration .* must not be the first one"):
        ConsensusConfig(second="ants_syn")


def test_agents_do_not_overrule_a_registration_that_a_second_one_contradicts_them_on():
    """Agents that agree among themselves far from R overrule it only without a second registration: where R2
    disagrees with R and with them, R stays, flagged."""
    agents = {"agent_guided": R + [6.0, 0, 0], "agent_baseline": R + [6.0, 0.8, 0]}
    assert decide(R, agents, START, CFG).rule == "registration_overruled"
    d = decide(R, agents, START, ConsensusConfig(second="svf"), second=R + [0, 3.0, 0])
    assert d.rule == "disagreement" and d.flag and np.array_equal(d.point, R)


def test_the_consensus_keeps_the_users_labels_beside_the_identifiers(tmp_path):
    """Issue 30: a label such as "Point 1" is identified as Point_1; the recommended file shows both."""
    start = tmp_path / "identity.csv"
    write_landmarks(landmarks_frame(["Point 1", "ACA, left"], np.zeros((2, 3))), tmp_path / "user.csv")
    write_landmarks(read_landmarks(tmp_path / "user.csv"), start)  # as preprocessing writes it
    write_landmarks(landmarks_frame(["Point_1", "ACA_left"], np.ones((2, 3))), tmp_path / "ants_syn.csv")
    build_consensus({"ants_syn": tmp_path / "ants_syn.csv"}, start, CFG, tmp_path / "consensus.csv")
    back = read_landmarks(tmp_path / "consensus.csv")
    assert back["landmark"].tolist() == ["Point_1", "ACA_left"] and back["label"].tolist() == ["Point 1", "ACA, left"]
