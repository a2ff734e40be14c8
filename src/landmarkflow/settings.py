"""Which settings of the config's ``agent`` and ``pin`` sections train, and which only detect.

A change to a detection setting must rerun the redetection with the new value and leave the
trained networks alone: the workflow gives the training jobs the training settings only and the
redetection jobs the detection settings (:func:`split_settings`), and the redetection applies them
over what a model was trained with. No torch here: the workflow imports this when it starts.
"""

from __future__ import annotations

#: used at test time only (the agents' redetection)
AGENT_DETECTION_KEYS = ("n_starts", "max_test_steps", "max_shift_mm", "guide_test", "test_smooth_mm", "seeded_box_mm",
                        "seeded_max_shift_mm")
#: used at test time only (PIN's localisation)
PIN_DETECTION_KEYS = ("n_starts", "iterations", "max_shift_mm")


def split_settings(settings: dict, detection_keys) -> tuple[dict, dict]:
    """(training settings, detection settings) of a config section."""
    train = {k: v for k, v in settings.items() if k not in detection_keys}
    return train, {k: v for k, v in settings.items() if k in detection_keys}
