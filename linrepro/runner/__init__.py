"""Parameters, papermill runs, reports, the site and the command line."""
