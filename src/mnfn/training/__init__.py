"""Training infrastructure the tasks share: the ``Trainer`` loop (warm-up, cosine schedule, resumable
checkpoints, DDP), metrics, bounded YAML configs, and the resumable experiment grid with its
tables and learning curves. The tasks themselves live in :mod:`mnfn.tasks`."""
