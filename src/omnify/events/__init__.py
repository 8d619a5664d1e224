"""Internal domain events, written to an outbox in the business transaction."""
