"""Flow-matching schedules and solvers, joint guidance and keep-mask conditioning. Plain PyTorch."""
