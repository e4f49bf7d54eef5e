"""minicpm-tui: from GPUs and a dataset to a live-monitored MiniCPM fine-tune."""

__version__ = "0.1.0"
