"""CoNLL-2003 named-entity data: the file reader and the conlleval entity F1.

The English files (``eng.train``, ``eng.testa`` = dev, ``eng.testb`` = test)
hold one token per line with four space-separated columns ``word POS chunk
NER``; blank lines separate sentences and ``-DOCSTART-`` lines documents. The
NER column uses the original IOB1 scheme: entity tokens are ``I-TYPE``, and
``B-TYPE`` only starts an entity directly after another of the same type.

``conll_f1`` scores entities as the CoNLL shared tasks' ``conlleval`` script
does: an entity is an exact token span with its type, found by conlleval's
start/end-of-chunk rules (which read IOB1 and IOB2 alike), and a predicted
entity is correct only if both its span and its type match a gold entity.
Written here rather than taken from a package because conlleval is a Perl
script and its Python ports (``seqeval``'s default mode among them) are not a
dependency of this project; the tests compare it with cases conlleval scores.
"""

from __future__ import annotations

import os
from typing import Dict, List, Sequence, Set, Tuple

ENTITY_TYPES = ("PER", "LOC", "ORG", "MISC")
# Every tag the reader accepts; also the tagger's output classes, in this order.
TAGS = ("O",) + tuple(f"{prefix}-{t}" for t in ENTITY_TYPES for prefix in ("B", "I"))
DOCSTART = "-DOCSTART-"
NUM_COLUMNS = 4

Sentence = Tuple[List[str], List[str]]


def read_conll(path: str | os.PathLike) -> List[Sentence]:
  """Reads a CoNLL-2003 NER file into sentences.

  Args:
    path: a file with four space-separated columns per token line
      (``word POS chunk NER``), blank lines between sentences and
      ``-DOCSTART-`` lines (skipped) between documents.

  Returns:
    ``[(tokens, tags), ...]`` in file order: the words and their NER tags (one
    of ``TAGS``), two lists of the same non-zero length per sentence.

  Raises:
    FileNotFoundError: ``path`` is not a file.
    ValueError: the file is not UTF-8, a token line does not have 4 columns,
      a tag is not ``O`` or ``B-``/``I-`` of PER, LOC, ORG, MISC (the message
      names the file and line), or the file holds no sentence.
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"CoNLL file {path} not found; pass eng.train, eng.testa or "
                            "eng.testb of the CoNLL-2003 English data.")
  allowed = set(TAGS)
  sentences: List[Sentence] = []
  tokens: List[str] = []
  tags: List[str] = []
  with open(path, encoding="utf-8", newline="") as f:
    try:
      lines = f.read().splitlines()
    except UnicodeDecodeError as e:
      raise ValueError(f"{path} is not UTF-8 text ({e}); the CoNLL-2003 files are ASCII. "
                       "Convert the file to UTF-8 or pass the original data.") from None
  for line_no, line in enumerate(lines, start=1):
    columns = line.split()
    if not columns:
      if tokens:
        sentences.append((tokens, tags))
        tokens, tags = [], []
      continue
    if len(columns) != NUM_COLUMNS:
      raise ValueError(
          f"{path}, line {line_no}: a token line needs {NUM_COLUMNS} space-separated columns "
          f"(word POS chunk NER), got {len(columns)}: {line!r}. Fix the line or pass the "
          "original CoNLL-2003 file.")
    if columns[0] == DOCSTART:
      continue  # a document boundary, not a token
    if columns[3] not in allowed:
      raise ValueError(
          f"{path}, line {line_no}: unknown NER tag {columns[3]!r}; allowed are O and B-/I- "
          f"of {', '.join(ENTITY_TYPES)}. Fix the tag or pass the original CoNLL-2003 file.")
    tokens.append(columns[0])
    tags.append(columns[3])
  if tokens:
    sentences.append((tokens, tags))
  if not sentences:
    raise ValueError(f"{path} holds no sentence (it is empty or has only -DOCSTART- and "
                     "blank lines); pass a CoNLL-2003 file with token lines.")
  return sentences


def _split_tag(tag: str, where: str) -> Tuple[str, str]:
  """``"I-PER" -> ("I", "PER")``, ``"O" -> ("O", "")``; anything else is an error."""
  if tag == "O":
    return "O", ""
  prefix, sep, entity_type = tag.partition("-")
  if prefix not in ("B", "I") or not sep or not entity_type:
    raise ValueError(f"{where}: tag {tag!r} is not O, B-TYPE or I-TYPE (IOB1/IOB2). Map "
                     "other tag schemes to IOB first.")
  return prefix, entity_type


def entity_spans(tags: Sequence[str], where: str = "tags") -> Set[Tuple[int, int, str]]:
  """The entities of one IOB1 (or IOB2) tag sequence, by conlleval's chunk rules.

  An entity starts at ``B-X``, or at ``I-X`` when the previous tag is ``O``
  or of another type; ``B-X`` after ``I-X``/``B-X`` ends that entity and
  starts a new one; an entity ends before ``O``, ``B-``, a change of type,
  or the end of the sentence.

  Args:
    tags: one sentence's tags.
    where: names the sequence in error messages.

  Returns:
    ``{(start, end, type)}`` with ``end`` exclusive.

  Raises:
    ValueError: a tag that is not ``O``, ``B-TYPE`` or ``I-TYPE``.
  """
  spans = set()
  start, current = -1, ""
  for i, tag in enumerate(tags):
    prefix, entity_type = _split_tag(tag, f"{where}, token {i}")
    if current and (prefix != "I" or entity_type != current):
      spans.add((start, i, current))
      current = ""
    if prefix != "O" and not current:
      start, current = i, entity_type
  if current:
    spans.add((start, len(tags), current))
  return spans


def _prf(correct: int, found: int, gold: int) -> Dict[str, float]:
  precision = correct / found if found else 0.0
  recall = correct / gold if gold else 0.0
  f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
  return {"precision": precision, "recall": recall, "f1": f1}


def conll_f1(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]
             ) -> Dict[str, Dict]:
  """Entity-level precision, recall and F1, as conlleval computes them.

  Args:
    gold: per sentence, the true tags (IOB1 or IOB2).
    predicted: per sentence, the predicted tags; the same number of
      sentences, each as long as its gold sentence.

  Returns:
    ``{"overall": {"precision", "recall", "f1"}, "per_type": {TYPE:
    {"precision", "recall", "f1", "support"}}}``: fractions in [0, 1] (0/0 is
    0.0); ``support`` is the number of gold entities of that type. Types are
    those that occur in gold or predicted tags, sorted.

  Raises:
    ValueError: a different number of sentences, a sentence of a different
      length, or a malformed tag.
  """
  if len(gold) != len(predicted):
    raise ValueError(f"conll_f1 needs one predicted tag sequence per gold sentence; got "
                     f"{len(gold)} gold and {len(predicted)} predicted sentences.")
  correct: Dict[str, int] = {}
  found: Dict[str, int] = {}
  support: Dict[str, int] = {}
  for i, (g, p) in enumerate(zip(gold, predicted)):
    if len(g) != len(p):
      raise ValueError(f"sentence {i}: {len(g)} gold tags but {len(p)} predicted tags; every "
                       "token needs exactly one predicted tag.")
    gold_spans = entity_spans(g, f"gold sentence {i}")
    predicted_spans = entity_spans(p, f"predicted sentence {i}")
    for spans, counts in ((gold_spans, support), (predicted_spans, found),
                          (gold_spans & predicted_spans, correct)):
      for _, _, entity_type in spans:
        counts[entity_type] = counts.get(entity_type, 0) + 1
  per_type = {}
  for entity_type in sorted(set(support) | set(found)):
    scores = _prf(correct.get(entity_type, 0), found.get(entity_type, 0),
                  support.get(entity_type, 0))
    scores["support"] = support.get(entity_type, 0)
    per_type[entity_type] = scores
  overall = _prf(sum(correct.values()), sum(found.values()), sum(support.values()))
  return {"overall": overall, "per_type": per_type}
