"""User-facing errors: one line naming the problem, printed without a
traceback."""


class BassError(Exception):
  """An error caused by the user's input (config, data file, checkpoint, flag).

  The launch scripts catch it and print `error: <message>` as a single line,
  then exit non-zero. The message must name the culprit (field, file, value)
  and, where possible, what to do about it.
  """


class DataError(BassError):
  """A missing, corrupt or inconsistent data file or array."""


class ConfigError(BassError):
  """An unknown field, wrong type or impossible value in a config."""
