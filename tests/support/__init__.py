"""Helpers shared by every test package: free ports, polling with a deadline, processes
that are always stopped by PID, whatever the test did."""
