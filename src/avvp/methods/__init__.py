"""Training methods as plug-ins on the one trainer."""
