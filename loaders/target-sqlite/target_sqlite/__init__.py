"""An embedded SQLite loader built on the Meltano Singer SDK's SQL target."""
