"""Tasks: training loops, metrics and experiment grids (predict_gen, classify_inr, edit_inr)."""
