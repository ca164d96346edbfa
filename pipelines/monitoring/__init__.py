"""The monitoring wing: score and feature stability against the training reference, and realised performance."""
