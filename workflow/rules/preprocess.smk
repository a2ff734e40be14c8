# Preprocessing per patient: brain mask, N4, rigid co-registration into the pre-op frame,
# resampling, normalisation; also the `identity` method (post-op landmarks after rigid alignment).


rule preprocess_patient:
    input:
        manifest="results/{patient}/manifest.tsv",
        files=patient_files,
    output:
        folder=directory("results/{patient}/preproc"),
        identity="results/{patient}/landmarks/identity.csv",
    params:
        settings=config["preprocess"],
        seed=config["seed"],
        reference_modality=config["reference_modality"],
        annotator=ANNOTATOR,
    log:
        "results/logs/preprocess_patient/{patient}.log",
    benchmark:
        "results/benchmarks/preprocess_patient/{patient}.tsv"
    threads: 1
    conda:
        "../../envs/preprocess.yaml"
    script:
        "../../scripts/preprocess_patient.py"
