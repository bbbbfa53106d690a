"""The one exception type users see.

Anything a user can cause (a missing file, a corrupt image, a malformed ground-truth line, a
weights file of the wrong architecture) raises `ClipSpotError` with a message that names the
file (and line, where there is one). The CLI prints it as one line and exits non-zero; the gRPC
service turns it into an INVALID_ARGUMENT status. Anything else is a bug and keeps its traceback.
"""


class ClipSpotError(Exception):
    """A user-facing error whose message is complete on its own (no traceback needed)."""
