"""Client profiles: the agency's customers being onboarded."""
