//! Tests of the dashboard through the router, against a real SQLite store.
