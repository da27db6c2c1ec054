"""Lingua language filter: keeps English, drops French, and low-confidence text."""

from __future__ import annotations

import pickle

from datatrove.data import Document

from repro.data.language import LinguaLanguageFilter

EN = ("The committee met on Tuesday to discuss the new library, and most of the members "
      "agreed that it should open early next year.")
FR = ("Le comité s'est réuni mardi pour discuter de la nouvelle bibliothèque, et la plupart "
      "des membres ont convenu qu'elle devrait ouvrir au début de l'année prochaine.")
CANDIDATES = ["en", "fr", "es", "de", "it", "pt"]


def make(threshold=0.65, max_chars=2000):
    return LinguaLanguageFilter(languages=["en"], candidates=CANDIDATES, thresholds={"en": threshold},
                                max_chars=max_chars)


def test_english_kept_with_metadata():
    doc = Document(text=EN, id="en")
    assert make().filter(doc) is True
    assert doc.metadata["language"] == "en"
    assert 0.65 <= doc.metadata["language_score"] <= 1.0


def test_french_removed():
    doc = Document(text=FR, id="fr")
    assert make().filter(doc) == (False, "other_language")
    assert doc.metadata["language"] == "fr"


def test_low_confidence_removed():
    doc = Document(text="The quick brown fox.", id="short")
    assert make(threshold=0.999).filter(doc) == (False, "low_confidence")


def test_only_first_chars_are_judged():
    doc = Document(text=FR + " " + EN * 5, id="mixed")
    assert make(max_chars=len(FR)).filter(doc) == (False, "other_language")


def test_picklable_without_detector():
    f = make()
    f.filter(Document(text=EN, id="x"))  # builds the detector
    clone = pickle.loads(pickle.dumps(f))
    assert clone._detector is None
    assert clone.filter(Document(text=EN, id="y")) is True
