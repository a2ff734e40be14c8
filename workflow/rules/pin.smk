# PIN (Li et al. 2018), the supervised rival of the agents: train per landmark on the post-op scan
# (all landmarks of a patient in one job), localise in the pre-op scan from the agents' start points.


rule train_pin:
    input:
        preproc="results/{patient}/preproc",
    output:
        models=directory("results/{patient}/pin/trained"),
    params:
        settings=PIN_TRAINING,
        seed=config["seed"],
    log:
        "results/logs/train_pin/{patient}.log",
    benchmark:
        "results/benchmarks/train_pin/{patient}.tsv"
    threads: 2
    resources:
        gpu=1,
    conda:
        "../../envs/agent.yaml"
    script:
        "../../scripts/train_pin.py"


rule redetect_pin:
    input:
        preproc="results/{patient}/preproc",
        models="results/{patient}/pin/trained",
    output:
        landmarks="results/{patient}/landmarks/pin.csv",
        ends="results/{patient}/pin/endpoints.tsv",
        trajectories="results/{patient}/pin/trajectories.tsv",
    params:
        seed=config["seed"],
        device=config["pin"].get("device", "auto"),
        detection=PIN_DETECTION,
    log:
        "results/logs/redetect_pin/{patient}.log",
    benchmark:
        "results/benchmarks/redetect_pin/{patient}.tsv"
    threads: 2
    conda:
        "../../envs/agent.yaml"
    script:
        "../../scripts/redetect_pin.py"
