"""`compress doctor`: graph checks, runtime probes, the measured ranking."""
