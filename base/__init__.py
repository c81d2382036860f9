"""The ground floor: what every part needs and nothing of the project's (issue #21).

Modules here import the standard library and third-party libraries only, never `events`,
`streams`, `projections` or `deploy`; an import-linter contract in pyproject.toml keeps it so.
"""
