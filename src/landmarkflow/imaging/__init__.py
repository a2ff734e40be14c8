"""Images and coordinates: world RAS mm (:mod:`.spatial`), the :class:`.image.Image` type and its files,
resampling, masks, intensities and the MNI152 template."""
