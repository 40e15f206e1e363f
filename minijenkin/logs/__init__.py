"""Job logs: storage layout, reading, live streaming and rendering."""
