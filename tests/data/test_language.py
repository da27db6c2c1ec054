"""Lingua language filter: keeps English, drops French and low-confidence text; the default
step (all of lingua's languages, low-accuracy mode) does not take Danish or Dutch for German."""

from __future__ import annotations

import inspect
import pickle

import pytest
from datatrove.data import Document

from repro.data.language import LinguaLanguageFilter
from repro.data.steps import per_document_step
from repro.spec import language_thresholds
from repro.spec import schema as S

EN = ("The committee met on Tuesday to discuss the new library, and most of the members "
      "agreed that it should open early next year.")
FR = ("Le comité s'est réuni mardi pour discuter de la nouvelle bibliothèque, et la plupart "
      "des membres ont convenu qu'elle devrait ouvrir au début de l'année prochaine.")
DE = ("Der Ausschuss traf sich am Dienstag, um über die neue Bibliothek zu sprechen, und die "
      "meisten Mitglieder waren sich einig, dass sie Anfang nächsten Jahres öffnen sollte. Die "
      "Gemeinde hat bereits Geld für das Gebäude zurückgelegt, aber es muss noch entschieden "
      "werden, wie viele Bücher gekauft werden und ob die Bibliothek sonntags geöffnet ist.")
DA = ("Udvalget mødtes i tirsdags for at drøfte det nye bibliotek, og de fleste af medlemmerne "
      "var enige om, at det bør åbne tidligt næste år. Kommunen har allerede afsat penge til "
      "bygningen, men der mangler stadig en beslutning om, hvor mange bøger der skal købes ind, "
      "og om biblioteket skal have åbent om søndagen.")
NL = ("De commissie kwam dinsdag bijeen om de nieuwe bibliotheek te bespreken, en de meeste "
      "leden waren het erover eens dat die begin volgend jaar open moet gaan. De gemeente heeft "
      "al geld voor het gebouw opzij gezet, maar er moet nog worden besloten hoeveel boeken er "
      "worden gekocht en of de bibliotheek op zondag open is.")
SIX = ["en", "fr", "es", "de", "it", "pt"]


def make(threshold=0.65, max_chars=2000, candidates="all"):
    # low-accuracy mode (the default): all 75 languages build in ~0.3 s, models cached per process
    return LinguaLanguageFilter(languages=["en"], candidates=candidates, thresholds={"en": threshold},
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


# ------------------------------------------------------------------ the default step


def _confidence_languages(f: LinguaLanguageFilter) -> set[str]:
    """The languages the detector chooses between (it gives each a confidence)."""
    return {v.language.iso_code_639_1.name.lower()
            for v in f.detector.compute_language_confidence_values(EN)}


def test_default_step_uses_all_languages_in_low_accuracy_mode():
    from lingua import Language

    step = S.LanguageStep()
    assert step.candidates == "all" and step.high_accuracy is False
    f = per_document_step(step, None)
    assert (f.candidates, f.high_accuracy) == ("all", False)
    everything = {lang.iso_code_639_1.name.lower() for lang in Language.all()}
    assert len(everything) == 75 and _confidence_languages(f) == everything
    assert f.filter(Document(text=EN, id="en")) is True
    # the flag reaches the filter (not built here: high accuracy takes seconds and 1.3 GB)
    assert per_document_step(S.LanguageStep(high_accuracy=True), None).high_accuracy is True


def test_danish_and_dutch_not_kept_as_german_by_default():
    """With only SmolLM3's six as candidates lingua has no better answer than German for
    Danish or Dutch and scores them ~1.0, which no threshold can reject (the calibration
    problem); with all languages (the default) they are recognised and dropped."""
    six = LinguaLanguageFilter(languages=["de"], candidates=SIX, thresholds={"de": 0.999},
                               max_chars=2000)
    assert _confidence_languages(six) == set(SIX)
    for text in (DA, NL):
        assert six.filter(Document(text=text, id="x")) is True  # the problem, as it was

    f = per_document_step(S.LanguageStep(languages=["de"]), None)  # default thresholds
    assert f.filter(Document(text=DE, id="de")) is True
    for lang, text in (("da", DA), ("nl", NL)):
        doc = Document(text=text, id=lang)
        assert f.filter(doc) == (False, "other_language")
        assert doc.metadata["language"] == lang


def test_candidates_validated_by_the_schema():
    assert S.LanguageStep(candidates=SIX).candidates == SIX
    with pytest.raises(ValueError, match="not among candidates"):
        S.LanguageStep(languages=["de"], candidates=["en", "fr"])
    with pytest.raises(ValueError):
        S.LanguageStep(candidates="some")


def test_spec_thresholds_were_calibrated_for_the_default_step():
    """bench/calibrate_language.py --write-spec records the detector it calibrated; the
    thresholds are only meaningful for that configuration (rerun it when a default changes)."""
    source = " ".join(line.lstrip("# ") for line in
                      inspect.getsource(language_thresholds).splitlines())
    step = S.LanguageStep()
    assert step.candidates == "all" and "candidates all of lingua's 75 languages" in source
    assert not step.high_accuracy and "low-accuracy mode" in source
    assert f"first {step.max_chars} characters" in source
    assert set(step.thresholds) == set(SIX)


# ----------------------------------------------------------------------- calibration

import numpy as np  # noqa: E402

from repro.data.language import calibrate_threshold, precision_recall  # noqa: E402


def brute_force(scores, labels, beta, min_precision, min_recall):
    """Reference: try every distinct positive score as threshold."""
    best = None
    for t in sorted({s for s in scores if s > 0}, reverse=True):
        p, r = precision_recall(scores, labels, t)
        if p < min_precision or r < min_recall or r == 0:
            continue
        f = (1 + beta**2) * p * r / (beta**2 * p + r)
        if best is None or f >= best[0] - 1e-12:
            best = (f, t, p, r)
    return best


def test_separable_scores_give_the_lowest_positive_score():
    scores = [0.95, 0.9, 0.85, 0.4, 0.3, 0.2]
    labels = [True, True, True, False, False, False]
    assert calibrate_threshold(scores, labels) == (0.85, 1.0, 1.0)


def test_precision_constraint_binds():
    # above 0.7: 4 positives, 0 negatives; at 0.6 a negative comes in (P 0.8)
    scores = [0.99, 0.95, 0.9, 0.8, 0.6, 0.5, 0.4, 0.3]
    labels = [True, True, True, True, False, True, False, True]
    t, p, r = calibrate_threshold(scores, labels, beta=0.1, min_precision=0.9)
    assert (t, p) == (0.8, 1.0)
    assert r == pytest.approx(4 / 6)


def test_large_beta_trades_precision_for_recall():
    scores = [0.99, 0.95, 0.9, 0.8, 0.6, 0.5, 0.4, 0.3]
    labels = [True, True, True, True, False, True, False, True]
    t, p, r = calibrate_threshold(scores, labels, beta=10.0, min_precision=0.5)
    assert t == 0.3 and r == 1.0 and p == pytest.approx(6 / 8)
    # beta = 0.1 with the same constraint still prefers the pure set
    assert calibrate_threshold(scores, labels, beta=0.1, min_precision=0.5)[0] == 0.8


def test_min_recall_rules_out_tiny_selections():
    scores = [0.99, 0.9, 0.8, 0.7, 0.6, 0.5]
    labels = [True, False, True, True, True, True]
    # only 0.99 is pure (P 1, R 0.2); min_recall 0.5 forces a lower threshold
    assert calibrate_threshold(scores, labels, min_precision=0.5)[0] == 0.99
    t, p, r = calibrate_threshold(scores, labels, min_precision=0.5, min_recall=0.5)
    assert t == 0.5 and p == pytest.approx(5 / 6) and r == 1.0


def test_zero_scores_are_never_kept():
    scores = [0.9, 0.8, 0.0, 0.0]
    labels = [True, True, True, False]
    t, p, r = calibrate_threshold(scores, labels, min_precision=0.0)
    assert t == 0.8 and p == 1.0 and r == pytest.approx(2 / 3)


def test_infeasible_precision_is_an_error():
    scores = [0.9, 0.8, 0.7]
    labels = [False, True, False]
    with pytest.raises(ValueError, match="best precision reachable is 0.500"):
        calibrate_threshold(scores, labels, min_precision=0.9)
    with pytest.raises(ValueError, match="no positive labels"):
        calibrate_threshold(scores, [False] * 3)


@pytest.mark.parametrize("seed", range(8))
def test_matches_brute_force_on_random_data(seed):
    rng = np.random.default_rng(seed)
    n = 200
    labels = rng.random(n) < 0.3
    # positives score higher on average; rounding makes ties
    scores = np.round(np.clip(rng.normal(0.55 + 0.25 * labels, 0.2), 0, 1), 2)
    beta, min_p, min_r = [(0.1, 0.9, 0.1), (1.0, 0.6, 0.0), (0.5, 0.8, 0.2)][seed % 3]
    ref = brute_force(list(scores), list(labels), beta, min_p, min_r)
    if ref is None:
        with pytest.raises(ValueError):
            calibrate_threshold(scores, labels, beta, min_p, min_r)
        return
    t, p, r = calibrate_threshold(scores, labels, beta, min_p, min_r)
    assert (t, p, r) == pytest.approx(ref[1:])
    assert (p, r) == pytest.approx(precision_recall(scores, labels, t))
