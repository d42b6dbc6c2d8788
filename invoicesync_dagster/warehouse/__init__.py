"""The DuckDB warehouse: schema, short-lived connections and every SQL statement of the project."""
