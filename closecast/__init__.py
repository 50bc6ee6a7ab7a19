"""closecast's neutral core: the contract serving (``app/``) and training (``training/``) both stand on.

numpy, ONNX Runtime and the standard library only: never torch, FastAPI, Starlette, pydantic, ``app`` or
``training`` (``tests/test_architecture.py`` checks it), so either wing can use it without the other's weight.
"""

__version__ = "0.1.0"
