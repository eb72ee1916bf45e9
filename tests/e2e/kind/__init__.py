"""kind end-to-end: the shared scenarios through the ingress of a real cluster (`make e2e-kind`)."""
