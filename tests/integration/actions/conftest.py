"""The brain-product fixtures (a live Meta sandbox, the real app on the suite's database, a
team with every role), shared with the one-click action tests of this package."""

from tests.integration.brain_product.conftest import api, brain_settings, meta_env, team

__all__ = ["api", "brain_settings", "meta_env", "team"]
