"""landmarkflow: landmark redetection and differential radiomics for pre-/post-operative brain MRI."""

__version__ = "0.1.0"
