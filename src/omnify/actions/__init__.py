"""One-click actions: apply a recommendation through the platform connector, with guardrails,
approval, idempotency, audit and undo."""
