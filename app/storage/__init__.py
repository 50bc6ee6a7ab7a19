"""Where jobs and registry pointers are kept: the embedded store (SQLite and files) and PostgreSQL."""
