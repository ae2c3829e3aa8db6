"""Stage 4, training: arguments, the Trainer subclass and its callbacks, the training run."""
