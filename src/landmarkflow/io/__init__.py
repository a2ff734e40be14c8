"""Files other than images: landmark files (the project's CSV, 3D Slicer's markups, BraTS-Reg's). Atomic
outputs and tables are :mod:`landmarkflow.core.files`'s."""
