"""espeak-ng phonemization and the TextFrontend: stress, word boundaries, punctuation, batching, files."""

import os

import pytest

from latentspeech.errors import DataDirError, TextError
from latentspeech.text import MAX_TEXT_CHARS, TextFrontend, phonemize_file
from latentspeech.text import phonemize as ph
from latentspeech.text.phonemize import phonemize_batch


@pytest.fixture(scope="module")
def fe():
    return TextFrontend()


def test_stress_marks_and_word_boundaries(fe):
    toks = fe.phonemes("Dr. Smith paid $3.50 on 12/03/2024.")
    assert "ˈ" in toks and "ˌ" in toks
    # one boundary between each pair of words (espeak keeps "twenty-four" as one word)
    assert toks.count("|") == len(fe.normalize("Dr. Smith paid $3.50 on 12/03/2024.").split()) - 1
    assert toks[:5] == ["d", "ˈ", "ɑː", "k", "t"]
    assert toks[-1] == "."


def test_punctuation_is_kept_as_prosody_tokens(fe):
    assert fe.phone_string("Hello, world!") == "h ə l ˈ oʊ , | w ˈ ɜː l d !"
    toks = fe.phonemes('He said "no" (twice); really? yes: fine - ok.')
    for p in ['"', "(", ")", ";", "?", ":", "-", "."]:
        assert p in toks
    assert toks[toks.index("(") - 1] == "|"  # a boundary before an opening mark after a space
    assert toks[toks.index("(") + 1] != "|"


def test_batch_alignment_with_empty_and_punctuation_only_lines():
    # phonemizer's own preserve_punctuation misaligns such batches; ours must not
    texts = ["", "a.b", "!!!", "Hello there.", "...", "x"]
    out = phonemize_batch(texts)
    assert out[0] == [] and out[2] == ["!", "!", "!"] and out[4] == [".", ".", "."]
    assert out[1] == ["ˈeɪ", ".", "|", "bˈiː"]
    assert out[3] == ["həlˈoʊ", "|", "ðˈɛɹ", "."]
    assert out[5] == ["ˈɛks"]


def test_encode_batch_equals_single_calls(fe):
    texts = ["One two three.", "It costs $5.", "Good morning, Dr. Who!"]
    assert fe.encode_batch(texts) == [fe.encode(t) for t in texts]


def test_ids_inside_vocab_and_phone_string_matches(fe):
    text = "Zürich, naïve café; 😀 and 日本."
    ids = fe.encode(text)
    assert ids and all(0 <= i < fe.vocab.size for i in ids)
    assert fe.vocab.decode(ids) == fe.phone_string(text).split(" ")


def test_backend_is_created_once_and_reused(fe):
    fe.phonemes("warm up")
    backend = ph.get_backend()
    batch = fe.encode_batch(["a short sentence."] * 50)
    assert ph.get_backend() is backend  # no new espeak-ng process for the batch
    assert batch == [fe.encode("a short sentence.")] * 50


@pytest.mark.parametrize("text", ["", "   ", "!!! ...", "\u200b\x00"])
def test_empty_text_raises(fe, text):
    with pytest.raises(TextError, match="text is empty"):
        fe.encode(text)


def test_too_long_text_raises(fe):
    with pytest.raises(TextError, match="too long"):
        fe.encode("word " * (MAX_TEXT_CHARS // 5 + 1))
    assert TextFrontend(max_chars=None).encode("word " * 300)


def test_missing_espeak_gives_one_line_error(monkeypatch):
    from phonemizer.backend.espeak.wrapper import EspeakWrapper

    monkeypatch.setenv("PHONEMIZER_ESPEAK_LIBRARY", "/nonexistent/libespeak-ng.so")
    monkeypatch.setattr(EspeakWrapper, "_ESPEAK_LIBRARY", None)
    ph._reset_backend()
    try:
        with pytest.raises(TextError, match="install espeak-ng: apt-get install espeak-ng") as e:
            TextFrontend().encode("hello")
        assert "\n" not in str(e.value)
    finally:
        monkeypatch.undo()
        ph._reset_backend()
    assert TextFrontend().encode("hello")


def test_phonemize_file(tmp_path, fe):
    text = tmp_path / "text"
    text.write_text("utt1 Hello, world.\nutt2 It costs $3.50\nutt3\nutt4 !!!\n\nutt5 Dr. Who\n", encoding="utf-8")
    out = tmp_path / "phones"
    res = phonemize_file(text, out, batch_size=2, progress=False)
    assert res.written == 3 and res.empty == ["utt3", "utt4"] and not res.up_to_date
    lines = out.read_text(encoding="utf-8").splitlines()
    assert [ln.split()[0] for ln in lines] == ["utt1", "utt2", "utt5"]
    assert lines[0] == "utt1 " + fe.phone_string("Hello, world.")
    assert all(set(ln.split()[1:]) <= set(fe.vocab.tokens) for ln in lines)
    assert oct(out.stat().st_mode & 0o777) == oct(0o644)
    # up to date: skipped; touching text makes it stale again
    assert phonemize_file(text, out, skip_if_up_to_date=True).up_to_date
    later = out.stat().st_mtime + 10
    os.utime(text, (later, later))
    assert not phonemize_file(text, out, skip_if_up_to_date=True, progress=False).up_to_date
    assert not list(tmp_path.glob(".phones.*"))  # no temp file left behind


def test_phonemize_file_missing_text(tmp_path):
    with pytest.raises(DataDirError, match="no such file"):
        phonemize_file(tmp_path / "text", tmp_path / "phones")


@pytest.mark.parametrize("text", ["😀 🙂", "日本語", "Ελληνικά"])
def test_text_with_only_symbols_or_foreign_letters_is_refused(text):
    with pytest.raises(TextError, match="nothing to pronounce"):
        TextFrontend().phonemes(text)
