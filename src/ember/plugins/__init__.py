"""Lightning's import path for plugins; the cluster environments live in ``environments``."""
