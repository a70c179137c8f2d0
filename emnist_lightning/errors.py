"""Errors a user can fix. Each message names the problem and the fix on one line."""


class UserError(Exception):
    """A problem in the user's data, config or files; the entry points print it without a traceback."""


class DataError(UserError):
    """Missing, corrupt or inconsistent EMNIST files."""


class ConfigError(UserError, ValueError):
    """A config value that cannot work."""


class CheckpointError(UserError):
    """A checkpoint that cannot be read or does not fit the data."""


def find_user_error(error: BaseException) -> UserError | None:
    """The UserError behind `error`, looking through wrappers such as Hydra's InstantiationException."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, UserError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None
