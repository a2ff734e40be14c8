"""Files other than images: atomic outputs and tables, landmark files (the project's CSV, 3D Slicer's
markups, BraTS-Reg's)."""
