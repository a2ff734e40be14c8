# Preprocessing per patient: brain mask, N4, rigid co-registration into the pre-op frame,
# resampling, normalisation; also the `identity` method (post-op landmarks after rigid alignment).


rule preprocess_patient:
    input:
        manifest=layout.patient_manifest("{patient}"),
        files=patient_files,
    output:
        folder=directory(layout.preproc("{patient}")),
        identity=layout.landmarks("{patient}", "identity"),
    params:
        settings=config["preprocess"],
        seed=config["seed"],
        reference_modality=config["reference_modality"],
        annotator=ANNOTATOR,
    log:
        layout.log("preprocess_patient", "{patient}"),
    benchmark:
        layout.benchmark("preprocess_patient", "{patient}")
    threads: 1
    conda:
        "../../envs/preprocess.yaml"
    script:
        "../../scripts/preprocess_patient.py"


rule complete_lesions:
    # the lesion masks of every later stage: the manifest's, and derived ones (from svf) where it has none
    input:
        unpack(lesion_inputs),
    output:
        folder=directory(layout.lesions_dir("{patient}")),
    params:
        settings=lesion_settings,
    log:
        layout.log("complete_lesions", "{patient}"),
    benchmark:
        layout.benchmark("complete_lesions", "{patient}")
    threads: 1
    conda:
        "../../envs/preprocess.yaml"
    script:
        "../../scripts/complete_lesions.py"
