"""One way to check node inputs, for every feature (host-free).

Each feature keeps its checks beside its logic, as functions named ``check_<what>`` that return
the message for the user (naming the input and the fix) or None. A node uses them in
``validate_inputs`` through :func:`verdict` (the host shows the message before anything runs,
and the graph stays as it is) and in ``execute`` through :func:`require` (the same message as a
ValueError, for what the host cannot see before the run, such as a connected latent).
"""


def first_problem(*problems):
    """The first message of ``problems`` that is not None, else None."""
    return next((problem for problem in problems if problem), None)


def require(*problems):
    """Raise a ValueError with the first message of ``problems``; nothing when all are None."""
    problem = first_problem(*problems)
    if problem:
        raise ValueError(problem)


def verdict(*problems):
    """What a V3 node's ``validate_inputs`` returns: True, or the first message."""
    return first_problem(*problems) or True


def check_choice(input_name, value, choices):
    """The message naming the input and its options when ``value`` is not one of ``choices``."""
    if value not in choices:
        return f"{input_name} must be one of {', '.join(repr(c) for c in choices)}; got {value!r}"
    return None
