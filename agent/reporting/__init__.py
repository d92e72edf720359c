"""What a study writes for people: the memory/analysis/UCB files (render), the report and its data, plots, the
study-level W&B run and the training-time model. Imports agent.runs, agent.study, agent.codemod (its history
notes) and mpm_inr; never the loop or the policies."""
