"""`latentspeech phonemize`: --text, --text -, --data-dir, one-line errors."""

import io

from latentspeech.cli import main


def _lines(out):
    return dict(line.split(":", 1) for line in out.strip().splitlines())


def test_phonemize_text_shows_stress_and_ids(capsys):
    assert main(["phonemize", "--text", "Dr. Smith paid $3.50 on 12/03/2024."]) == 0
    got = _lines(capsys.readouterr().out)
    assert set(got) == {"text", "phones", "ids"}
    assert got["text"].strip().startswith("Doctor Smith paid three dollars and fifty cents on December third")
    phones = got["phones"].split()
    assert "ˈ" in phones and "|" in phones
    ids = [int(i) for i in got["ids"].split()]
    assert len(ids) == len(phones)


def test_phonemize_stdin(capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("Hello there.\n"))
    assert main(["phonemize", "--text", "-"]) == 0
    assert _lines(capsys.readouterr().out)["phones"].strip() == "h ə l ˈ oʊ | ð ˈ ɛ ɹ ."


def test_empty_text_is_a_one_line_error(capsys):
    assert main(["phonemize", "--text", "  "]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: text is empty") and err.count("\n") == 1


def test_phonemize_data_dir(tmp_path, capsys):
    (tmp_path / "text").write_text("a1 Hello.\na2 Two words\n", encoding="utf-8")
    assert main(["phonemize", "--data-dir", str(tmp_path)]) == 0
    assert "wrote" in capsys.readouterr().out
    lines = (tmp_path / "phones").read_text(encoding="utf-8").splitlines()
    assert lines == ["a1 h ə l ˈ oʊ .", "a2 t ˈ uː | w ˈ ɜː d z"]
    assert main(["phonemize", "--data-dir", str(tmp_path)]) == 0
    assert "up to date" in capsys.readouterr().out
    assert main(["phonemize", "--data-dir", str(tmp_path), "--force"]) == 0
    assert "wrote" in capsys.readouterr().out


def test_data_dir_without_text(tmp_path, capsys):
    assert main(["phonemize", "--data-dir", str(tmp_path)]) == 1
    assert "no such file" in capsys.readouterr().err


def test_text_or_data_dir_required(capsys):
    import pytest

    with pytest.raises(SystemExit):
        main(["phonemize"])
