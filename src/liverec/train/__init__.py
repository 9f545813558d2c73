"""Training: batches, optimisers and schedules, the loop with early stopping."""
