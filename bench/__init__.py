"""slowatch's benchmarks: one command each, results written to ``bench/results/<name>.{json,md}``.

``python -m bench.cycle``, ``python -m bench.vs_slo_generator``, ``python -m bench.status_load``;
``bench/run`` runs them all. See ``bench/README.md`` for what each number means.
"""
