"""One module per group of cases; each ``run(session)`` stores its results in
``session.results`` under its case number."""
