"""The apps: the `memcourse` command line, JupyterLab for the course, and the benchmarks."""
