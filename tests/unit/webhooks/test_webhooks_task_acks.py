"""The deliver task is acknowledged on receipt, every other task late.

On a broker connection loss Celery terminates every running late-ack task
(worker_cancel_long_running_tasks_on_connection_loss). For a webhook delivery that cut the
POST off mid-request and left the delivery claimed for a full lease (60 s) before another
attempt; its message is only a nudge (the row, its lease and the redeliver sweep are the
guarantee), so it is acknowledged on receipt and a broker blip lets it finish
(tests/integration/reliability/test_fault_broker_restart.py measures the whole path)."""

from __future__ import annotations

from omnify.jobs.celery_app import celery_app
from omnify.webhooks import service
from omnify.webhooks import tasks as webhook_tasks  # noqa: F401 (registers the tasks)


def test_deliver_is_acknowledged_on_receipt_so_a_broker_blip_does_not_cut_it_off() -> None:
    deliver = celery_app.tasks[service.DELIVER_TASK]
    assert deliver.acks_late is False
    # The sweep that finds a delivery whose nudge was lost stays a late-ack task like the rest.
    assert celery_app.tasks["omnify.webhooks.redeliver_due"].acks_late is True
