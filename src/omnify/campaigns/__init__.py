"""Campaign ideas drafted during onboarding, with their review workflow."""
