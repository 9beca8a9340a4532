"""PhoneVocab: fixed ids, deterministic tokenisation, fallback, persistence."""

import json

import pytest

from latentspeech.errors import ConfigError
from latentspeech.text import PhoneVocab
from latentspeech.text.vocab import LATEST_VERSION, PUNCTUATION, WORD_BOUNDARY


@pytest.fixture(scope="module")
def vocab():
    return PhoneVocab()


def test_fixed_special_ids(vocab):
    assert vocab.version == LATEST_VERSION == 1
    assert (vocab.pad_id, vocab.unk_id, vocab.bos_id, vocab.eos_id, vocab.word_boundary_id) == (0, 1, 2, 3, 4)
    assert vocab.decode([0, 1, 4]) == ["<pad>", "<unk>", "|"]


def test_v1_is_frozen(vocab):
    # Changing vocab_v1.txt would silently break every trained model: make a v2 instead.
    assert vocab.size == 158
    assert vocab.checksum == PhoneVocab().checksum
    assert len(set(vocab.tokens)) == vocab.size
    assert all(t and not any(c.isspace() for c in t) for t in vocab.tokens)


def test_contains_espeak_en_us_inventory(vocab):
    # every symbol espeak-ng en-us produced on the 16.5k sentences of shared/data/text
    for sym in "ˈɪntːdəɹslæimðɛʊkzˌaʌhwpfvɚobeɔʃɐuɑŋᵻɜjɡɾʒθʔr":
        assert sym in vocab, sym
    for tok in ["aɪ", "aʊ", "eɪ", "oʊ", "ɔɪ", "tʃ", "dʒ", "iː", "ɜː", "n̩"]:
        assert tok in vocab, tok
    for p in PUNCTUATION:
        assert p in vocab


@pytest.mark.parametrize("ipa, tokens", [
    ("həlˈoʊ", ["h", "ə", "l", "ˈ", "oʊ"]),
    ("tʃˈaɪniːz", ["tʃ", "ˈ", "aɪ", "n", "iː", "z"]),
    ("bˈʌʔn̩", ["b", "ˈ", "ʌ", "ʔ", "n̩"]),
    ("fˈaɪɚ", ["f", "ˈ", "aɪ", "ɚ"]),
    ("wˈɜːld ðɛɹ", ["w", "ˈ", "ɜː", "l", "d", WORD_BOUNDARY, "ð", "ɛ", "ɹ"]),
])
def test_tokenize_longest_match(vocab, ipa, tokens):
    assert vocab.tokenize(ipa) == tokens
    assert vocab.tokenize(ipa) == vocab.tokenize(ipa)  # deterministic (and cached)


@pytest.mark.parametrize("ipa, tokens", [
    ("ã", ["a"]),             # precomposed: NFD strips the tilde
    ("ŋ̊", ["ŋ"]),             # unknown combining mark dropped
    ("l̩", ["l̩"]),             # a known syllabic consonant stays one token
    ("\u0303", ["<unk>"]),    # a lone combining mark
    ("中", ["<unk>"]),
    ("aɪ中ə", ["aɪ", "<unk>", "ə"]),
])
def test_unknown_symbols_fall_back(vocab, ipa, tokens):
    assert vocab.tokenize(ipa) == tokens


def test_encode_decode_round_trip(vocab):
    ids = list(range(vocab.size))
    assert vocab.encode(vocab.decode(ids)) == ids
    assert vocab.encode(["ə", "not-a-token"]) == [vocab.encode(["ə"])[0], vocab.unk_id]
    assert vocab.decode([-1, vocab.size]) == ["<unk>", "<unk>"]


def test_dict_round_trip_through_json(vocab):
    d = json.loads(json.dumps(vocab.to_dict()))
    again = PhoneVocab.from_dict(d)
    assert again == vocab and again.version == vocab.version
    # only the version (and checks) is enough too
    assert PhoneVocab.from_dict({"version": 1}) == vocab


@pytest.mark.parametrize("d, match", [
    ({"version": 99}, "newer than this latentspeech"),
    ({"version": 0}, "not supported"),
    ({"version": "1"}, "must be an int"),
    ({"tokens": []}, "'version' key"),
    ({"version": 1, "tokens": ["<pad>", "<unk>"]}, "differ from the built-in"),
    ({"version": 1, "size": 3}, "size 3"),
    ({"version": 1, "checksum": "deadbeef"}, "checksum"),
])
def test_from_dict_rejects_incompatible(d, match):
    with pytest.raises(ConfigError, match=match):
        PhoneVocab.from_dict(d)


def test_is_phone(vocab):
    assert vocab.is_phone("oʊ") and vocab.is_phone("ˈ")
    assert not any(vocab.is_phone(t) for t in ["<pad>", "<unk>", "|", ",", "."])
