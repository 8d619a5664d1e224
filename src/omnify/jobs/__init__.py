"""Background jobs: the Celery app, its task base, dead letters and idempotency.

``celery -A omnify.jobs worker`` finds :data:`celery_app` here. Building the app opens
no connection (brokers are contacted on first publish or by the worker), so importing
this package, e.g. for ``omnify.jobs.models``, stays cheap.
"""

from omnify.jobs.celery_app import celery_app

__all__ = ["celery_app"]
