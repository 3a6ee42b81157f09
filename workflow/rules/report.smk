rule report:
    """Tables and plots over every environment and method, and the rows of the envs with a teacher: gcbc's
    and the teacher's."""
    input:
        evaluations=[str(paths.evaluation(env, method, ext, ROOT)) for env in ENVS for method in METHODS
                     for ext in ("csv", "png")],
        teacher=[str(paths.evaluation(env, method, ext, ROOT)) for env in TEACHER_ENVS
                 for method in (GCBC, paths.TEACHER) for ext in ("csv", "png")],
        recon=[str(paths.vae_recon(env, ROOT)) for env in ENVS],
    output:
        **{name.replace(".", "_"): str(paths.report_dir(ROOT) / name) for name in paths.REPORT_FILES},
    log:
        logged("report")[0],
    benchmark:
        logged("report")[1]
    params:
        settings=settings("envs", "methods", "seeds"),
        results=lambda w, input: os.path.dirname(os.path.dirname(input.recon[0])),  # results/<env>/vae_recon.png
        out=lambda w, output: os.path.dirname(output.summary_csv),
    threads: 1
    resources:
        mem_mb=2048,
        runtime=30,
    conda:
        CONDA_ENV
    shell:
        "python -m visgoal report --results {params.results} --out {params.out} > {log} 2>&1"
