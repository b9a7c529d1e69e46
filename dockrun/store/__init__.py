"""The run store: one SQLite record per run (status moves, guarded), and whether a recorded
process is still alive."""
