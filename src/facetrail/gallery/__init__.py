"""Galleries: subjects and images with provenance, templates, and the vector index."""
