"""Training: schedules, optimizers, checkpoints and the loop that ties them to a recipe."""
