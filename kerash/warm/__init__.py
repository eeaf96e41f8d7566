"""The entrance: the launcher every tool starts through, and the warm server it talks to."""
