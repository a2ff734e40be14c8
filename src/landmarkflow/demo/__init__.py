"""The synthetic demo cohort made from the MNI152 template."""
