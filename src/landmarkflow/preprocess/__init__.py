"""Preprocessing of one patient into the pre-op world (:mod:`.pipeline`) and its QC figure (:mod:`.qc`)."""
