"""The network: a graph of layer nodes (a chain is one case)."""
