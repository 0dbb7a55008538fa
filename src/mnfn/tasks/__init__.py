"""Tasks: the three experiments (predict_gen, classify_inr, edit_inr) and the demo, each registering
its `mnfn train` / `mnfn experiment` subcommands (:mod:`mnfn.tasks.registry`); what they share is in
:mod:`mnfn.training`."""
