"""The one exception type the data tools raise for bad input.

Every message names the file or parameter that is wrong, so command-line tools can print it as one line and exit
non-zero instead of showing a traceback.
"""


class DataError(ValueError):
    """Bad input to the data pipeline: a file, directory or parameter that cannot be used as given."""
