"""Errors of the command line as one line: ``error: <field>: <problem> (<what to do>)``, with the
closest valid names for a mistyped argument, option or class (``LBT_TRACEBACK=1``: the full report)."""

import difflib
import importlib
import inspect
import os
import re
import sys
from contextlib import contextmanager

from pytorch_lightning.cli import LightningArgumentParser

# Set to 1 for the full traceback and parser message instead of the one-line error.
TRACEBACK_ENV = "LBT_TRACEBACK"


class ConfigError(ValueError):
    """A config that cannot train, found before the Trainer starts; printed as one line."""


def full_errors() -> bool:
    return os.environ.get(TRACEBACK_ENV, "") not in ("", "0")


def constructor_parameters(class_path: str) -> dict[str, inspect.Parameter]:
    """The constructor arguments of the class at ``class_path`` (empty when it cannot be imported)."""
    module, _, name = str(class_path).rpartition(".")
    try:
        parameters = inspect.signature(getattr(importlib.import_module(module), name)).parameters
    except Exception:
        return {}
    return {k: p for k, p in parameters.items() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}


def _did_you_mean(word: str, choices) -> str:
    close = difflib.get_close_matches(word, list(choices), n=3, cutoff=0.6)
    return f"did you mean {' or '.join(close)}?" if close else ""


def one_line(message: str, options=()) -> str:
    """jsonargparse's parse error (usage text, nested union errors, the value) as one line:
    the field, the problem and what to do, with the closest valid names for a mistyped argument
    or class. ``options``: the parser's option strings, for an unrecognised ``--option``."""
    keys = re.findall(r'Parser key "([^"]+)"', message)
    field = ".init_args.".join(keys)
    classes = re.findall(r"class_path '([\w.]+)'", message)
    group = re.search(r"(?:Group|Subcommand) '([\w.]+)' does not accept option '([\w.]+)'", message)
    if group:
        where = f"{group.group(1)}.{group.group(2)}"
        names = [o.removeprefix("--") for o in options if o.startswith(f"--{group.group(1)}.")]
        hint = _did_you_mean(where, names)
        return f"{where}: no such option ({hint or 'see --help'})"
    option = re.search(r"Option '(\w+)' is not accepted", message)
    if option:
        name = option.group(1)
        owner = classes[-1] if classes else ""
        hint = _did_you_mean(name, constructor_parameters(owner)) if owner else ""
        where = f"{field}.init_args.{name}" if field else name
        return f"{where}: {owner.rsplit('.', 1)[-1] or 'this class'} has no argument {name!r} ({hint or 'see --help'})"
    missing = re.search(r"module '([\w.]+)' has no attribute '(\w+)'", message)
    if missing:
        module, name = missing.groups()
        try:
            public = [n for n in dir(importlib.import_module(module)) if not n.startswith("_")]
        except Exception:
            public = []
        hint = _did_you_mean(name, public)
        hint = hint.replace("did you mean ", f"did you mean {module}.") if hint else f"see {module}"
        return f"{field or 'class_path'}: no class {module}.{name} ({hint})"
    unknown = re.search(r"unrecognized arguments: (\S+)", message, re.IGNORECASE)
    if unknown:
        name = unknown.group(1).split("=")[0]
        hint = _did_you_mean(name, options)
        return f"{name}: no such option ({hint or 'see --help'})"
    lines = [re.sub(r'^Parser key "[^"]+":\s*', "", line.strip()) for line in message.splitlines()]
    lines = [line for line in lines if line]
    useful = [line for line in lines if not line.startswith(("Given value", "Subtypes:", "Errors:", "- Expected a"))]
    text = " ".join(useful[:3])
    return f"{field}: {text}" if field and field not in text else text


class OneLineErrorParser(LightningArgumentParser):
    """LightningCLI's parser, whose errors are one line (``error: <field>: <problem> (<what to
    do>)``) instead of the usage text and jsonargparse's nested report; ``LBT_TRACEBACK=1``
    gives the full report."""

    def error(self, message: str, ex: Exception | None = None):
        if not self.exit_on_error or full_errors():
            return super().error(message, ex)
        parser = getattr(ex, "subcommand_parser", None) or self
        options = [o for action in parser._actions for o in action.option_strings]
        sys.stderr.write(f"error: {one_line(message, options)}\n")
        sys.exit(2)


@contextmanager
def field_errors(prefix: str):
    """Errors inside the block as one-line :class:`ConfigError`, prefixed by the config field."""
    try:
        yield
    except ConfigError:
        raise
    except (ValueError, TypeError, FileNotFoundError, NotADirectoryError) as error:
        raise ConfigError(f"{prefix}{error}") from error
