# The registrations: the classical baseline (ANTs rigid, affine and SyN, masked and unmasked) and the second,
# independent one (bidirectional SVF with missing correspondence left out), landmarks carried through them.


rule register_ants:
    input:
        preproc=layout.preproc("{patient}"),
        lesions=layout.lesions_dir("{patient}"),
    output:
        folder=directory(layout.ants_dir("{patient}")),
        rigid=layout.landmarks("{patient}", "ants_rigid"),
        affine=layout.landmarks("{patient}", "ants_affine"),
        syn=layout.landmarks("{patient}", "ants_syn"),
        syn_nomask=layout.landmarks("{patient}", "ants_syn_nomask"),
    params:
        settings=config["ants"],
        seed=config["seed"],
    log:
        layout.log("register_ants", "{patient}"),
    benchmark:
        layout.benchmark("register_ants", "{patient}")
    threads: 2
    conda:
        "../../envs/preprocess.yaml"
    script:
        "../../scripts/register_ants.py"


rule register_svf:
    # on a GPU where there is one (seconds), on the CPU otherwise (about a minute per patient)
    input:
        preproc=layout.preproc("{patient}"),
    output:
        folder=directory(layout.svf_dir("{patient}")),
        landmarks=layout.landmarks("{patient}", "svf"),
    params:
        settings=config["svf"],
        seed=config["seed"],
    log:
        layout.log("register_svf", "{patient}"),
    benchmark:
        layout.benchmark("register_svf", "{patient}")
    threads: 2
    resources:
        gpu=1,
    conda:
        "../../envs/agent.yaml"
    script:
        "../../scripts/register_svf.py"
