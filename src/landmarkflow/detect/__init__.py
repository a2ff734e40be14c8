"""Landmark redetection: the agents (:mod:`.agent`), PIN, what searches share (patches, augmentation,
devices, start points, detections) and the consensus of all methods."""
