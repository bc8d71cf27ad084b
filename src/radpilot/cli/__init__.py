"""The ``radpilot`` command. Thin: it parses options and calls the packages."""
