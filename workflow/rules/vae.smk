rule train_vae:
    """beta-VAE on the environment's image dataset: the eye of both image agents."""
    input:
        dataset="results/{env}/vae_dataset.h5",
    output:
        vae="results/{env}/vae.pt",
        metrics="results/{env}/vae_metrics.json",
        recon="results/{env}/vae_recon.png",
    log:
        "results/logs/{env}/train_vae.log",
    benchmark:
        "results/benchmarks/{env}/train_vae.tsv"
    params:
        settings=settings("vae"),
    threads: 2
    resources:
        mem_mb=8192,
        runtime=240,
        gpu=0,  # a GPU would help; train-vae runs on the CPU for now (see workflow/profiles/slurm)
    conda:
        CONDA_ENV
    shell:
        "python -m visgoal train-vae --env {wildcards.env} --dataset {input.dataset} --out {output.vae}"
        " --quiet > {log} 2>&1"
