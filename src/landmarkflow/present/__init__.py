"""What a person reads: the cohort report, its figures, the 3D Slicer review files."""
