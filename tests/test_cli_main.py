"""The nplstm command itself: errors in the words of the subcommand they concern."""

import pytest

from nplstm.cli import SUBCOMMANDS, main

REQUIRED = {"card": ["-o", "card.png"], "convert": ["model.pt"]}  # parsed before extras


@pytest.mark.parametrize("command", sorted(SUBCOMMANDS))
def test_unknown_option_shows_the_subcommands_usage(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, *REQUIRED.get(command, []), "--no-such-option"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"usage: nplstm {command} ")
    assert f"nplstm {command}: error: unrecognized arguments: --no-such-option" in err


def test_unknown_option_without_subcommand(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--no-such-option"])
    assert exc.value.code == 2
    assert "nplstm: error: unrecognized arguments: --no-such-option" in capsys.readouterr().err
