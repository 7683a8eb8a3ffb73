"""The console script as a user meets it: help, version, unknown input."""

from image_dynamics.cli import COMMANDS


def test_help_lists_every_subcommand(run_cli):
    result = run_cli("--help")
    assert result.returncode == 0
    for name in COMMANDS:
        assert name.replace("_", "-") in result.stdout


def test_no_subcommand_prints_help_and_fails(run_cli):
    result = run_cli()
    assert result.returncode == 2
    assert "usage:" in result.stdout


def test_unknown_subcommand_is_an_error_without_traceback(run_cli):
    result = run_cli("fly-to-the-moon")
    assert result.returncode == 2
    assert "invalid choice" in result.stderr
    assert "Traceback" not in result.stderr


def test_version(run_cli):
    result = run_cli("--version")
    assert result.returncode == 0
    assert "image-dynamics" in result.stdout
