"""Model checkpoints: preparing the base model, loading checkpoints, prompt formats."""
