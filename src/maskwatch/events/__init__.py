"""The event log (``--db``): what happened to face tracks, kept in SQLite or PostgreSQL and queried
by ``maskwatch events``. See docs/events.md."""

from maskwatch.events.backends import EventLogError
from maskwatch.events.store import (
    SCHEMA_VERSION,
    EventLog,
    EventLogInterrupted,
    Store,
    check_retention_days,
    connect,
    format_table,
    open_reader,
    parse_since,
    prune,
    query_events,
)

__all__ = ["SCHEMA_VERSION", "EventLog", "EventLogError", "EventLogInterrupted", "Store", "check_retention_days",
           "connect", "format_table", "open_reader", "parse_since", "prune", "query_events"]
