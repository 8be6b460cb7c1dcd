"""The in-process ClamAV engine: a ctypes binding to libclamav and the Engine on top."""
