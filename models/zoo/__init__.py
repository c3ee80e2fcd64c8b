"""The model zoo: registry and specs, one module per family, user factories."""
