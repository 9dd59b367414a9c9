"""The one base class of every error a user can cause and fix.

The CLI prints these as ``rlop: error: MESSAGE`` and exits with code 2; any other exception
is a bug in rlop and keeps its traceback. Each subclass is also a ``ValueError`` (or the
built-in its callers expect), so library code can catch them the usual way.
"""


class UserError(Exception):
    """Bad input data, config, paths, models or endpoints: the message says what to fix."""
