"""Events from ROOT files: entry filters, chunked reading and the BuildEvents stage function."""
