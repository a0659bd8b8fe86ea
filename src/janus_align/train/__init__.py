"""Training: one TRL recipe per method (train_sft, train_dpo, train_orpo, train_rm), the Optuna
stage (tune), and what they share (recipe settings, split loading, MLflow logging, launch)."""
