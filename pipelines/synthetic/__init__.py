"""The synthetic bank with known ground truth (``bank`` over ``customers``, ``lifecycle``, ``behaviour``, ``dirty``), its
campaign world (``campaigns``) and the ``oracle`` that compares models with the truth. Beside the stack: it may use
data, features and models; only the jobs, the CLI, tests and benchmarks use it."""
