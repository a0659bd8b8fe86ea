"""Training: one TRL recipe per method (train_sft, train_dpo, train_orpo, train_rm), the Optuna
stage (tune), and what they share: the frame of one run (run_recipe), its settings (settings),
the TRL arguments (trl_arguments), checkpoints in and out (checkpoints), split loading
(datasets), MLflow logging (mlflow_logging), the stage frame (stage) and multi-GPU launch."""
