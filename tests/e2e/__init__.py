"""End-to-end scenarios shared by every stack: local processes, local containers, a kind cluster."""
