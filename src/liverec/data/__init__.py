"""Data: loaders for known formats, the synthetic shop, and preparation into sequences."""
