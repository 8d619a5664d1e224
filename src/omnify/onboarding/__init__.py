"""Onboarding progress of a client, computed from the state of the other domains."""
