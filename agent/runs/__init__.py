"""What a training run is to the agent: the override allow-list (overrides), the trainer's composed config
(trainconf) and launching a round of runs as one `train.py --multirun` (runner). The lowest agent layer: it imports
only mpm_inr."""
