"""Errors of the OCI layer (bundle, config.json, state directory, lifecycle)."""


class OciError(Exception):
    """A problem with what the OCI caller gave us, described in one line.

    The message names the thing at fault (a path, a JSON field) and is printed to the
    user as is: `quark: <message>`. Chain the underlying cause with `raise ... from e`.
    """
