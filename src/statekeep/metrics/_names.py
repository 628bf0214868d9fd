"""The names of the metrics a store keeps (docs/metrics.md says what each means)."""

OPERATION = "statekeep_operation_seconds"  # {operation}
FAILURES = "statekeep_operation_errors_total"  # {operation, error}
ERROR_RATIO = "statekeep_operation_error_ratio"  # failures / calls, last minute
FIND = "statekeep_find_seconds"  # {collection, index: yes | no | all}
SAVE_MANY_ENTITIES = "statekeep_save_many_entities"  # entities a call
SAVE_MANY_ENTITY = "statekeep_save_many_entity_seconds"  # a call's time / its entities
TRANSACTIONS = "statekeep_transactions_total"  # {outcome: commit | rollback}
TRANSITIONS = "statekeep_transitions_total"  # {machine, event}
BATCH_ROWS = "statekeep_writebehind_batch_rows"  # {priority}
BATCH_SECONDS = "statekeep_writebehind_batch_seconds"  # {priority}
PENDING = "statekeep_writebehind_pending"  # {priority}
PENDING_RATIO = "statekeep_writebehind_pending_ratio"
OLDEST = "statekeep_writebehind_oldest_pending_seconds"
STORED = "statekeep_writebehind_stored_total"
RETRIED = "statekeep_writebehind_retried_total"
SHED = "statekeep_writebehind_shed_total"
DEAD_LETTERED = "statekeep_writebehind_dead_lettered_total"
DEAD_LETTERS = "statekeep_writebehind_dead_letters"  # waiting now
HANDLER = "statekeep_event_handler_seconds"  # {handler}: sync handlers, on the committing thread
DELIVERED = "statekeep_events_delivered_total"
HANDLER_FAILURES = "statekeep_event_handler_failures_total"
OUTBOX_LAG = "statekeep_outbox_lag_events"  # {subscription}
SUBSCRIPTION_IDLE = "statekeep_subscription_idle_seconds"  # {subscription}
STATE_UPDATES = "statekeep_state_updates_total"  # {state}
STATE_SUBSCRIPTIONS = "statekeep_state_subscriptions"  # {state}
ALERTS_ACTIVE = "statekeep_alerts_active"
