"""Running and supervising ``tritonserver``: the launcher, the stub supervisor and the watchdog."""
