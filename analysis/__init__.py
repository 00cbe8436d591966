"""Analysis of sweep results: paper-style tables and cross-checks against the paper's released data."""
