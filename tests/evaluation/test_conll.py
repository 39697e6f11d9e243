"""CoNLL-2003 reader and the conlleval entity F1."""

import os

import pytest

from prunelm_tf.evaluation.conll import TAGS, conll_f1, entity_spans, read_conll

CONLL_DIR = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "data",
                         "conll2003")


def _scores(result, key="overall"):
  scores = result["overall"] if key == "overall" else result["per_type"][key]
  return tuple(round(scores[k], 4) for k in ("precision", "recall", "f1"))


# --- entity_spans / conll_f1 -------------------------------------------------------------------


@pytest.mark.parametrize("tags, spans", [
    (["I-PER", "I-PER", "O"], {(0, 2, "PER")}),                # IOB1: I- starts after O
    (["B-PER", "I-PER", "O"], {(0, 2, "PER")}),                # IOB2 start, same entity
    (["I-PER", "B-PER"], {(0, 1, "PER"), (1, 2, "PER")}),      # B- splits same-type entities
    (["B-PER", "B-PER"], {(0, 1, "PER"), (1, 2, "PER")}),
    (["I-PER", "I-LOC"], {(0, 1, "PER"), (1, 2, "LOC")}),      # adjacent, type change
    (["I-ORG", "O", "I-ORG"], {(0, 1, "ORG"), (2, 3, "ORG")}),
    (["O", "I-MISC"], {(1, 2, "MISC")}),                        # runs to the sentence end
    (["O", "O"], set()),
    ([], set()),
])
def test_entity_spans_follow_conlleval(tags, spans):
  assert entity_spans(tags) == spans


def test_iob1_i_start_equals_b_start():
  result = conll_f1([["I-PER", "I-PER", "O"]], [["B-PER", "I-PER", "O"]])
  assert _scores(result) == (1.0, 1.0, 1.0)


def test_b_tag_splits_two_same_type_entities():
  # Gold: two PER entities; predicted: one spanning both -> no match at all.
  result = conll_f1([["I-PER", "B-PER"]], [["I-PER", "I-PER"]])
  assert _scores(result) == (0.0, 0.0, 0.0)
  assert result["per_type"]["PER"]["support"] == 2


def test_type_mismatch_counts_for_neither_type():
  result = conll_f1([["I-ORG", "I-ORG", "O"]], [["I-LOC", "I-LOC", "O"]])
  assert _scores(result) == (0.0, 0.0, 0.0)
  assert result["per_type"]["ORG"]["support"] == 1
  assert result["per_type"]["LOC"]["support"] == 0  # predicted only


def test_boundary_errors_are_wrong_entities():
  gold = [["I-ORG", "I-ORG", "I-ORG"], ["O", "I-PER", "I-PER"]]
  predicted = [["I-ORG", "I-ORG", "O"], ["I-PER", "I-PER", "I-PER"]]
  assert _scores(conll_f1(gold, predicted)) == (0.0, 0.0, 0.0)


def test_empty_predictions_score_zero_not_nan():
  result = conll_f1([["I-PER", "O"], ["I-LOC"]], [["O", "O"], ["O"]])
  assert _scores(result) == (0.0, 0.0, 0.0)
  assert result["per_type"]["PER"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0,
                                       "support": 1}
  none = conll_f1([["O"]], [["O"]])
  assert _scores(none) == (0.0, 0.0, 0.0) and none["per_type"] == {}


def test_matches_conlleval_on_a_mixed_case():
  # Run through conlleval.pl (version 2004-01-26), which printed:
  #   processed 12 tokens with 6 phrases; found: 5 phrases; correct: 2.
  #   precision:  40.00%; recall:  33.33%; FB1:  36.36
  #   LOC 0/0/0, MISC 50.00/100.00/66.67, ORG 100/100/100, PER 0/0/0
  gold = [["I-ORG", "I-ORG", "O", "I-PER", "I-PER", "B-PER", "O", "I-LOC"],
          ["I-MISC", "O", "I-LOC", "I-LOC"]]
  predicted = [["B-ORG", "I-ORG", "O", "I-PER", "I-PER", "I-PER", "O", "I-MISC"],
               ["I-MISC", "O", "I-LOC", "O"]]
  result = conll_f1(gold, predicted)
  assert _scores(result) == (0.4, 0.3333, 0.3636)
  assert _scores(result, "MISC") == (0.5, 1.0, 0.6667)
  assert _scores(result, "ORG") == (1.0, 1.0, 1.0)
  assert _scores(result, "PER") == _scores(result, "LOC") == (0.0, 0.0, 0.0)
  assert {t: s["support"] for t, s in result["per_type"].items()} == {
      "LOC": 2, "MISC": 1, "ORG": 1, "PER": 2}


def test_conll_f1_rejects_mismatched_input():
  with pytest.raises(ValueError, match="1 gold and 2 predicted sentences"):
    conll_f1([["O"]], [["O"], ["O"]])
  with pytest.raises(ValueError, match="sentence 0: 2 gold tags but 1 predicted"):
    conll_f1([["O", "O"]], [["O"]])
  with pytest.raises(ValueError, match="predicted sentence 0, token 1: tag 'X-PER'"):
    conll_f1([["O", "O"]], [["O", "X-PER"]])


# --- read_conll --------------------------------------------------------------------------------

GOOD = """-DOCSTART- -X- O O

EU NNP I-NP I-ORG
rejects VBZ I-VP O
German JJ I-NP I-MISC

Peter NNP I-NP I-PER
Blackburn NNP I-NP B-PER
-DOCSTART- -X- -X- O

BRUSSELS NNP I-NP I-LOC
"""


def _write(tmp_path, text, name="eng.test", encoding="utf-8"):
  path = tmp_path / name
  path.write_bytes(text.encode(encoding) if isinstance(text, str) else text)
  return path


def test_read_conll_skips_docstart_and_splits_sentences(tmp_path):
  sentences = read_conll(_write(tmp_path, GOOD))
  assert sentences == [
      (["EU", "rejects", "German"], ["I-ORG", "O", "I-MISC"]),
      (["Peter", "Blackburn"], ["I-PER", "B-PER"]),
      (["BRUSSELS"], ["I-LOC"]),
  ]


def test_read_conll_crlf_and_no_final_newline(tmp_path):
  sentences = read_conll(_write(tmp_path, "a DT O O\r\nb NN O I-LOC\r\n\r\nc NN O O"))
  assert sentences == [(["a", "b"], ["O", "I-LOC"]), (["c"], ["O"])]


@pytest.mark.parametrize("text, match", [
    ("a DT O O\nb NN O\n", r"eng\.test, line 2: a token line needs 4 .* got 3"),
    ("a DT O O\n\nb NN O I-LOC extra\n", r"eng\.test, line 3: .*got 5"),
    ("a DT O O\nb NN O I-DATE\n", r"eng\.test, line 2: unknown NER tag 'I-DATE'"),
    ("a DT O O\nb NN O E-PER\n", r"line 2: unknown NER tag 'E-PER'"),
    ("", r"eng\.test holds no sentence"),
    ("\n\n-DOCSTART- -X- O O\n\n", r"eng\.test holds no sentence"),
])
def test_read_conll_rejects_bad_files(tmp_path, text, match):
  with pytest.raises(ValueError, match=match):
    read_conll(_write(tmp_path, text))


def test_read_conll_names_a_non_utf8_file(tmp_path):
  path = _write(tmp_path, "Zürich NNP I-NP I-LOC\n", encoding="latin-1")
  with pytest.raises(ValueError, match=r"eng\.test is not UTF-8"):
    read_conll(path)


def test_read_conll_missing_file(tmp_path):
  with pytest.raises(FileNotFoundError, match="eng.nothing"):
    read_conll(tmp_path / "eng.nothing")


def test_read_conll_real_test_file_matches_published_counts():
  path = os.path.join(CONLL_DIR, "eng.testb")
  if not os.path.isfile(path):
    pytest.skip(f"CoNLL-2003 not found at {path}")
  sentences = read_conll(path)
  assert len(sentences) == 3453
  assert sum(len(tokens) for tokens, _ in sentences) == 46435
  result = conll_f1([tags for _, tags in sentences], [tags for _, tags in sentences])
  assert {t: s["support"] for t, s in result["per_type"].items()} == {
      "LOC": 1668, "MISC": 702, "ORG": 1661, "PER": 1617}
  assert result["overall"]["f1"] == 1.0
  assert set(TAGS) >= {tag for _, tags in sentences for tag in tags}
