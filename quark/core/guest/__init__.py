"""The guest supervisor stub: assembly sources (`*.S`) and their build (`build.py`).

The package build turns each `<name>.S` into `<name>.bin` beside it; use
`build.ensure_built()` to get the directory holding the binaries in any checkout.
"""
