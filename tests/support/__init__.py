"""Test fixtures shared across test modules: PostgreSQL server, Meltano runner."""
