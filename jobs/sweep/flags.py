"""A sweep's tasks as training flags: the flags every task shares, copied from the submit command as typed,
and each task's swept values, written as the flags the training's own parser takes (no torch).

The training parser is the workload's (scripts/submit.py builds it from the same functions as train.py), so a
task's flags are checked by parsing them exactly as its job will."""
import argparse

from jobs.errors import UserError

TRUE, FALSE = ("true", "on", "yes", "1"), ("false", "off", "no", "0")


class StrictParser(argparse.ArgumentParser):
    """A parser whose errors are a UserError (one line, exit 2) instead of usage and SystemExit; and no
    abbreviations, so that a flag is recognised by its whole name only."""

    def __init__(self, **kwargs):
        super().__init__(add_help=False, allow_abbrev=False, **kwargs)

    def error(self, message):
        raise UserError(message)


def _action(parser: argparse.ArgumentParser, option: str) -> argparse.Action | None:
    return parser._option_string_actions.get(option)  # argparse's own table of option strings


def shared_flags(argv: list[str], training: argparse.ArgumentParser, leave_out: set[str]) -> list[str]:
    """The tokens of `argv` that are options of `training` (with their values), except the fields in
    `leave_out`: what every task of the sweep passes to the training, as the user typed it."""
    shared, i = [], 0
    while i < len(argv):
        option = argv[i].split("=", 1)[0]
        action = _action(training, option)
        takes_value = action is not None and action.nargs != 0 and "=" not in argv[i]
        tokens = argv[i:i + 2] if takes_value else argv[i:i + 1]
        if action is not None and action.dest not in leave_out:
            shared += tokens
        i += len(tokens)
    return shared


def value_flags(training: argparse.ArgumentParser, key: str, value: str) -> list[str]:
    """The flags that set field `key` to `value`: "--size 3"; for a switch (--nesterov / --no-nesterov,
    --fast) true or false."""
    action = next((a for a in training._actions if a.dest == key), None)
    if action is None:
        raise UserError(f"--sweep {key}: the training has no flag for it")
    option = next(o for o in action.option_strings if o.startswith("--") and not o.startswith("--no-"))
    if action.nargs != 0:
        return [option, value]
    if value.lower() not in TRUE + FALSE:
        raise UserError(f"--sweep {key}={value}: {option} is a switch; sweep it over true,false")
    on = value.lower() in TRUE
    if isinstance(action, argparse.BooleanOptionalAction):
        return [option if on else option.replace("--", "--no-", 1)]
    return [option] if on == bool(action.const) else []


def training_fields(training: argparse.ArgumentParser) -> list[str]:
    return [a.dest for a in training._actions if a.option_strings]
