"""The one exception type the command line turns into a sentence instead of a traceback."""


class CourseError(Exception):
    """Something the user can fix went wrong; the message says what and how."""
