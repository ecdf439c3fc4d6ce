"""Pure security primitives: no database, no settings, no framework. Keys and times are arguments."""
