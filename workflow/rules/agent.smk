# Patient-specific landmark agents: train on the post-op scan, redetect in the pre-op scan.


rule train_agents:
    # every agent of a patient (landmarks x variants) in one batched job: one GPU job per patient
    input:
        preproc=layout.preproc("{patient}"),
        lesions=layout.lesions_dir("{patient}"),
    output:
        models=directory(layout.agent_models("{patient}")),
    params:
        settings=AGENT_TRAINING,
        seed=config["seed"],
    log:
        layout.log("train_agents", "{patient}"),
    benchmark:
        layout.benchmark("train_agents", "{patient}")
    threads: 2
    resources:
        gpu=1,
    conda:
        "../../envs/agent.yaml"
    script:
        "../../scripts/train_agents.py"


rule redetect:
    input:
        preproc=layout.preproc("{patient}"),
        lesions=layout.lesions_dir("{patient}"),
        models=layout.agent_models("{patient}"),
    output:
        landmarks=layout.landmarks("{patient}", "agent_{variant}"),
        ends=layout.endpoints("{patient}", "agent_{variant}"),
        trajectories=layout.trajectories("{patient}", "agent_{variant}"),
    params:
        seed=config["seed"],
        device=config["agent"]["device"],
        detection=AGENT_DETECTION,
    log:
        layout.log("redetect", "{patient}/{variant}"),
    threads: 2
    conda:
        "../../envs/agent.yaml"
    script:
        "../../scripts/redetect.py"


rule redetect_seeded:
    # method agent_seeded: the trained agents started at ANTs SyN's landmark (no training of their own)
    input:
        preproc=layout.preproc("{patient}"),
        lesions=layout.lesions_dir("{patient}"),
        models=layout.agent_models("{patient}"),
        seeds=layout.landmarks("{patient}", "ants_syn"),
    output:
        landmarks=layout.landmarks("{patient}", "agent_seeded"),
        ends=layout.endpoints("{patient}", "agent_seeded"),
        trajectories=layout.trajectories("{patient}", "agent_seeded"),
    params:
        seed=config["seed"],
        device=config["agent"]["device"],
        detection=AGENT_DETECTION,
    log:
        layout.log("redetect", "{patient}/seeded"),
    threads: 2
    conda:
        "../../envs/agent.yaml"
    script:
        "../../scripts/redetect.py"
