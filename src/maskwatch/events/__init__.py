"""The event log (``--db``): what happened to face tracks, kept in SQLite and queried by ``maskwatch events``."""

from maskwatch.events.store import EventLog, connect, format_table, parse_since, prune, query_events

__all__ = ["EventLog", "connect", "format_table", "parse_since", "prune", "query_events"]
