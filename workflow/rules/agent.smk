# Patient-specific landmark agents: train on the post-op scan, redetect in the pre-op scan.


rule train_agents:
    # every agent of a patient (landmarks x variants) in one batched job: one GPU job per patient
    input:
        preproc="results/{patient}/preproc",
    output:
        models=directory("results/{patient}/agents/trained"),
    params:
        settings=AGENT_TRAINING,
        seed=config["seed"],
    log:
        "results/logs/train_agents/{patient}.log",
    benchmark:
        "results/benchmarks/train_agents/{patient}.tsv"
    threads: 2
    resources:
        gpu=1,
    conda:
        "../../envs/agent.yaml"
    script:
        "../../scripts/train_agents.py"


rule redetect:
    input:
        preproc="results/{patient}/preproc",
        models="results/{patient}/agents/trained",
    output:
        landmarks="results/{patient}/landmarks/agent_{variant}.csv",
        ends="results/{patient}/agents/{variant}_endpoints.tsv",
        trajectories="results/{patient}/agents/{variant}_trajectories.tsv",
    params:
        seed=config["seed"],
        device=config["agent"].get("device", "auto"),
        detection=AGENT_DETECTION,
    log:
        "results/logs/redetect/{patient}/{variant}.log",
    threads: 2
    conda:
        "../../envs/agent.yaml"
    script:
        "../../scripts/redetect.py"


rule redetect_seeded:
    # method agent_seeded: the trained agents started at ANTs SyN's landmark (no training of their own)
    input:
        preproc="results/{patient}/preproc",
        models="results/{patient}/agents/trained",
        seeds="results/{patient}/landmarks/ants_syn.csv",
    output:
        landmarks="results/{patient}/landmarks/agent_seeded.csv",
        ends="results/{patient}/agents/seeded_endpoints.tsv",
        trajectories="results/{patient}/agents/seeded_trajectories.tsv",
    params:
        seed=config["seed"],
        device=config["agent"].get("device", "auto"),
        detection=AGENT_DETECTION,
    log:
        "results/logs/redetect/{patient}/seeded.log",
    threads: 2
    conda:
        "../../envs/agent.yaml"
    script:
        "../../scripts/redetect.py"
