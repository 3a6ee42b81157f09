rule dataset:
    """VAE image dataset: half goal images, half random-exploration observations."""
    input:
        spec="envs/{env}.yaml",
    output:
        h5="results/{env}/vae_dataset.h5",
        samples="results/{env}/dataset_samples.png",
    log:
        "results/logs/{env}/dataset.log",
    benchmark:
        "results/benchmarks/{env}/dataset.tsv"
    params:
        settings=settings("render", "dataset"),
    threads: 1
    resources:
        mem_mb=2048,
        runtime=60,
    conda:
        CONDA_ENV
    shell:
        "python -m visgoal dataset --env {wildcards.env} --out {output.h5} --quiet > {log} 2>&1"
