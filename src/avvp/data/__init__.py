"""LLP layout: annotations, features, consolidated cache, synthetic data."""
