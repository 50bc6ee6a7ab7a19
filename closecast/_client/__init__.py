"""The client's parts (``closecast.client`` is the public face): kept apart so the parts import each other
without importing the package that re-exports them."""
