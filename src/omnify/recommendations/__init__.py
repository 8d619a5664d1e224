"""Recommendations: what the brain proposes, stored, de-duplicated across runs, dismissable."""
