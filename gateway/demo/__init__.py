"""The demo cluster: layout, synthetic data, and the demo story."""
