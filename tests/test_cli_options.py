"""One vocabulary on the command line: the same flag for the same concept in every command."""

import argparse

import pytest

from models.app.cli import COMMANDS, build_parser
from models.app.options import OPTIONS, add_options

OLD_SPELLINGS = ("--input-size", "--size", "--batch ", "--backends", "--steps")


def subcommand_parsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    subparsers = next(
        action for action in parser._subparsers._group_actions
        if isinstance(action, argparse._SubParsersAction)
    )
    return {name: subparsers.choices[name] for name in COMMANDS}


PARSERS = subcommand_parsers()


def flags(parser: argparse.ArgumentParser) -> dict[str, str]:
    """Visible option flag -> its destination."""
    return {
        flag: action.dest
        for action in parser._actions
        if action.help is not argparse.SUPPRESS
        for flag in action.option_strings
    }


@pytest.mark.parametrize("command", list(COMMANDS))
def test_shared_concepts_use_the_shared_flag(command):
    visible = flags(PARSERS[command])
    for flag, dest in visible.items():
        if dest in OPTIONS:
            assert flag == OPTIONS[dest].flag, (command, flag)
    help_text = PARSERS[command].format_help()
    assert [old for old in OLD_SPELLINGS if old in help_text] == []


def test_commands_agree_on_the_options_they_share():
    by_flag: dict[str, set] = {}
    for parser in PARSERS.values():
        for action in parser._actions:
            for flag in action.option_strings:
                if action.dest in OPTIONS and action.help is not argparse.SUPPRESS:
                    by_flag.setdefault(flag, set()).add(
                        (action.dest, action.type, action.choices and tuple(action.choices))
                    )
    assert {flag: kinds for flag, kinds in by_flag.items() if len(kinds) > 1} == {}
    for concept in ("img_size", "batch_size", "T", "device", "lif_backend"):
        assert OPTIONS[concept].flag in by_flag, concept


def test_every_command_defaults_to_the_automatic_device():
    required = {"eval": ["--checkpoint", "x"], "convert": ["--checkpoint", "x", "--output", "y"]}
    for command, parser in PARSERS.items():
        assert parser.parse_args(required.get(command, [])).device == "auto", command


def test_old_spellings_still_work_and_say_the_new_name(capsys):
    parser = argparse.ArgumentParser(prog="demo")
    add_options(parser, "img_size", "batch_size")
    args = parser.parse_args(["--input-size", "16", "--batch", "4"])
    assert (args.img_size, args.batch_size) == (16, 4)
    err = capsys.readouterr().err
    assert "--input-size is now --img-size" in err and "--batch is now --batch-size" in err


@pytest.mark.parametrize("value", ["0", "-3", "two"])
def test_sizes_must_be_positive_integers(value, capsys):
    with pytest.raises(SystemExit) as exit_:
        PARSERS["energy"].parse_args(["--img-size", value])
    assert exit_.value.code == 2
    assert "expected an integer >= 1" in capsys.readouterr().err
