# Two training rules, because their inputs and outputs differ: the image agents read the VAE and
# its dataset (online fine-tuning) and also write the VAE they were trained with; the state-based
# td3 baseline reads neither. A killed run resumes from its checkpoint.pt (not an output).


rule train_td3:
    """The oracle baseline, one seed: true state and goal vector."""
    input:
        spec="envs/{env}.yaml",
    output:
        policy="results/{env}/td3/seed{seed}/policy.pt",
        curve="results/{env}/td3/seed{seed}/curve.csv",
    log:
        "results/logs/{env}/td3/train_seed{seed}.log",
    benchmark:
        "results/benchmarks/{env}/td3/train_seed{seed}.tsv"
    params:
        settings=settings("train", "td3", "replay", "evaluate"),
    threads: 1
    resources:
        mem_mb=4096,
        runtime=240,
    conda:
        CONDA_ENV
    shell:
        "python -m visgoal train --env {wildcards.env} --method td3 --seed {wildcards.seed}"
        " --out results/{wildcards.env}/td3/seed{wildcards.seed} --quiet > {log} 2>&1"


rule train_image:
    """An image agent (tdm, rig), one seed: VAE latents of the camera image and the goal image."""
    input:
        spec="envs/{env}.yaml",
        vae="results/{env}/vae.pt",
        dataset="results/{env}/vae_dataset.h5",
    output:
        policy="results/{env}/{method}/seed{seed}/policy.pt",
        curve="results/{env}/{method}/seed{seed}/curve.csv",
        vae="results/{env}/{method}/seed{seed}/vae.pt",
    log:
        "results/logs/{env}/{method}/train_seed{seed}.log",
    benchmark:
        "results/benchmarks/{env}/{method}/train_seed{seed}.tsv"
    wildcard_constraints:
        method="tdm|rig",
    params:
        settings=lambda w: settings(
            "render", "train", "td3", "replay", "evaluate", "vae", "image_agents", w.method
        ),
    threads: 1
    resources:
        mem_mb=8192,
        runtime=480,
        gpu=0,  # a GPU would help (VAE encoding and fine-tuning); see workflow/profiles/slurm
    conda:
        CONDA_ENV
    shell:
        "python -m visgoal train --env {wildcards.env} --method {wildcards.method} --seed {wildcards.seed}"
        " --vae {input.vae} --dataset {input.dataset}"
        " --out results/{wildcards.env}/{wildcards.method}/seed{wildcards.seed} --quiet > {log} 2>&1"


rule evaluate:
    """Every seed of a method on the fixed (initial state, goal) set."""
    input:
        evaluate_inputs,
        spec="envs/{env}.yaml",
    output:
        csv="results/{env}/{method}_eval.csv",
        summary="results/{env}/{method}_eval.json",
        picture="results/{env}/{method}_eval.png",
    log:
        "results/logs/{env}/{method}/evaluate.log",
    benchmark:
        "results/benchmarks/{env}/{method}/evaluate.tsv"
    params:
        settings=settings("seeds", "render", "evaluate"),
    threads: 1
    resources:
        mem_mb=4096,
        runtime=60,
    conda:
        CONDA_ENV
    shell:
        "python -m visgoal evaluate --env {wildcards.env} --method {wildcards.method}"
        " --out {output.csv} --quiet > {log} 2>&1"
