"""The learning library: SimCLR pretraining, the linear classification protocol, supervised training.

Knows nothing of Optuna. Importing this package imports nothing heavy: `simclr.config` is safe for commands
that must not import torch.
"""
