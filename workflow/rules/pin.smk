# PIN (Li et al. 2018), the supervised rival of the agents: train per landmark on the post-op scan
# (all landmarks of a patient in one job), localise in the pre-op scan from the agents' start points.


rule train_pin:
    input:
        preproc=layout.preproc("{patient}"),
        lesions=layout.lesions_dir("{patient}"),
    output:
        models=directory(layout.pin_models("{patient}")),
    params:
        settings=PIN_TRAINING,
        seed=config["seed"],
    log:
        layout.log("train_pin", "{patient}"),
    benchmark:
        layout.benchmark("train_pin", "{patient}")
    threads: 2
    resources:
        gpu=1,
    conda:
        "../../envs/agent.yaml"
    script:
        "../../scripts/train_pin.py"


rule redetect_pin:
    input:
        preproc=layout.preproc("{patient}"),
        models=layout.pin_models("{patient}"),
    output:
        landmarks=layout.landmarks("{patient}", "pin"),
        ends=layout.endpoints("{patient}", "pin"),
        trajectories=layout.trajectories("{patient}", "pin"),
    params:
        seed=config["seed"],
        device=config["pin"]["device"],
        detection=PIN_DETECTION,
    log:
        layout.log("redetect_pin", "{patient}"),
    benchmark:
        layout.benchmark("redetect_pin", "{patient}")
    threads: 2
    conda:
        "../../envs/agent.yaml"
    script:
        "../../scripts/redetect_pin.py"
