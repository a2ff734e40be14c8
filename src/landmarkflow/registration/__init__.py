"""Registrations of a patient's two scans: ANTs (the classical baseline and the rigid and N4 steps of the
preprocessing) and the second, bidirectional registration that maps missing correspondence."""
