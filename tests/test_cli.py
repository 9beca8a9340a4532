import subprocess
import sys

from latentspeech import __version__
from latentspeech.cli import main


def test_help_lists_commands(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    assert "synthesize" in out or "demo" in out


def test_version():
    out = subprocess.run([sys.executable, "-m", "latentspeech", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and __version__ in out.stdout


def test_unknown_command_fails():
    out = subprocess.run([sys.executable, "-m", "latentspeech", "no-such-command"], capture_output=True, text=True)
    assert out.returncode != 0 and "invalid choice" in out.stderr
