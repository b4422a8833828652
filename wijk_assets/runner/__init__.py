"""Run engine (no argument parsing): materialise assets and follow refreshes in-process."""
