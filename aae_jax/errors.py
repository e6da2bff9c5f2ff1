"""Errors a user can cause. Their message names the field and the fix."""


class UserError(ValueError):
  """A bad config value, missing data or the like: reported in one line, no traceback."""
