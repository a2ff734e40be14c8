"""The cohort: the manifest (:mod:`.manifest`), the checks of the files it names (:mod:`.validation`)
and the preprocessed patient folder that every later stage reads (:mod:`.preproc_folder`)."""
