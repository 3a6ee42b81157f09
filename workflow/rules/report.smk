rule report:
    """Tables and plots over every environment and method."""
    input:
        evaluations=expand("results/{env}/{method}_eval.{ext}", env=ENVS, method=METHODS, ext=("csv", "png")),
        recon=expand("results/{env}/vae_recon.png", env=ENVS),
    output:
        curves="results/report/curves.png",
        final="results/report/final.png",
        recon="results/report/vae_recon.png",
        frames="results/report/frames.png",
        summary="results/report/summary.csv",
        table="results/report/summary.md",
    log:
        "results/logs/report.log",
    benchmark:
        "results/benchmarks/report.tsv"
    params:
        settings=settings("envs", "methods", "seeds"),
    threads: 1
    resources:
        mem_mb=2048,
        runtime=30,
    conda:
        CONDA_ENV
    shell:
        "python -m visgoal report --out results/report > {log} 2>&1"
